"""The template of docs/benchmarks.md: the figures of one run, how they were measured, and what limits us.

The prose about *why* (the "What limits us" and "Where the time goes" sections) comes from py-spy
profiles of the nodes taken while the benchmark ran (``scripts/bench --profile DIR``); the numbers in it
are filled in from the run being rendered.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchlib import report_grpc
from benchlib.figures import ETCD_KEYS, TARGETS, fmt, fmt_ratio, list_size, ratio, verdict

REGEN = "flock /tmp/distro-heavy.lock scripts/bench --plots docs/bench --markdown docs/benchmarks.md --json docs/bench/results.json"


def _g(d: dict[str, Any], *path: str, default: Any = None) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return default
        d = d[p]
    return d


@dataclass(frozen=True)
class _Run:
    """One run's results and the parts of them that several sections read."""

    results: dict[str, Any]
    md_path: Path
    plot_dir: Path | None

    @property
    def m(self) -> dict[str, Any]:
        return dict(self.results["machine"])

    @property
    def d(self) -> dict[str, Any]:
        return dict(self.results["details"]["distro"])

    @property
    def e(self) -> dict[str, Any]:
        return dict(self.results["details"].get("etcd", {}))

    @property
    def main(self) -> dict[str, Any]:
        return dict(self.d.get("main", {}))

    @property
    def reg_runs(self) -> list[dict[str, Any]]:
        return list(_g(self.main, "register", "runs", default=[]))

    @property
    def e_runs(self) -> list[dict[str, Any]]:
        return list(_g(self.e, "register", "runs", default=[]))

    @property
    def reg_cpu(self) -> float | None:
        """Our lowest server CPU per registration (µs) over the registration runs."""
        return _min_cpu(self.reg_runs)

    @property
    def e_cpu(self) -> float | None:
        return _min_cpu(self.e_runs)


def _min_cpu(runs: list[dict[str, Any]]) -> float | None:
    return min((r["server_cpu_us_per_ok"] for r in runs if r.get("server_cpu_us_per_ok")), default=None)


def _rel(target: Path, md_path: Path) -> str:
    return os.path.relpath(target, md_path.parent)


def render(results: dict[str, Any], md_path: Path, plot_dir: Path | None) -> str:
    """The whole page, section by section."""
    run = _Run(results, md_path, plot_dir)
    out: list[str] = []
    for section in (_intro, _results, _plots, _setup, _method, _details, _grpc, _scale, _memory, _limits):
        out += section(run)
    out.append(PROFILE)
    return "\n".join(out) + "\n"



def _grpc(run: _Run) -> list[str]:
    """The gRPC phase's figures (benchlib.report_grpc), when the results hold one."""
    return report_grpc.section(dict(run.d.get("grpc", {})), _g(run.results, "details", "rnacos", "grpc"))


def _scale(run: _Run) -> list[str]:
    """The scale mode's figures (``scripts/bench --scale N``), when the results hold a scale run."""
    sc = run.d.get("scale")
    if not sc:
        return []
    p = sc.get("pauses", {})
    out = ["## Scale: pauses, housekeeping and restart at many instances\n"]
    w = out.append
    w(f"`scripts/bench --scale {sc['instances']} --scale-hold {sc.get('hold_s', 60):g}`, run {sc.get('when', '?')} on "
      "the same shared machine: our three nodes loaded with "
      f"{fmt(_g(sc, 'register', 'ok'))} instances in {fmt(sc.get('services'))} services "
      f"({fmt(_g(sc, 'register', 'ok_per_s'))} registrations/s; every node listed {sc.get('listed')}; "
      f"{sc.get('bytes_per_instance_per_node')} bytes per instance per node), then held under churn "
      f"(registrations and deregistrations at {sc.get('churn')} per second), while a probe asked every node's "
      f"`/healthz` every {fmt(p.get('interval_ms'))} ms"
      + (f" (load average {_loads(sc['run'])})" if sc.get("run") else "") + ".\n")
    w("| node | probes | p50 / p99 (ms) | slowest (ms) | answers over 100 ms | slowest answers (ms, at s) |")
    w("|---|---|---|---|---|---|")
    for addr, node in p.get("nodes", {}).items():
        slow = ", ".join(f"{ms} @ {at}" for ms, at in node.get("slowest", [])[:4])
        w(f"| {addr} | {fmt(node.get('n'))} | {node.get('p50')} / {node.get('p99')} | {node.get('max')} | "
          f"{node.get('over_100ms')} | {slow} |")
    if "probe_lag" in p:
        lag = p["probe_lag"]
        slow = ", ".join(f"{ms} @ {at}" for ms, at in lag.get("slowest", [])[:4])
        w(f"\nThe probe's own wake-ups (a sleep of the probe interval, how late it woke): {fmt(lag.get('n'))}, "
          f"{lag.get('over_50ms')} of them over 50 ms late; the latest {slow} (ms, at s). A slow answer at such a "
          "moment is the probe's or the whole machine's stall, not the node's.")
    w("")
    not_shown = _g(sc, "big_list", "changes_not_shown")
    cold = _g(sc, "big_list", "first_list_ever_ms")
    w(f"Steps started at (s since the probe started): {sc.get('steps')}. The first `instance/list` of a "
      f"{fmt(_g(sc, 'big_list', 'instances'))}-instance service on each node after a change to it took "
      f"{_g(sc, 'big_list', 'first_list_after_change_ms')} ms"
      + (f" (read as nacos-sdk-python reads it: urllib, no gzip; its head, sent once the node had rendered the "
         f"list, arrived after {heads} ms)" if (heads := _g(sc, 'big_list', 'first_list_after_change_head_ms'))
         else "")
      + (f"; asked with `Accept-Encoding: gzip` as the Java 1.x client asks, after another change, "
         f"{zipped} ms to read {fmt(_g(sc, 'big_list', 'gzip_bytes'))} bytes instead of "
         f"{fmt(_g(sc, 'big_list', 'body_bytes'))}, and then {_g(sc, 'big_list', 'gzip_inflate_ms')} ms to "
         "inflate them in the probe (Python's zlib)"
         if (zipped := _g(sc, 'big_list', 'first_list_after_change_gzip_ms')) else "")
      + (" (runs before the `changes_not_shown` count had every change refused by the 10,000-instance bound, "
         "so they timed lists without a change)" if not_shown is None else
         f" ({not_shown} of them did not show the change)")
      + (f"; the very first list of it on each node, which renders every host, {cold} ms" if cold else "")
      + "; a node restarted at this size was ready after "
      f"{fmt(sc.get('restart_ready_ms'))} ms"
      + (f" (snapshot chunks the two others sent it: {sc['restart_chunks_sent']})" if "restart_chunks_sent" in sc else "")
      + ". Collections the nodes logged as pauses over 50 ms: "
      f"{len(sc.get('gc_log', []))}" + (f" ({'; '.join(sc['gc_log'][:3])})" if sc.get("gc_log") else "") + ".\n")
    if "membership_log" in sc:
        down = [line for line in sc["membership_log"] if "peer down:" in line]
        w(f"Peers declared down during the run: {len(down)}" + (f" ({'; '.join(down[:6])})" if down else "")
          + ". The restart step stops one node on purpose; any other is a flap.\n")
    if "stall_log" in sc:
        tasks: dict[str, int] = dict(sc.get("stall_by_task", {}))
        if not tasks:
            for line in sc["stall_log"]:
                name = line.split("task ", 1)[-1].split(" held", 1)[0]
                tasks[name] = tasks.get(name, 0) + 1
        top = ", ".join(f"`{name}` {count}" for name, count in sorted(tasks.items(), key=lambda kv: -kv[1])[:6])
        w(f"Task steps that held a node's event loop over 50 ms (`DISTRO_STALL_LOG_MS=50`, "
          f"cluster/node/stallwatch.py): {sc.get('stall_count', len(sc['stall_log']))}"
          + (f", by task: {top}" if top else "") + ".\n")
    if "loop_stall_log" in sc:
        lines = sc["loop_stall_log"]
        worst = max(lines, key=_loop_ms, default=None)
        w(f"Runs of task steps between two looks at the sockets over 50 ms (what a request waits for: trio reads "
          f"its sockets only between such runs): {len(lines)}"
          + (f"; the longest: {worst.split('distro.stall: stall: ', 1)[-1]}" if worst else "") + ".\n")
    for note in sc.get("notes", []):
        w(f"{note}\n")
    return out


def _loop_ms(line: str) -> float:
    """The milliseconds of a stall-watch line about a run of steps ("... the event loop ran N ms ...")."""
    try:
        return float(line.split("the event loop ran ", 1)[1].split(" ms", 1)[0])
    except (IndexError, ValueError):
        return 0.0


def _loads(meta: dict[str, Any]) -> str:
    """'a / b / c at the start, d / e / f at the end' from a section's ``run`` metadata."""
    parts = []
    for when in ("start", "end"):
        la = meta.get(f"loadavg_at_{when}")
        if la:
            parts.append(f"{' / '.join(f'{x:.1f}' for x in la)} at the {when}")
    return ", ".join(parts) or "not recorded"


def _memory(run: _Run) -> list[str]:
    """Where a node's memory per instance goes (``scripts/bench --memory-profile N -- --rss --into FILE``), with
    the breakdown measured before the changes when the results keep one (``memory_profile.before``)."""
    mp = run.d.get("memory_profile")
    if not mp:
        return []
    before = mp.get("before", {})
    out = ["## Memory per instance: where it goes\n"]
    w = out.append
    w(f"`scripts/bench --memory-profile {mp['instances']} -- --rss`: three `DistroNode`s in one process, every "
      "peer message through msgpack and `distro.codec` as on the peer link, "
      f"{fmt(mp['instances'])} instances registered into {fmt(mp['services'])} services the way the HTTP API "
      "builds them (a third on each node, forwarded to the owners), replication settled. Each node's "
      "structures are walked and every object counted once (`sys.getsizeof`), by the first structure that "
      "reaches it; tracemalloc counts what the load allocated; the resident figure is a separate run without "
      "tracemalloc. Bytes per instance per node" + (f", before ({before.get('commit', 'earlier code')}) and "
                                                    "after the changes below:" if before else ":") + "\n")
    parts = mp.get("walk_bytes_per_instance_per_node", {})
    old = before.get("walk_bytes_per_instance_per_node", {})
    names = sorted(set(parts) | set(old), key=lambda k: (-max(parts.get(k, 0), old.get(k, 0)), k))  # ties by name
    w("| structure | before | now |" if before else "| structure | bytes |")
    w("|---|---|---|" if before else "|---|---|")
    for name in names:
        if max(parts.get(name, 0), old.get(name, 0)) < 0.5:
            continue
        if before:
            w(f"| {name} | {old.get(name, 0):.1f} | {parts.get(name, 0):.1f} |")
        else:
            w(f"| {name} | {parts[name]:.1f} |")
    rows = [("walked, total", "walk_total"), ("allocated during the load (tracemalloc)",
                                               "traced_bytes_per_instance_per_node"),
            ("resident growth, no tracemalloc", "rss_bytes_per_instance_per_node")]
    for label, key in rows:
        if before:
            w(f"| **{label}** | **{fmt(before.get(key))}** | **{fmt(mp.get(key))}** |")
        else:
            w(f"| **{label}** | **{fmt(mp.get(key))}** |")
    w("")
    w(MEMORY_NOTES)
    return out


def _intro(run: _Run) -> list[str]:
    """Title, how the run was made, and how to read its figures."""
    m = run.m
    results = run.results
    out: list[str] = []
    w = out.append

    w("# Benchmarks: our three-node cluster, etcd 3.4 and r-nacos 0.8.8, side by side\n")
    w(f"Generated by `{results.get('command') or 'scripts/bench'}` ({results['mode']} mode) on {m['date']}; "
      f"the run took {results.get('duration_s', 0):.0f} s. Regenerate with\n")
    w(f"    {REGEN}\n")
    w("(`--quick` finishes within five minutes; `--smoke` is the CI mode, whose figures only prove that every "
      "phase works; `--render results.json` rewrites this page and the plots from a saved run; `--profile DIR` "
      "adds py-spy profiles of the nodes (with `--scale`, of all three across the restart, as speedscope timelines "
      "too); `--keep-logs` keeps the nodes' logs of a run that did not fail; `--only register,rnacos-register` runs the registration sweep alone, "
      "ours and r-nacos's, for before/after comparisons of the write path, and `--only grpc,rnacos-grpc` the "
      "gRPC phase alone, ours and r-nacos's.)\n")
    w("**Read the absolute numbers with care.** The machine has "
      f"{m['cpus']} vCPUs ({m['model']}, Linux {m.get('kernel', '?')}, Python {m['python']}) and is shared with "
      "other engineers; a recorded run holds `/tmp/distro-heavy.lock`, which keeps out the others' recorded "
      "runs but not their test suites. The load average was "
      f"{', '.join(f'{x:.1f}' for x in m.get('loadavg_at_start', []))} at the start and "
      f"{', '.join(f'{x:.1f}' for x in m.get('loadavg_at_end', []))} at the end (1, 5, 15 min). The systems ran "
      "under the same conditions, one after the other, so the comparison (the ratios) holds better than the "
      "absolute figures; "
      "the server CPU time per operation (read from `/proc`) is the figure that other load disturbs least.\n")

    return out


def _results(run: _Run) -> list[str]:
    """The table of headline figures against the targets, and what crowded the machine."""
    m, results = run.m, run.results
    ours, etcd, lg = results["distro"], results["etcd"], results.get("loadgen", {})
    reg_best, e_runs, reg_cpu, e_cpu = run.reg_runs, run.e_runs, run.reg_cpu, run.e_cpu
    out: list[str] = []
    w = out.append
    w("## Results\n")
    rn = results.get("rnacos", {})
    w("| figure | ours | etcd 3.4 | r-nacos 0.8.8 | ours / r-nacos | target (`scripts/benchlib/figures.py`) | |")
    w("|---|---|---|---|---|---|---|")
    for key, (target, _, _) in TARGETS.items():
        ev = fmt(etcd.get(key)) if key in ETCD_KEYS else ""
        w(f"| `{key}` | {fmt(ours.get(key))} | {ev} | {fmt(rn.get(key))} | {fmt_ratio(ratio(key, results))} | "
          f"{target} | {verdict(key, ours.get(key), results)} |")
    if ours.get("sdk_push_p99_ms") is not None:
        w(f"| `sdk_push_p99_ms` (our SDK subscriber) | {fmt(ours['sdk_push_p99_ms'])} | | | | ≤ 100 ms | "
          f"{'met' if ours['sdk_push_p99_ms'] <= 100 else 'NOT met'} |")
    w(f"| load generator ceiling | {fmt(lg.get('ceiling_req_per_s'))} req/s | | | | not the bottleneck | |")
    size = list_size(results)
    w(f"\n`list_per_s` lists {size}." if size else "\n`list_per_s`: each system listed the services its own "
      "registration run filled (a run from before the list phase had a set of its own): not like for like.")
    skipped = _g(results, "details", "rnacos", "skipped")
    if skipped:
        w(f"\nr-nacos did not run: {skipped}.")
    else:
        rpush = _g(results, "details", "rnacos", "main", "push", default={})
        nopush = rpush.get("skipped") or ("no UDP packet reached the subscribers" if rpush.get("missed") and
                                          rpush.get("p99") is None else "")
        w("\nr-nacos's visibility figures come from polling `instance/list` (it has no long-poll watch); ours "
          "from `instance/watch`. Its `snapshot_load_ms` is from spawning a restarted member until it lists every "
          "instance again." + (f" r-nacos push: {nopush} (r-nacos 0.8.8 did not push to a Nacos 1.x UDP "
                               "subscriber here, with the service registered before or after subscribing)."
                               if nopush else ""))
    w("")
    waits = [(name, r["server_sched"]["wait_per_cpu"]) for name, runs in (("ours", reg_best), ("etcd", e_runs))
             for r in runs if _g(r, "server_sched", "wait_per_cpu") is not None]
    if waits:
        w("How crowded the machine was: while they ran, the servers spent this long *runnable but without a "
          "CPU* for every second they spent on one (from `/proc/PID/task/*/schedstat`): "
          + ", ".join(f"{name} {v:.2f} s" for name, v in waits)
          + ". This includes waiting for each other (three servers and the load generator share two cores, so "
          "a saturated run sits near 1 even on an idle machine); figures well above that mean other load.\n")
    if reg_cpu and e_cpu:
        w(f"Server CPU per registration, summed over the three processes: ours {reg_cpu:.0f} µs, etcd "
          f"{e_cpu:.0f} µs. On {m['cpus']} cores with nothing else running that caps registrations at about "
          f"{m['cpus'] * 1e6 / reg_cpu:,.0f}/s for us and {m['cpus'] * 1e6 / e_cpu:,.0f}/s for etcd.\n")
    if results.get("notes"):
        w("Notes from this run:\n")
        for note in results["notes"]:
            w(f"- {note}")
        w("")

    return out


def _plots(run: _Run) -> list[str]:
    """The plots written beside the page (only those that exist)."""
    plot_dir, md_path = run.plot_dir, run.md_path
    out: list[str] = []
    w = out.append
    if plot_dir is not None:
        pics = [("converge_cdf.png", "Convergence: write on one node until every node shows it"),
                ("register_throughput.png", "Registrations per second during the closed-loop run"),
                ("push_cdf.png", "Change to subscriber: UDP push and our SDK (CDF, log scale)"),
                ("heartbeat_ramp.png", "Heartbeat ramp"),
                (report_grpc.PLOT, report_grpc.PLOT_TITLE)]
        shown = [(f, t) for f, t in pics if (plot_dir / f).exists()]
        if shown:
            w("## Plots\n")
            for f, t in shown:
                w(f"**{t}**\n")
                w(f"![{t}]({_rel(plot_dir / f, md_path)})\n")

    return out


def _setup(run: _Run) -> list[str]:
    """Both clusters and the load generator."""
    e, results = run.e, run.results
    lg = results.get("loadgen", {})
    out: list[str] = []
    w = out.append
    w("## Setup\n")
    w("- **Our cluster**: three `.venv/bin/distro-node` processes on 127.0.0.1 (free ports; peer links on "
      "port + 1000; a fresh `--cluster-secret` per cluster; `--sync-delay-ms` at its default of 2 ms). Every "
      "phase starts a fresh cluster. The registration, convergence, push, memory and snapshot phases run with "
      "`--heartbeat-timeout-ms` and `--instance-expire-ms` of one hour, so instances that never beat do not "
      "expire mid-run; failover and the heartbeat ramp run with the defaults (15 s, 30 s).")
    w(f"- **etcd**: Debian's `etcd-server` {e.get('version', '').replace('etcd Version: ', '')}, three members "
      "on 127.0.0.1 with `--initial-cluster`, distinct client and peer ports, data directories under a temporary "
      "directory on the VM's disk (WAL fsync on, as shipped), `--enable-v2=false`. Clients use the JSON gateway: "
      "`/v3/lease/grant` once per connection (TTL 600 s, leases shared per connection as etcd-based registries "
      "do), then `/v3/kv/put` with base64 key `/registry/<service>/<ip>:<port>`, a JSON instance as value, and "
      "the lease; `/v3/watch` streams for convergence.")
    w("- **r-nacos**: 0.8.8 from crates.io, built once with `cargo install rnacos --version 0.8.8 --locked "
      "--root ~/.cache/distro-bench/rnacos-0.8.8` (skipped with a note where cargo is missing; not run by "
      "`--smoke`). Three members on 127.0.0.1 (`RNACOS_HTTP_PORT` and `RNACOS_HTTP_CONSOLE_PORT` free, "
      "`RNACOS_GRPC_PORT` the HTTP port + 1000, as Nacos 2.x clients expect; `RNACOS_RAFT_NODE_ID` 1-3, "
      "`RNACOS_RAFT_NODE_ADDR` its gRPC port): member 1 initialises raft, the others join it "
      "(`RNACOS_RAFT_JOIN_ADDR`); `RNACOS_HTTP_WORKERS=2`, `RUST_LOG=warn`, data under the run's temporary "
      "directory. A cluster counts as started once an instance registered on member 1 is listed by all three. "
      "The same workloads as ours over the same Nacos v1 HTTP API, and the same gRPC phase over Nacos's gRPC "
      "API; the registration, list, memory, restart and gRPC registration phases set "
      "`RNACOS_NAMING_HEALTH_TIMEOUT_SECOND` and `RNACOS_NAMING_INSTANCE_TIMEOUT_SECOND` to an hour, the ramp "
      "and the gRPC clients held run with its defaults (15 s, 30 s).")
    w("- **The load generator** (`scripts/benchlib/loadgen.py`) is the same for all: raw HTTP/1.1 keep-alive "
      "connections on trio, pre-built request bytes, one `send` per batch, responses parsed by Content-Length. "
      "It runs as its own process. Closed loop: every connection keeps its requests in flight back to back. "
      "Open loop (background load, beats): request *i* is due at start + i/rate and its latency counts from "
      "that due time; it goes out on the connection idle longest (so beats rotate over every connection and node), one in flight each, from a single thread on `epoll` "
      "(`benchlib.openloop`, ~15-20 µs of generator CPU per request, about a fifth of the trio loop it "
      "replaced, which could not drive the ramp's 20,000 beats/s on this machine). Registrations are spread round-robin over the three nodes (members) and over "
      f"{_g(results, 'settings', 'services', default=64)} services; every request registers a distinct "
      "instance.")
    ceiling_runs = lg.get("runs", {})
    if ceiling_runs:
        parts = [f"{k.replace('c', '').replace('xd', ' connections x depth ')}: {fmt(v['ok_per_s'])} req/s "
                 f"({v['cpu_us_per_request']} µs of generator CPU per request)" for k, v in ceiling_runs.items()]
        w("- **Load generator ceiling**, against a trivial server that answers without parsing "
          f"(`benchlib/trivial.py`){', server and generator pinned to different CPUs' if lg.get('pinned') else ''}: "
          + "; ".join(parts) + ". The registration runs use the first configuration, so the generator can drive "
          "several times what either cluster achieved; what it does cost is CPU on the same two cores "
          "(about 20-60 µs per request, measured in every run).")
    w("- **Pinning**: none during the measurements. Three nodes, three etcd members and the generator cannot be "
      "split sensibly over two cores, so every process floats; only the ceiling measurement is pinned.")
    w("")

    return out


def _method(run: _Run) -> list[str]:
    """How each headline figure is measured."""
    e, main, results = run.e, run.main, run.results
    mem, fo, ramp = run.d.get("memory", {}), run.d.get("failover", {}), run.d.get("ramp", {})
    out: list[str] = []
    w = out.append
    w("## How each figure is measured\n")
    regs = run.reg_runs
    w(f"- `register_per_s`: successful distinct registrations per second, closed loop, best of "
      f"{len(regs) or 1} connection configurations ({', '.join(r['config'] for r in regs) or '-'}), each on "
      "fresh services so earlier runs do not slow later ones. Ours: `POST /nacos/v1/ns/instance` (ok = body "
      "`ok`); etcd: a lease-bound put. After the run every node must list every registered instance "
      f"(ours listed {_g(main, 'register', 'instances_listed_per_node', default='-')} of "
      f"{fmt(_g(main, 'register', 'registered_ok'))}).")
    conv = main.get("converge", {})
    w(f"- `converge_p50_ms` / `converge_p99_ms`: a write on node k mod 3 until **every** node (the writer "
      f"included) shows it, {len(conv.get('samples_ms', []))} samples, 20-40 ms apart, while a background "
      f"generator registers new instances into {_g(results, 'settings', 'bg_services', default='?')} other "
      f"services at {fmt(_g(main, 'background', 'rate_target'))}/s (it achieved "
      f"{fmt(_g(main, 'background', 'ok_per_s'))}/s against us and {fmt(_g(e, 'background', 'ok_per_s'))}/s "
      "against etcd). Ours: " + (
          "an `instance/watch` long poll per node, re-armed with the checksum it last saw, so a change is "
          "reported as soon as the node applies it; " if conv.get("method") == "watch" else
          f"`instance/list` polled back to back every {conv.get('poll_interval_ms')} ms on a dedicated "
          "connection per node (the poll interval adds up to that much); ")
      + "etcd: a `/v3/watch` stream per member. The probe runs in the orchestrating process, the load in "
      "another. Both clusters still hold everything the throughput runs registered "
      f"({fmt(_g(main, 'register', 'registered_ok'))} instances for us). "
      f"On an idle cluster: ours p50 {fmt(_g(main, 'converge_idle', 'p50'))} / p99 "
      f"{fmt(_g(main, 'converge_idle', 'p99'))} ms, etcd p50 {fmt(_g(e, 'converge_idle', 'p50'))} / p99 "
      f"{fmt(_g(e, 'converge_idle', 'p99'))} ms.")
    if main.get("converge_poll") or e.get("converge_poll"):
        w(f"  Cross-check by polling both the same way (1 ms between polls; etcd with serializable reads, which "
          f"each member answers locally): ours p50 {fmt(_g(main, 'converge_poll', 'p50'))} / p99 "
          f"{fmt(_g(main, 'converge_poll', 'p99'))} ms, etcd p50 {fmt(_g(e, 'converge_poll', 'p50'))} / p99 "
          f"{fmt(_g(e, 'converge_poll', 'p99'))} ms.")
    w("- `push_p99_ms`: one Nacos 1.x style UDP subscriber per node (`instance/list` with `udpPort`, "
      "`clientIP=127.0.0.1`, `User-Agent: Nacos-Java-Client:v1.4.2`; packets gunzipped when they start with "
      "1f 8b and acked with `push-ack`); a registration on node k mod 3 until each subscriber's packet lists "
      "it; every (change, subscriber) pair is one sample. The SDK figure does the same with one "
      "`distroreg.NamingClient` per node (`subscribe()`, push mode `auto`).")
    w("- `failover_ms`: 12 services with one instance each beat every second through a survivor; SIGKILL the "
      "owner of the first (found with `operator/distro/server`), then poll `operator/distro/server` on both "
      "survivors every 5 ms until both name the same live owner for every service the victim owned. "
      f"Meanwhile every instance is checked on both survivors every 0.2 s for {fmt(fo.get('observed_s'))} s "
      "(longer than the 15 s heartbeat timeout) and must stay listed and healthy.")
    size = list_size(results)
    if size:
        w(f"- `list_per_s`: `GET instance/list` (no gzip) closed loop ({fmt(_g(main, 'list', 'config'))}) for the "
          f"registration run's length over {size}: after the registration runs, each system registers this set "
          "(`benchlib.listset`, prefix `list`) and waits until every node lists exactly that many instances in "
          "every one of its services, so both list bodies of the same size.")
    else:
        w(f"- `list_per_s`: `GET instance/list` closed loop ({fmt(_g(main, 'list', 'config'))}) for the "
          "registration run's length over the services its first configuration filled, in this run (recorded "
          "before the list phase registered a set of services of one size for every system): each system listed "
          "services of its own size, not like for like.")
    w(f"- `bulk_register_per_s`: the registration of {fmt(mem.get('instances'))} instances into "
      f"{_g(results, 'settings', 'bulk_services', default='?')} services (48 connections) that the memory figure "
      "measures; `beats_per_s`: light beats (`PUT instance/beat`, no body) over those instances, closed loop "
      "(48 connections x depth 1) for the registration run's length. `cpu_us_per_register` is the server CPU "
      "(three processes summed, from `/proc/PID/stat`) per registration of the best registration run, "
      "`cpu_us_per_beat` the same per beat of that beat run.")
    w("- `bytes_per_instance`: VmRSS from `/proc/PID/status` of each node before and after registering "
      f"{fmt(mem.get('instances'))} instances over {_g(results, 'settings', 'bulk_services', default='?')} "
      "services (and waiting until every node lists them), divided by the instances; the mean over the nodes.")
    w("- `snapshot_load_ms`: SIGTERM one node while the other two hold those instances, start a new process, and "
      "poll its `/readyz` every 5 ms until 200; from spawn (so Python start-up counts) and, separately, from its "
      "first HTTP answer.")
    w(f"- `max_heartbeating_instances`: steps of {', '.join(f'{x:,}' for x in _g(ramp, 'steps', default=[]) and [s['instances'] for s in ramp['steps']])} "
      f"instances over 100 services, each beaten (light beat, `PUT instance/beat`, spread over the three nodes) "
      f"every {fmt(ramp.get('beat_interval_s'))} s for {fmt(ramp.get('hold_s'))} s. One open-loop load generator "
      "(`benchlib.openloop`: one thread on `epoll`, one beat in flight per connection, latency from each beat's "
      "due time) beats for the whole ramp: a step's new instances are registered 4,000 at a time (open loop, "
      f"{fmt(ramp.get('register_per_s', 1000))}/s) while it keeps beating the others, and each batch joins its "
      "cycle as soon as it is registered. After "
      f"{fmt(ramp.get('settle_s', 2.0))} s of settling, a step is judged over the rest of its time: it holds when "
      "fewer than 0.1% of that window's beats fail, the beats answered in the window reach at least 95% of the "
      "needed rate, and `catalog/services` on every node shows all instances, all healthy, every second. "
      "The figure is the last step that held "
      f"(the ramp stops at the first that does not{'; it was capped at ' + format(_g(ramp, 'steps', default=[{}])[-1].get('instances', 0), ',') if ramp.get('capped') else ''}).")
    w("")

    return out


def _details(run: _Run) -> list[str]:
    """Per-run tables: registration runs, latency probes, memory, failover, ramp."""
    e, main, e_runs = run.e, run.main, run.e_runs
    mem, fo, ramp = run.d.get("memory", {}), run.d.get("failover", {}), run.d.get("ramp", {})
    regs = run.reg_runs
    out: list[str] = []
    w = out.append
    w("## Details\n")
    w("**Registration runs**\n")
    w("| system | configuration | ok/s | failed | latency p50 / p99 (ms) | server CPU per registration | "
      "server cores busy | CPU wait per CPU-second |")
    w("|---|---|---|---|---|---|---|---|")
    rn = _g(run.results, "details", "rnacos", default={})
    rn_main, rn_mem = rn.get("main", {}), rn.get("memory", {})
    for name, runs in (("ours", regs), ("etcd", e_runs), ("r-nacos", _g(rn_main, "register", "runs", default=[]))):
        for r in runs:
            lat = r["latency_ms"]
            w(f"| {name} | {r['config']} | {fmt(r['ok_per_s'])} | {r['failed']} | {lat['p50']} / {lat['p99']} | "
              f"{fmt(r.get('server_cpu_us_per_ok'))} µs | {fmt(r.get('server_cores_used'))} | "
              f"{fmt(_g(r, 'server_sched', 'wait_per_cpu'))} s |")
    w("")
    w("**Latency probes** (ms)\n")
    w("| probe | method | n | p50 | p90 | p99 | max | missed |")
    w("|---|---|---|---|---|---|---|---|")
    probes = [("ours: converge", main.get("converge")), ("ours: converge (poll)", main.get("converge_poll")),
              ("etcd: converge", e.get("converge")), ("etcd: converge (poll)", e.get("converge_poll")),
              ("ours: UDP push", main.get("push")), ("ours: SDK subscriber (auto)", _g(main, "sdk_push", "auto")),
              ("ours: SDK subscriber (watch)", _g(main, "sdk_push", "watch")),
              ("r-nacos: converge (poll)", rn_main.get("converge")), ("r-nacos: UDP push", rn_main.get("push"))]
    for label, p in probes:
        if not p or "p50" not in p:
            continue
        method = p.get("method") or ("poll" if "poll" in label else "watch" if "watch" in label else "udp")
        if "SDK" in label:
            method = ",".join(sorted(set(p.get("mode_in_effect", [])))) or p.get("mode", "")
        w(f"| {label} | {method} | {p.get('n')} | {p.get('p50')} | {p.get('p90')} | {p.get('p99')} | {p.get('max')} "
          f"| {p.get('missed', 0)} |")
    w("")
    if mem:
        mib = [f"{b / 2**20:.0f}→{a / 2**20:.0f}" for b, a in zip(mem.get("rss_before", []), mem.get("rss_after", []),
                                                                    strict=False)]
        w(f"**Memory and snapshot**: RSS per node {', '.join(mib)} MiB for {fmt(mem.get('instances'))} instances "
          f"({', '.join(str(x) for x in mem.get('bytes_per_instance_per_node', []))} bytes per instance). The "
          f"restarted node was ready {fmt(mem.get('snapshot_load_ms'))} ms after spawn, "
          f"{fmt(mem.get('snapshot_after_listen_ms'))} ms after its HTTP port first answered, and listed "
          f"{fmt(mem.get('restarted_node_lists'))} instances. Its two peers' `distro_snapshot_chunks_sent_total` "
          f"rose by {' + '.join(str(int(c)) for c in mem.get('snapshot_chunks_sent_by_peers', []))}; one snapshot "
          f"is about {fmt(mem.get('snapshot_chunks_needed'))} chunks. The counter also counts chunks whose send "
          "failed at once because the peer had not yet redialled the restarted node (nothing is encoded or "
          "transmitted then); the peer answers again when its link comes up, so twice the snapshot in one "
          "peer's counter means one lost answer, not a second transfer.\n")
    if fo:
        w(f"**Failover**: killed {fo.get('victim')}, which owned {fo.get('victim_services')} of the "
          f"{fo.get('instances')} beating services; the survivors agreed on new owners after "
          f"{fmt(fo.get('failover_ms'))} ms. Not-listed or unhealthy observations in {fmt(fo.get('observed_s'))} s: "
          f"{fo.get('violation_count')}{' (' + '; '.join(fo.get('violations', [])[:3]) + ')' if fo.get('violations') else ''}. "
          f"Beats: {fo.get('beats')}.\n")
    if rn_mem:
        w(f"**r-nacos memory and restart**: RSS per member "
          f"{', '.join(f'{b / 2**20:.0f}→{a / 2**20:.0f}' for b, a in zip(rn_mem.get('rss_before', []), rn_mem.get('rss_after', []), strict=False))} "
          f"MiB for {fmt(rn_mem.get('instances'))} instances; the restarted member answered `/health` "
          f"{fmt(rn_mem.get('restart_healthy_ms'))} ms after spawn and listed every instance "
          f"{fmt(rn_mem.get('snapshot_load_ms'))} ms after spawn.\n")
    out.extend(_ramp_table("Heartbeat ramp (ours)", ramp))
    out.extend(_ramp_table("Heartbeat ramp (r-nacos)", rn.get("ramp", {})))
    return out


def _ramp_table(title: str, ramp: dict[str, Any]) -> list[str]:
    out: list[str] = []
    w = out.append
    if ramp.get("steps"):
        w(f"**{title}**\n")
        w("| instances | beats/s needed | beats/s ok | failed | beat p50 / p99 (ms) | unhealthy or missing "
          "observations | server CPU per beat | nodes' cores | generator's cores (µs per beat) | "
          "CPU wait per CPU-second | load average | held |")
        w("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for s in ramp["steps"]:
            lat = s["beat_latency_ms"]
            cores = "+".join(f"{c:.2f}" for c in s["server_cores"]) if s.get("server_cores") else "-"
            gen = (f"{s['loadgen_cores']:.2f} ({fmt(s.get('loadgen_us_per_beat'))})"
                   if s.get("loadgen_cores") is not None else "-")
            load = fmt(s["loadavg"][0]) if s.get("loadavg") else "-"
            w(f"| {s['instances']:,} | {fmt(s['beats_per_s_target'])} | {fmt(s['beats_per_s'])} | {s['beats_failed']} "
              f"| {lat['p50']} / {lat['p99']} | {s['flap_count']} | {fmt(s.get('server_cpu_us_per_beat'))} µs | "
              f"{cores} | {gen} | {fmt(_g(s, 'server_sched', 'wait_per_cpu'))} s | {load} | "
              f"{'yes' if s['ok'] else 'no'} |")
        w("")
        if ramp.get("capped"):
            last = ramp["steps"][-1]
            w(f"The ramp stopped at its last step ({last['instances']:,}), so this is a lower bound of what the "
              f"cluster holds; look at the last step's beat latency (p99 {last['beat_latency_ms']['p99']} ms) "
              "and achieved rate to judge how close to saturation it was.\n")

    return out


def _limits(run: _Run) -> list[str]:
    """For every target not met: what limits it and what it would take."""
    main, results = run.main, run.results
    ours, etcd = results["distro"], results["etcd"]
    mem, ramp = run.d.get("memory", {}), run.d.get("ramp", {})
    reg_best, reg_cpu, e_cpu = run.reg_runs, run.reg_cpu, run.e_cpu
    out: list[str] = []
    w = out.append
    missed = [k for k in TARGETS if verdict(k, ours.get(k), results) == "NOT met"]
    w("## What limits us\n")
    if not missed:
        w("Every target was met in this run.\n")
    for key in missed:
        w(f"### `{key}`: {fmt(ours.get(key))} against {TARGETS[key][0]}\n")
        w(LIMITS.get(key, "No analysis written for this figure yet.").format(
            cpu=f"{reg_cpu:.0f}" if reg_cpu else "?",
            ecpu=f"{e_cpu:.0f}" if e_cpu else "?",
            gen=fmt(_g(results, "details", "distro", "main", "register", "runs", default=[{}])[0].get(
                "cpu_us_per_request")),
            cores=fmt(max((r.get("server_cores_used") or 0 for r in reg_best), default=None)),
            mem_n=fmt(mem.get("instances")),
            mem_rate=fmt(_g(mem, "register", "ok_per_s")),
            mem_cpu=fmt(_g(mem, "register", "server_cpu_us_per_ok")),
            etcd=fmt(etcd.get("register_per_s")),
            bg=fmt(_g(main, "background", "ok_per_s")),
            chunks=" + ".join(str(int(c)) for c in mem.get("snapshot_chunks_sent_by_peers", [])) or "?",
            needed=fmt(mem.get("snapshot_chunks_needed")),
            listen=fmt(mem.get("snapshot_after_listen_ms")),
            beat_cpu=_beat_cpu(ramp),
            idle_p50=fmt(_g(main, "converge_idle", "p50")),
            idle_p99=fmt(_g(main, "converge_idle", "p99")),
            bg_wait=fmt(_g(main, "background", "server_sched", "wait_per_cpu")),
            etcd_p99=fmt(etcd.get("converge_p99_ms")),
            push_p50=fmt(_g(main, "push", "p50")),
            push_wait=fmt(_g(main, "push", "server_sched", "wait_per_cpu")),
            **_grpc_limit_fields(run),
        ))
        w("")
    return out




def _grpc_limit_fields(run: _Run) -> dict[str, str]:
    """The gRPC phases' figures that the gRPC entries of ``LIMITS`` quote, ours and r-nacos's."""
    ours, rn = run.d.get("grpc", {}), _g(run.results, "details", "rnacos", "grpc", default={})
    return {
        "grpc_cpu": fmt(_g(ours, "register", "server_cpu_us_per_reg")),
        "grpc_http_cpu": fmt(_g(ours, "register", "http", "server_cpu_us_per_reg")),
        "rn_grpc_cpu": fmt(_g(rn, "register", "server_cpu_us_per_reg")),
        "rn_http_cpu": fmt(_g(rn, "register", "http", "server_cpu_us_per_reg")),
        "rn_push_p50": fmt(_g(rn, "push", "p50_ms")),
        "held": fmt(_g(ours, "hold", "connections")),
        "held_ok": fmt(run.results["distro"].get("grpc_clients_held")),
    }


def _beat_cpu(ramp: dict[str, Any]) -> str:
    vals = [s["server_cpu_us_per_beat"] for s in ramp.get("steps", []) if s.get("server_cpu_us_per_beat")]
    return f"{min(vals):.0f}-{max(vals):.0f}" if vals else "?"


LIMITS = {
    "register_per_s": (
        "CPU, and the share of it we got. A registration costs about {cpu} µs of server CPU summed over the "
        "three nodes (etcd: {ecpu} µs per lease-bound put), plus {gen} µs in the load generator. 3,000/s on two "
        "cores leaves at most 667 µs per registration for everything; here the nodes got {cores} cores' worth "
        "of CPU during the best run (the rest went to the generator and to other engineers' test runs), and "
        "etcd did {etcd}/s under the same conditions. Registering {mem_n} instances into 100 services ran at "
        "{mem_rate}/s ({mem_cpu} µs per registration): the cost no longer grows with the size of the service.\n\n"
        "Where the CPU goes now (py-spy, later runs of `scripts/bench --quick --only register --profile DIR` "
        "with forwarded writes batched; shares of busy samples): the HTTP server ~43%, of which the loopback `send` of the answer alone is ~20-26% (a kernel "
        "cost: it runs the receiving side of loopback TCP); the peer link ~42% inclusive (reading 25%, of which "
        "decoding ~9% and the core merging and applying what arrived ~13%; writing 17%, of which `send_all` "
        "~10% and encoding ~4%); `NamingApi.register` ~10%, `NodeRuntime.submit` ~6%. Forwarded writes, their "
        "replies and replication already share frames (peer protocol 3: one frame, one MAC and one `send_all` "
        "per peer per loop pass, ~4-5 messages per frame in those runs), so what is left there is per message "
        "(`distro.codec`, dataclasses) and per `send`.\n\n"
        "What it would take: fewer Python objects per write (msgspec structs or tuples instead of frozen "
        "dataclasses for requests, messages and effects in `distro.codec`/`distro.effects`; `ServiceKey` is a "
        "named tuple since issue 15's write-path work, and a keep-alive request no longer changes a cancel-scope "
        "deadline); "
        "clients that send a write to the owner (the SDK can learn it from `operator/distro/server`), which "
        "removes the forward hop and its two messages; and on this machine, CPU: the loopback `send` of every "
        "HTTP answer is a fifth of the nodes' time and no server-side change removes it."
    ),
    "converge_p99_ms": (
        "Mostly waiting for a CPU. The protocol's floor is one forward hop (two thirds of writes land on a "
        "non-owner) + `--sync-delay-ms` (2 ms; 10 ms before issue 15's visibility work) + one replication frame; on an idle cluster this run measured "
        "p50 {idle_p50} ms, p99 {idle_p99} ms. Under {bg}/s of background registrations the nodes waited "
        "{bg_wait} s for a CPU for every second they ran: a write crosses three or four processes (writer, "
        "owner, replica, the observer) and every hop can queue behind other runnable processes on two "
        "oversubscribed cores, and inside each node behind HTTP requests in one event loop. etcd suffers the "
        "same machine (its p99 here is {etcd_p99} ms).\n\n"
        "What it would take: the replication coalescing is 2 ms since issue 15 (it was 10 ms, which a stream "
        "of 1,000 writes/s kept in force for nearly every write); read peer-link frames before "
        "accepting more HTTP work, so a replication frame never waits behind a burst of requests; the CPU "
        "savings listed under `register_per_s`; and a machine that is not shared."
    ),
    "push_p99_ms": (
        "The push leaves within 1 ms of the change reaching the subscriber's node, so this figure is convergence "
        "to that node plus one UDP send: p50 {push_p50} ms. The nodes waited {push_wait} s for a CPU per "
        "CPU-second during the push probe, i.e. the tail is scheduling delay on the shared machine, not the "
        "push path. What it would take: the same as for `converge_p99_ms`."
    ),
    "snapshot_load_ms": (
        "Per-entry work in Python, and the machine. The restarted node asks one peer at a time and asks again "
        "only when no chunk arrived for `snapshot_retry_ms` (its peers sent {chunks} chunks; one snapshot is "
        "about {needed}), and the cyclic garbage collector is paused until the node is ready "
        "(`cluster/node/gctune.py`). "
        "What remains is linear: each entry is decoded into dataclasses by `distro.codec` (~1/3 of the load), "
        "merged with a version comparison, hashed into the key's digest with blake2b, and counted (~1/5), "
        "with about six `ServiceKey` hashes per entry (a named tuple's, in C, since issue 15; the frozen "
        "dataclass recomputed it in Python). Python "
        "start-up (imports, ~0.3-0.5 s here) is included; readiness after the HTTP port answered took "
        "{listen} ms.\n\n"
        "What it would take: a bulk-load path for an empty store (no per-entry merge; hash each key's digest "
        "once at the end); msgspec structs decoded straight from the frame; "
        "snapshot chunks encoded once by the sender and reused."
    ),
    "max_heartbeating_instances": (
        "CPU per beat. A beat costs {beat_cpu} µs of server CPU summed over the nodes (from the ramp steps); on "
        "top of that the owner's health check scans its instances once the earliest deadline passes. At 5 s "
        "beats, N instances need N/5 beats/s: 100,000 need 20,000/s, so the nodes need 20,000 times the CPU per "
        "beat, and the load generator, on the same two cores, 15-20 µs per beat (about a third of a core; "
        "each step's nodes' and generator's cores and the load average are in the ramp table). Beats that land "
        "on a non-owner (two thirds) are answered from its replica with batched receipts to the owner (issue "
        "15), which halved the CPU per beat of the ramp steps (see \"Where the time goes\" below). A step that "
        "falls behind gets worse, not just slower: an instance whose beats are late past the 15 s timeout turns "
        "unhealthy, and its beats are then forwarded to the owner and written, several times a beat's CPU.\n\n"
        "What it would take: fewer CPU-microseconds per HTTP request (light beats a node answers itself now "
        "skip the connection's task, see \"The keep-alive lane\" below: 6-12% less CPU per beat in a fixed-rate run, 17-31% in the ramp, which held 100,000 instances on a machine at load average ~4; what is left "
        "is mostly the socket calls, the interpreter's share of the handler, ~11 µs, and the owners' receipts); "
        "keep the health check's deadlines in a heap or timer wheel; a load generator and nodes that do not "
        "share two cores."
    ),
    "bulk_register_per_s": (
        "The same cost as `register_per_s` (see there), measured into many small services; r-nacos is native "
        "code with no per-request interpreter cost, so the ratio is set by our CPU per registration. Since the "
        "run above, registrations on kept-alive connections are taken in the keep-alive lane without a task, "
        "the lane's step is one dispatch of the runtime, and the peer links pack more per frame: about a "
        "fifth less server CPU per registration at 48 x 1 (\"Bulk registrations at low pipeline depth\" "
        "below)."
    ),
    "cpu_us_per_register": (
        "See `register_per_s`: the forward hop and replication over the peer link, the HTTP server and the "
        "interpreter. r-nacos pays none of the interpreter cost."
    ),
    "beats_per_s": (
        "CPU per beat (`cpu_us_per_beat`). Since the run above, the two thirds of beats that land on a node "
        "that does not own the service no longer travel to the owner and back: that node answers from its "
        "replica and sends the owner batched receipts, one `Renew` per owner per `--beat-receipt-interval-ms` "
        "(docs/design.md, \"Beats answered from the replica\"; measured in \"Where the time goes\" below: CPU "
        "per beat 107-183 µs before, 56-72 µs after, in alternating runs). What remains per beat is the HTTP "
        "request itself (parse, route, render, the loopback `send`) in the interpreter; r-nacos pays no "
        "interpreter cost."
    ),
    "cpu_us_per_beat": ("See `beats_per_s`."),
    "list_per_s": (
        "The host list is cached per view revision, so a list is the HTTP server, parameter validation and the "
        "per-request header; r-nacos answers from native code."
    ),
    "failover_ms": (
        "Failover is driven by the peer link noticing the dead connection; if this is slow the survivors did not "
        "notice the broken link and fell back to `peer_timeout_ms` (3 s)."
    ),
    "grpc_register_per_s": (
        "CPU per call, and when each system replicates. Our gRPC registration costs about {grpc_cpu} µs of server "
        "CPU summed over the three nodes, about what a v1 HTTP registration costs in the same rounds "
        "({grpc_http_cpu} µs): the same write path behind another front door (docs/grpc.md, \"Where it "
        "stands\"): two thirds of the calls are forwarded to the service's owner, and every write is replicated "
        "to the other nodes on its own within milliseconds. r-nacos spends {rn_grpc_cpu} µs per gRPC "
        "registration, well under its own v1 HTTP registration ({rn_http_cpu} µs): it applies a gRPC "
        "`InstanceRequest` on the member that holds the connection, with no forward, and sends the other "
        "members what changed every 500 ms in one batch, keyed by instance so that writes to the same "
        "instance within the interval travel once (r-nacos 0.8.8, `src/naming/cluster/instance_delay_notify.rs`); "
        "the other side of that is its change -> subscriber latency in the gRPC section (p50 {rn_push_p50} ms: "
        "that batching plus a 500 ms notify tick).\n\n"
        "What it would take: connection-bound instances written on the connection's node (it is the only "
        "writer of them, as in Nacos 2.x's client-based Distro) and replicated in batches per peer, keeping "
        "the push latency target; then the per-call Python of the front door (docs/grpc.md, \"What is left\")."
    ),
    "cpu_us_per_grpc_register": ("See `grpc_register_per_s`."),
    "grpc_clients_held": (
        "The phase opened {held} connections and {held_ok} were set up and still connected at the end (failed "
        "setups and open connections per node are in the gRPC section); the target is 10,000, the size of the "
        "full mode's phase (quick opens 3,000, smoke 100)."
    ),
    "bytes_per_instance": (
        "This run predates the memory changes of \"Memory per instance: where it goes\" above. Measured since "
        "with `scripts/bench --scale 100000 --scale-hold 30` (the same 100k registrations, resident memory of "
        "each node before and after): 728 B per instance per node before (issue 15's scale run), 425 B with "
        "shared values and the slimmer `Entry`, 383 B with the entry id kept in place of the ip (load average "
        "5-6; the target, at most 400 B, is met there), and 359 B at a million (`scripts/bench --scale 1000000`, "
        "19:04 UTC). "
        "The in-process breakdown names what is left."
    ),
}

MEMORY_NOTES = """What changed (issue 15; each step measured with the profile, 10,000 instances, resident growth
in brackets):

- **Shared repeated values** (`distro/sharing.py`): requests and replicated entries arrive as fresh objects,
  so every instance had its own `"DEFAULT"`, its own port and weight objects, its own empty metadata dict,
  and every replicated version its own writer id string. Cluster names, writer ids and metadata strings are
  now interned; ports, weights and metadata mappings go through small bounded tables (cleared when full);
  instances without metadata share one read-only empty mapping; a message's versions share their
  millisecond int. 640 -> 424 B walked (680 -> 437 B).
- **`Entry` with the version inside** (`distro/datum.py`): the `(version, value)` named tuple plus its
  `Version` named tuple (56 + 64 B) became one slots object holding `ms`, `counter`, `node` and `value`
  (64 B); `entry.version` builds the `Version` on demand and the hot paths compare with
  `Entry.newer_than`. 424 -> 367 B walked (437 -> 390 B).
- **The entry id in place of the ip** (`distro/model.py`): an `Instance` kept `ip` as well as the entry id
  string `cluster/ip:port` that keys its entry, a second copy of the same characters; it now keeps the
  entry id (the same string object as the datum's key: the codec hands the item's id to the instance it
  decodes) and reads `ip` back out of it. 367 -> 321 B walked (390 -> 340 B).

The `Instance` row grew by 8 B meanwhile: the orphan mark (`orphaned_ms`) landed as an eleventh slot.

What stands between this and less: per instance a node still holds the `Instance` (120 B: eleven 8-byte
slots, a 16-byte object header and a 16-byte garbage-collector header), its entry-id string (~73 B for
`DEFAULT/10.x.y.z:port`), the `Entry` (64 B), a slot in its service's dict (~33 B), the version's millisecond
int (32 B unless shared), and on the owner the heartbeat clock (~35 B per owned instance). Python objects
carry 32 bytes of headers each, so the next steps are structural: one object per instance holding the
entry's version and the instance's fields (no separate `Entry`), or a columnar store per service (arrays of
ports, weights and versions), both large changes to the core's data model.
"""

PROFILE = """## Where the time goes (py-spy), and what changed

Profiles of all three nodes taken with `py-spy record --nonblocking` while the benchmark ran
(`scripts/bench --profile DIR` writes them: raw collapsed stacks per node and a flame graph of `n1`). Shares
are of the samples in which the node was busy; on this shared machine a process preempted inside a system
call is counted there, so the loopback `send` and `epoll` look larger than their real CPU cost.

Changes made from these profiles (issue 6):

- **Lazy read views** (`distro/views.py`, `DistroNode._drain_notifier`). Every change to a service, local or
  replicated, used to rebuild that service's whole `ServiceView` (walk every entry, sort, new tuple) on every
  node after every input: ~25-30% of a node's CPU during registration, and O(instances in the service) per
  write, so the cluster slowed down as services grew. The notifier now swaps in a view that only points at
  the key's entries and builds its sorted tuple on first read (a list, a watch or a push); writes nobody
  reads cost O(1). After the change `take_effects` is ~3% of the registration profile.
- **Per-service cap check** (`DistroNode._register`): the O(n) live-instance count now runs only when the
  datum is big enough to be at the cap.
- **Health check** (`DistroNode._check_health`): every second the owner walked every instance it owns
  (~60 ms at 70k owned instances, on each node): a periodic stall that made the convergence and push tails
  (p99 212 ms and 68 ms in a first full run with 210k instances registered). It now keeps a lower bound of
  the earliest deadline (pulled in by every write that starts or shortens a heartbeat clock) and scans only
  once it has passed; with clients beating on time that is one scan per ~10 s instead of every second.
- **Replication flush** (`DistroNode._mark_dirty`): a change after a quiet spell is flushed at the next tick
  instead of `sync_delay_ms` (10 ms) later; a stream of changes still coalesces. Idle convergence p50 went
  from ~15 ms to ~3 ms.
- **Snapshot load** (`DistroNode`, start-up): a starting node asked *every* peer for a full snapshot and asked
  every peer *again* every second until one was complete, so once loading took more than a second each
  retry made it slower (at 20k instances the peers sent 16 chunks for a 4-chunk snapshot). Worse, the
  answer was often lost: a peer answers over its own link to the restarted node, which it has not redialled
  yet, so the chunks failed to send and the node waited for the next retry. Now the node asks one peer at a
  time (ready peers first) and hands over to the next only on "not ready", a failed send, or a whole
  `snapshot_retry_ms` without a chunk; a peer whose answer failed to send resends it when its link to the
  node comes back.
- **Garbage collector** (`cluster/node/gctune.py`): a node process pauses the cyclic collector until it is ready,
  then freezes what it holds (`gc.freeze()`); in a micro-benchmark of the 100k snapshot load in one
  process, collections were two thirds of the time. A full collection walks every tracked object (two per
  stored instance, ~1.3 µs each): measured in one process holding 1M instances per node (2.08M tracked
  objects, load average ~5), `gc.collect()` took 10.1 s and even `gc.get_freeze_count()` 1.4 s, while a
  young collection over 20k new objects with the rest frozen took 4.4 ms. So no collection walks the data
  any more: the middle generation is collected every 4 young ones (~20k objects at most) and its survivors
  are frozen at once, the oldest generation is never collected on its own, and the frozen heap is handed
  back (one full collection) only on evidence of garbage in it: the process's small-object blocks
  (`sys.getallocatedblocks()`, 7.5 ms at 1M) per stored entry 25% (and at least 1M blocks) above the lowest
  value since the last full collection. The 10-minute unfreeze it replaces paused a node at 1M for ~3 s,
  longer than `peer_timeout_ms`, and its peers took its services. The risk is memory: reference cycles
  that die after being frozen (a connection's, a task's) are kept until they reach that margin.
  Collections over 50 ms are logged (`distro.gc`), with their CPU time.
- **Bytecode** (`scripts/bench`): these machines set `PYTHONDONTWRITEBYTECODE`, so every node start compiled
  its modules from source; the script precompiles them once.

Issue 15 (r-nacos side by side; profiles from `scripts/bench --quick --profile`, busy machine, shares of all
samples including idle `epoll`):

- **Tombstone collection** (`DatumStore`): the store indexes which entries are tombstones, so the pass every
  `gc_interval_ms` looks only at them: with 50 tombstones not yet due among 200,000 entries a pass took
  8-20 ms before and 0.04 ms after (the issue measured 180-270 ms at a million).
- **Closed-loop light beats**: the node idles in `epoll` ~38% (waiting for a CPU share, not for work); of the
  rest, the loopback `send` of the HTTP answer (~12%) and of peer-link frames (~11%), the peer link's write
  and read loops (15% and 8% inclusive: two thirds of beats go to the owner and back), `NamingApi.beat` ~9%.
  The lever is answering light beats from the local replica and sending the owner batched receipts (done:
  see the next item).
- **Beats answered from the replica** (`distro/beats.py`, docs/design.md): a node answers a beat for an
  instance its replica holds healthy and renews it on the owner with one `Renew` per owner per second,
  instead of a `Forward` and a `ForwardReply` per beat. Measured with `scripts/bench --quick --only memory`
  (20,000 instances, closed-loop light beats, 48 connections), alternating runs with the receipts off
  (`DISTRO_BEAT_RECEIPT_INTERVAL_MS=0`, every beat forwarded as before) and on, load average 4.6-8.7:
  off 3,521 / 4,199 / 5,221 / 4,686 / 5,710 beats/s at 183 / 140 / 138 / 163 / 148 µs of server CPU per beat
  (three processes summed); on 6,756 / 10,814 / 19,330 beats/s at 67.5 / 71.5 / 59.2 µs. The open-loop
  heartbeat ramp (`--only ramp --ramp 5000,20000,40000`, one run each, 18 s per step): CPU per beat at
  5,000 / 20,000 / 40,000 instances 454 / 284 / 174 µs off, 212 / 109 / 83 µs on (at 40,000: 25.4 against
  12.3 s of server CPU in the step); both held 40,000 on that (quieter) machine. 60,000 did not hold with the
  receipts on (`--ramp 60000,80000,100000`): 10,516 of 12,000 beats/s, p99 2.6 s, no instance unhealthy or
  missing, with each node busy a quarter of a core and the load generator half a core, so the two shared
  cores, not the nodes, set that limit. Again after rebasing on peer protocol 3 (forwards and replies
  batched into shared frames, which made forwarding cheaper), load average 5-7.5: memory phase, off
  8,285 / 7,465 / 7,033 beats/s at 115.8 / 107.4 / 122.0 µs per beat, on 22,485 / 14,357 / 10,068 at
  55.8 / 64.0 / 70.7 µs (pairs interleaved); ramp (`--ramp 20000,40000`), 20,000 held by both at 169.8 µs
  per beat off and 89.9 µs on; 40,000 held by neither on the busier machine (the load generator reached
  62% of the rate off, 72% on). The run with receipts on saw 10 unhealthy observations in the first 5 s
  of the 40,000 step, all recovered by t+6 s. Most likely the ramp itself: it does not beat while it
  registers a step's new instances (about 9 s in that run, going by the log's timestamps, against about
  5 s in the run with receipts off), so some of the previous step's instances went past 15 s without a
  beat before the lagging generator reached them.
- **The ramp's load generator and schedule** (`benchlib/openloop.py`, `benchlib/ramp.py`). The open loop
  ran on trio: a task switch and an `epoll_ctl` per request, 80-105 µs of the generator's CPU per request
  (against the trivial server at 8,000/s, load average 4-5; `python -m benchlib.loadgen --workload ceiling
  --connections 300 --rate 8000 --duration 5`, old and new alternating), so 20,000 beats/s would have needed
  more than one of the two cores for the generator alone. It is now one thread on `epoll` with each socket
  registered once: 17-20 µs per request there, 14.3 µs at 15,000/s (load average ~7), where `send`, `recv`
  and `epoll_wait` are most of it. The ramp also stopped beating while it registered a step's new instances
  (see the item above) and registered them closed loop: now one generator beats for the whole ramp
  (steered over stdin), the new instances are registered 4,000 at a time at 1,000/s and each batch joins
  the beat cycle at once. On this (busy, load average 7-17) machine the closed-loop registration of 40,000
  more instances beside 8,000 beats/s had taken 241 s, the beats fell 20-110 s behind, and instances
  expired. Each step now records its nodes' and the generator's cores and the load average.
- **The light beat's handler** (`cluster/api/memo.py`): the accepted beat's answer is encoded once per beat
  interval (`Response.json` was 4.4% of a node's busy samples in the ramp). The whole handler path of a light
  beat, from `ConsoleFront` through `NamingApi` and the core, without sockets (three in-process nodes, 3,000
  instances, beats sent to one node): 19-23 µs of CPU per beat at load average ~11, against 131 µs per beat
  for the three node processes in the ramp's 20,000 step at load average ~9: most of a beat's cost is the
  HTTP server loop, its cancel-scope deadlines and the socket calls, not the handler.
- **The keep-alive lane** (`cluster/http/lane.py`, docs/http-server.md): a kept-alive connection waiting for
  its next request parks its task on an epoll set of the lane's own, and one lane task answers the light beats
  the node has the answer to at once (owner, or replica plus a receipt: `DistroNode.beat_now`,
  `NamingApi.answer_now`) inline: a `recv`, the handler and a `send`, no `epoll_ctl` and no task switch per
  request. Server CPU per beat, three nodes summed, open-loop light beats over 200 connections for 12 s (a
  /tmp driver around `benchlib.procs.start_distro` and `benchlib.loadgen`), interleaved with the code
  before, load average 1.2-3.1: 40,000 instances at 6,000/s 90.8 / 87.8 -> 85.0 / 76.9 µs; 60,000 at
  10,000/s 93.3 -> 87.7 µs. py-spy then finds most of a node's busy samples in the lane, half of them in the
  loopback `send` of the answer (which on a shared machine also counts the time the process is preempted
  there); the handler path itself is ~11 µs in one process (`answer_now` and `_render`, 3,000 instances).
  The heartbeat ramp with it (`scripts/bench --quick --only ramp --ramp 60000,80000,100000`, 18 s per step,
  the generator rotating over its connections), then the same with the server before the lane (dcf587d, the
  same generator), one run each, load average 2.2-4.4 and 4.9: 60,000 / 80,000 / 100,000 instances held by
  both (0 failed, no instance unhealthy or missing), server CPU per beat 58.2 / 47.9 / 45.1 µs against
  70.4 / 69.1 / 61.6 µs; at 100,000 the three nodes took 0.30 cores each (0.41 before) and the generator
  0.35, beat p99 89 ms (589 ms before). Not the quiet recorded run: the full `scripts/bench` is the figure.
- **Instances marked unhealthy although their beats were answered on time** (docs/design.md, "A starved node
  reads before it judges"): a CPU-starved node's late timer ran before the peer frames that waited for it,
  declared peers down on its own backlog, and the beat receipts flushed in that moment went to nodes that did
  not own their keys. Reproduced and fixed in the simulator (`distro/testing/starve.py`,
  tests/sim/test_starvation.py); the ramp's generator also carried its beat cycle on from the wrong place
  when a step widened it (instances waited up to 9.9 s between beats instead of 5-7 s; fixed in
  `benchlib/openloop.py`).
- **Registration**: HTTP serving ~35% (a third of it `send`), peer link read 21% / write 11%,
  `NamingApi.register` ~14%, the core (`ClientWrites`, merge, notifier) under 10%.
- **List**: rendering ~22% (`ListRenderer.render`; `json.dumps` ~7%, `client_info` ~6%), the HTTP server the
  rest; a C JSON encoder would save a few per cent at most.
- **A big service's first list after a change** (`ListRenderer`, `HostsCache`, `Instance.checksum_digest`):
  every change re-rendered all of a service's hosts and re-hashed all of them for its checksum. Instances
  are immutable and a change replaces only the ones that changed, so the renderer now keeps each host's
  JSON per instance object (services of 64 hosts or more, inside `--list-cache-bytes`) and joins the array
  from them, and each instance keeps its 16-byte checksum share. In one process (a 10,000-instance service,
  one instance changed before each list, load average ~4): 68 ms median before, 9-10 ms after.
  Later, each host object is formatted straight into a string instead of a dict through `json`
  (`ListRenderer._host_fragments`, byte for byte the same, property-tested), with what follows from the
  metadata encoded once per distinct metadata mapping, and the join, the view build and the selection run
  as C-level passes (`map`, `compress`, `attrgetter`): the first list ever of that service 98-113 -> 48 ms
  of CPU (6.0 -> 1.4 us per host rendered), a list after a change 5.5-6.7 -> 5.6-6.0 ms (three alternating
  pairs, load 2.6-3.7; what is left is the view, the selection and joining 3.6 MB).
  Then (issue 15, "a 10,000-instance list after a change within 20 ms"), measured apart on three local
  nodes holding only that service (one instance registered on node 1, 0.3 s, then each node's list timed
  with the scale probe's urllib client and with a raw socket; `scripts/bench --scale 10000 --scale-hold 5`
  reproduces the probe in 30 s), the time to the first byte was 85-90% of the whole: the render, not the
  transfer (a second list, already rendered, took 2.5-3.5 ms in all), and of the render two thirds were
  copies of the 3.6 MB body (the array joined from 10,000 fragments, wrapped in `[...]`, in the body's
  head and tail, then in the HTTP head) and the rest O(hosts) passes to find the changed hosts and keep
  the fragment map. The renderer now keeps a big service's array as runs of about 128 hosts
  (`HostsCache.runs`: instances, their fragments, the run joined); after a change only the runs whose
  instances are not, one for one, the same objects are joined again (an insertion does not move the
  others: runs are found by where their first instance now stands), and the route answers with the
  chunks (`Response.parts`), sent with `sendmsg` without a copy. In one process (load 7.5-9): a list's render after a change 24.9-31.8 ->
  4.8-11.9 ms median (1.5-3.8 ms at best); three nodes, 15 lists after a change each way at load ~6:
  26.8 -> 15.1 ms median with the probe's client (time to first byte 23.6 -> 13.2 ms); the node's step
  that answers it took 12-16 ms, 6 ms of it on a CPU (`DISTRO_STALL_LOG_MS=2`), the rest waiting for a
  core. What is left per change is the view's build and checksum and the selection (C-level passes over
  10,000 instances), then sending 3.6 MB (about 2 ms of CPU on loopback). The set of a service's clusters
  (another such pass) is now made only for a list that names clusters, and `select_hosts` no longer counts
  every healthy instance under the default protect threshold of 0 (it stops at the first healthy one) nor
  copies an unfiltered selection with every instance enabled (it is the view's own tuple): the render
  after a change in one process 1.60-1.67 -> 1.02-1.04 ms median (two alternating pairs, load ~6.9).
  `scripts/bench --scale 1000000 --scale-hold 30` after both (2026-11-29 00:08 UTC, load 5.7-7.4, against
  1.0-3.6 for the recorded run): lists after a change 9.3-23.3 ms, median 16.4 (two of 15 over 20 ms),
  their heads 7.9-18.0 ms, median 12.3. Again after gzip and `prepare` below (00:26 UTC, load 2.3-4.9):
  plain 10.2-21.4 ms, median 14.7 (the first two samples over 20 ms: 21.0, 21.4), heads median 11.3; with
  gzip 11.6-25.5 ms, median 15.7, to read 99,231 bytes instead of 3,679,777, then 4.6-15.6 ms (median 9.5)
  to inflate them in Python; the very first lists 67.8-126.3 ms, and no HTTP task step of 50 ms or more
  logged by any node during that step. And with everything below (00:45 UTC, load 1.9-4.2, the
  nearest to the recorded run's 1.0-3.6): plain 6.9-10.1 ms, median 7.7 (was ~24 in the recorded run),
  heads 5.6-7.3 ms; gzip 6.9-11.1 ms, median 7.4, then median 5.1 ms to inflate; the very first lists
  57.6-64.1 ms (was 62.2-89.5).
  The probe asks without gzip, as nacos-sdk-python does (urllib sends no `Accept-Encoding`). The Java 1.x
  client (`gzip,deflate,sdch`) and our SDK (httpx, `gzip, deflate`) ask for gzip, and the node now serves
  it (`cluster/api/gzipbody.py`): a list of 1,024 bytes or more goes out as one gzip member whose pieces
  are deflated apart (level 1, each ending on a sync flush, so they join into one stream): a big
  service's runs are deflated once and kept with them (a change deflates only the runs it touched), a
  kept form's pieces until the view changes, the head (it carries `lastRefTime`) each time, and the
  CRC-32 is taken over the whole body each time (a C pass, ~1 ms for 3.6 MB). Three local nodes, load
  3.4-5.5, 15 lists after a change each way: plain 7.6 ms median to read 3.68 MB (first byte 6.4 ms);
  gzip 7.2 ms to read 98 KB (first byte 7.7 ms: a run deflated and the CRC), then 2.9 ms for the client
  to inflate it. On loopback gzip is no faster in all; across a network, where 3.68 MB takes ~30 ms at
  1 Gbit/s, it is. The scale probe now times both, each after its own change, and keeps both figures.
  The very first list of a big service (nothing kept for it: after a restart, or once the cache let it
  go) still renders every host, 60-110 ms of CPU, and did it in one step of the event loop. The route
  (and the watch) now call `ListRenderer.prepare` first: the hosts' objects and checksum shares are made
  1,000 at a time with a yield between slices, and the render then finds them (by instance identity, so
  a change meanwhile costs only its own hosts). In one process (a 10,000-instance service, each flavour
  and encoding cold in turn, load 3-3.6, two runs each way): the longest event-loop step during a cold
  list 49-50 -> 11 ms (plain) and 22-27 -> 7-11 ms (Java flavour, gzip), the list itself as long as
  before (30-70 ms). A run now keeps its hosts' objects only joined, with where each ends (4 bytes a
  host), cutting them out again when a change joins the run anew, and the kept body made of the runs'
  bytes counts them once: what the cache holds for a 10,000-instance service, measured with tracemalloc,
  7.65 -> 3.72 MB (the bound counted 11.9 -> 3.7 MB), for ~0.3 ms more per list after a change (render
  in one process 1.04-1.14 -> 1.25-1.76 ms median, four alternating pairs, load 4.5-5).

- **Forwarded writes batched on the peer link** (`cluster/node/peerlink.py`, peer protocol 3): a frame now
  carries every message queued for that peer when the link's writer wakes (a msgpack array: one MAC, one
  msgpack call on the reader's side, one `send_all`), and the runtime takes a frame's messages at once
  and drains their effects once (`NodeRuntime.on_messages`: one notifier drain, one deadline check per
  frame). A forwarded write no longer waits on a trio `Event` inside a cancel scope of its own: the
  task parks and the reply reschedules it, and the timer task gives up on overdue ones
  (`NodeRuntime._give_up_waiting`); likewise the link's writer parks on an empty queue instead of waiting
  on an `Event`, and a per-link watchdog replaces a cancel scope per `send_all`. Measured in one process (`python -m tests.cluster.test_forward_batch
  40000 48`: two runtimes over a real link, CPU of both per forwarded registration, interleaved runs,
  busy machine): 92-132 µs before, 57-72 µs after with ~47 messages per frame; 120-126 µs before, 99-105
  µs after with 4 clients (4 messages per frame, like the cluster bench's 4-5). In the cluster
  (`scripts/bench --quick --only register`, 9 interleaved pairs against the code before, load average
  4-7): CPU per registration median 236 µs before, 214 µs after (paired median -24 µs, ~10%, one pair
  of nine the other way); with the writer change too, 5 more pairs at load average 5-9: median 304 µs
  before, 262 µs after (every pair lower, by 3-72 µs), registrations/s higher in four pairs of five
  (+4% to +16%). MAC share of busy samples 2.7% -> 1.1%, `NodeRuntime.submit` 8.6% -> 6.4%. CPU per
  registration moves with the machine's load (the same code measured 200-320 µs in these runs, 554 µs in
  the recorded run at load average 9-12), so the ratio against r-nacos needs both in one run:
  `scripts/bench --quick --only register,rnacos-register` (load average 6-8, 7 runs alternating the code
  before and after): ours / r-nacos CPU per registration 0.99, 1.20, 1.19 before; 1.05, 0.92, 0.92, 1.12
  after. Registrations/s 0.60, 0.63, 0.84 before; 0.95, 1.04, 1.25, 0.96 after. The target (CPU at most
  two thirds of r-nacos's) is not met.

- **Fewer Python operations per write** (`distro/model.py`, `distro/ownership.py`, `distro/codec.py`,
  `cluster/api/keycache.py`, `distro/store.py`). Profiles of the registration sweep showed no single hot
  spot but many small ones on every node: `ServiceKey` was a frozen dataclass whose generated `__hash__`
  built a tuple in Python on each of the dozen dict look-ups a write makes per node (store, notifier,
  replication, health clocks, catalog, push); each `SyncBatch` and `Forward` parsed and regex-checked every
  service key again (the decode context lived for one message); ownership look-ups built `str(key)` each
  time; `validate_ip` split the address and ran a generator per octet (on the HTTP node and again when the
  owner decodes the forward); and the notifier walked a service's tombstones to learn whether it still
  exists. Now `ServiceKey` is a named tuple (hash and equality in C: ~530 -> ~200 ns per look-up with an
  equal key), `OwnershipMap.owner_of_key` caches by the key, each node's peer links keep the keys and
  cluster names they validated (`codec.DecodeCache`, 4 MiB bound) so replicas also share one key object per
  service, the HTTP API keeps validated keys by their raw names (`ServiceKeyCache`, 4 MiB bound), IPv4 is
  checked with one regular expression (same answers as before on 100,000 generated strings), and
  `DatumStore.service_exists` counts tombstones instead of walking them. Measured: the core and codec
  alone (three `DistroNode`s in one process exchanging encoded frames, 20,000 new instances in 64
  services, process time, a scratch driver; load average ~8) 188 / 182 / 153 -> 142 / 115 / 116 µs per
  registration in three interleaved pairs; two runtimes over a real link (`python -m
  tests.cluster.test_forward_batch 20000 48`, load average 8-9) 140 / 130 / 159 -> 97 / 131 / 136 µs per
  forwarded registration. In the cluster (`scripts/bench --quick --only main`, three interleaved pairs
  against the code before, with the 2 ms replication below, load average 8.4-12.4): server CPU per
  registration 356 / 459 / 369 -> 280 / 365 / 317 µs (-21%, -21%, -14%), registrations/s 1,804 / 1,929 /
  1,659 -> 2,897 / 2,130 / 2,497. On a machine this busy (the nodes waited 2-3 s for a CPU per CPU-second)
  every figure is about twice what a quiet run gives, so the ratio against r-nacos needs both in one
  quiet run; whether the target (two thirds of r-nacos's CPU) is met is not known from these runs.
  With the keep-alive change below as well (main at 19:02 UTC against daf4275, which also
  carries other work landed meanwhile, none of it on the v1 registration path), six interleaved
  `scripts/bench --quick --only register` pairs at load average 2.7-4.2: 333 / 324 / 362 / 391 / 400 /
  489 -> 250 / 324 / 274 / 307 / 318 / 359 µs per registration (paired median -83 µs, about -23%),
  registrations/s 4,950 / 4,170 / 4,435 / 3,707 / 3,942 / 1,513 -> 6,561 / 4,422 / 5,891 / 4,388 / 3,305 /
  2,155. Scaled to the quiet run's 189 µs that would be ~146 µs against the target of 155 µs (two thirds
  of r-nacos's 233 µs), an extrapolation. Beside r-nacos in the same runs (`scripts/bench --quick --only
  register,rnacos-register`, 19:09-19:14 UTC, load average 3.5-6.3), ours / r-nacos CPU per registration:
  0.92, 0.92, 0.80, then interleaved with the code before: before 1.15, 0.90, 1.05; after 0.70, 0.94,
  0.93 (registrations/s ratio before 0.85, 1.17, 1.02; after 1.54, 1.10, 1.13, and 1.17, 1.16, 0.93 in the
  first three). Lower than before, but the target (0.67) is not met in any of these runs.
- **Replication coalescing 10 -> 2 ms** (`sync_delay_ms`, docs/design.md). A stream of changes to a peer is
  flushed `sync_delay_ms` after its first change unless the peer had been quiet that long; under 1,000
  registrations/s (~330/s per owner and peer, ~3 ms apart) it was almost never quiet for 10 ms, so most
  writes waited up to 10 ms for their batch: most of the 10 ms budget for visibility p99. At 2 ms the
  saturated registration sweep sends about twice the batches (`distro_sync_batches_sent_total` over an
  8 s sweep: 0.15 batches per registration at 10 ms, 13 entries each; 0.28 at 2 ms, 7 entries; 0.31 with
  no delay at all, where the event loop's passes alone coalesce), at ~8 µs of CPU per extra message
  (encode, decode and merge of a 1-entry against a 20-entry batch, one process) plus a timer wake-up per
  flush and, when nothing else is queued for that peer, a frame: an estimated 2-3% of a registration at
  saturation. Four alternating sweeps each on this machine (load average 8.4-9) could not tell them
  apart: 288 / 328 / 326 / 304 µs per registration at 10 ms, 284 / 365 / 283 / 374 µs at 2 ms.
  `--sync-delay-ms 10` restores the old trade. The visibility target itself could not be checked on this machine during the work
  (load average 8-14: even the idle cluster's p50 was 6-18 ms, and p99 under background load moved
  between 63 and 416 ms from run to run for the same code). Two later interleaved `--only main` pairs at
  load average 5.1-7.3 (the nodes waited ~2.8 s for a CPU per CPU-second), against daf4275: under 1,000
  registrations/s, visibility p50 / p99 20.7 / 123.0 and 55.8 / 256.2 ms before, 11.3 / 36.3 and 13.3 /
  66.4 ms after; idle 10.3 / 19.6 and 13.6 / 21.7 before, 9.4 / 14.7 and 10.6 / 21.6 after. Better in both
  pairs, still far from 10 ms on a machine this busy.
- **Keep-alive waits without a cancel-scope deadline** (`cluster/http/server.py`, docs/http-server.md): a
  keep-alive request changed its connection's deadline twice (to the idle timeout while waiting, to none
  while handling; ~3 µs each through trio's context manager, ~3-4% of the registration profile). A
  connection waiting for its next request is now listed with the time it started waiting, and one reaper
  task per server closes the oldest at its own idle timeout. Server CPU per keep-alive request
  (`scripts/bench_http --serve` driven by `benchlib.loadgen`, 48 connections, three interleaved pairs,
  load average ~7.5): 45.6 / 39.3 / 46.5 µs before, 35.6 / 38.0 / 36.3 µs after.
- **Bulk registrations and service size**: the bulk figure (100,000 new instances into 1,000 services) is
  not lower because per-write work grows with a service's size. Registering 30,000 instances into 1,000
  services and into 64 services on fresh clusters, alternately, cost 372 / 329 and 393 / 291 µs per
  registration; 100,000 into 1,000 services ran without a downward trend in its 0.25 s throughput buckets
  (it followed the machine's load); and py-spy profiles of the bulk phase and of the 64-service sweep have
  the same shape (no function of the write path grows). What differs is the measurement: the bulk run is a
  fixed count (its first and last buckets run below the closed-loop rate), and it creates 1,000 services
  (an implicit service entry, an ownership hash and a catalog entry each) and 100,000 instances' worth of
  heap.
- **Bulk registrations at low pipeline depth** (after the recorded run; docs/http-server.md, "Deferred
  answers in the lane"). At 48 connections x depth 1 a registration cost ~210 µs of server CPU (three
  nodes summed) against 164 µs at 96 x 2: per request, a kept-alive connection's registration was parsed
  in the keep-alive lane, handed back to its task (an `epoll_ctl` to leave the lane's set, a task switch),
  parsed again, parked on the forward, woken by the owner's reply, and parked in the lane again (another
  `epoll_ctl`); the runtime dispatched the core's effects after each; and the peer links sent ~0.34 frames
  per registration (0.25 at 96 x 2). Now the lane submits a registration itself
  (`NodeRuntime.submit_then`, a `Deferred` answer resolved by the owner's reply from the peer link's task,
  no task wakes), each lane step is one batch of the runtime (`NodeRuntime.batch`: one dispatch for every
  connection served in it), the peer link's writer lets one more scheduler round run before packing
  (0.28 frames per registration) and a `SyncBatch` for both peers is built and encoded once. Bulk step
  shape (fresh cluster, registrations into 1,000 services, 48 x 1, `benchlib.loadgen` driven around
  `benchlib.procs.start_distro`, server CPU from `/proc`), interleaved with aa8a4fb: 30,000 registrations,
  four pairs at load average 3.7-4.2, 260.7 / 258.0 / 266.0 / 256.3 µs before, 211.0 / 209.3 / 214.7 /
  200.7 µs after the first two steps, and the batch step another 3% (205.3 / 205.7 / 222.3 -> 198.0 /
  199.7 / 202.7 µs against 96027da, load 1.9-2.4); 100,000 registrations, two pairs at load 1.2-3.5,
  268.0 / 273.0 µs before and 205.7 / 187.8 µs after all of it (6,230 / 4,016 -> 6,716 / 6,847
  registrations/s on a shared machine). On one node (`strace -c`, 20,000 registrations) `epoll_ctl` calls
  went from 11,287 to 1,645. The 48 x 1 profile now has the same shape as 96 x 2's: the replicas'
  decoding and merging (~12%), the owner's apply (~5%), the HTTP parse (~4%), the notifier and view
  listeners (~6%), no function above 4.5%.

Where the time goes now:

- **Registration** (`POST instance`): the HTTP server ~43% (the loopback `send` of the answer ~20-26%),
  the peer link ~42% inclusive (read 25%: decode ~9%, the core applying and merging ~13%; write 17%:
  `send_all` ~10%, encode ~4%), `NamingApi.register` ~10%, `NodeRuntime.submit` ~6%; `DistroNode` (apply,
  merge, notifier) ~16% across those. After issue 15's write-path work (py-spy on a machine at load
  average 7-8, where time preempted inside system calls inflates `epoll` and `send`): `ServiceKey` hashing
  and key parsing no longer show; the HTTP connection's two cancel-scope deadline changes per request
  (trio's `CancelScope.deadline` with its context manager) were ~3-4% and are gone (a reaper task times
  keep-alive waits: docs/http-server.md); the rest is as flat as before
  (`entry_hash` ~1%, `validate_ip` ~1%, dataclass constructors ~1%).
- **List** (`GET instance/list`): cheap; the host list is cached per view revision, so what remains is the
  per-request header built with `json.dumps` calls, `service_key` validation and the HTTP server.
- **Beat** (`PUT instance/beat`): before issue 15's receipts, the peer link (two messages per forwarded beat)
  and the HTTP `send` dominated, `NamingApi.beat` ~5%, `_check_health` a few %; now a beat on a non-owner
  costs no peer message of its own (not profiled again: py-spy is not installed on this machine).
- **Forwarding**: on the forwarding node a `Forward` encode and a parked task; on the owner
  `distro.codec._dec_forward`/`_request` (it validates the request again, IP included: a peer is
  authenticated but its input is still checked) and the reply. Forwards and replies share frames with
  whatever else is queued, but each is still a message to encode and decode, two per write (or beat the
  replica cannot answer) that lands on a non-owner (two thirds of them).
- **Snapshot** (restart at 100k instances, receiving node): `distro.codec._items` ~33%, `_merge_items` ~19%
  (of which `entry_hash` ~8%), imports ~17% of the first five seconds.
"""
