"""``scripts/bench``: our three-node cluster side by side with three-member etcd 3.4 and r-nacos 0.8.8 clusters.

    scripts/bench [--quick | --smoke] [--json PATH] [--plots DIR] [--markdown PATH] [--profile DIR]

Phases (each system gets the machine to itself; every cluster is started fresh for its phase):

1. load generator ceiling against a trivial server (``benchlib.trivial``), generator and server pinned
   to different CPUs;
2. etcd: lease-bound puts/s through the JSON gateway (closed loop), then put -> visible on every member
   (watch streams, and serializable reads for a like-for-like figure) under a steady background put load;
3. ours: registrations/s (closed loop, ~64 services), instance/list/s over services of a fixed size
   registered for it (``benchlib.listset``: the mode's ``list_services`` x ``list_instances``), then
   register -> visible on every node under the same background load, then change -> UDP push subscriber;
4. ours: memory per instance at 100k instances (20k quick), and the snapshot load of a restarted node;
5. ours: failover (SIGKILL the owner of services that beat every second through a survivor);
6. ours: the most instances beating every 5 s that the cluster holds steadily (ramp);
7. ours over gRPC (Nacos 2.x clients, ``benchlib.grpcbench``): registrations/s, change -> gRPC subscriber,
   connected clients held (10,000 full) and memory per connection;
8. r-nacos 0.8.8 (``benchlib.rnacos``, ``benchlib.rnacos_phases``): phases 3, 4 and 6 and the gRPC phase
   with the same load generators, probes and sizes.

``--memory-profile N`` runs no cluster: it says where a node's memory per instance goes, in one process
(``benchlib.memory_profile``; its flags after ``--``, e.g. ``-- --rss --into docs/bench/results.json``).

Phases 2-4 run with heartbeat timeouts of an hour (instances that never beat must not expire mid-run);
5 and 6 run with the defaults (15 s unhealthy, 30 s expired). ``--smoke`` shrinks every size and shortens
those timeouts so the whole run takes about two minutes: its figures are for "does every phase work",
not for reading.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from benchlib import grpcbench, listset, probes, report, rnacos, rnacos_phases, scale
from benchlib.figures import figures, table
from benchlib.procs import (
    ROOT,
    DistroCluster,
    ProcessSet,
    cpu_seconds,
    ensure_etcd,
    free_ports,
    http_get,
    log,
    rss_bytes,
    start_distro,
    start_etcd,
)
from benchlib.ramp import heartbeat_ramp
from benchlib.rnacos import ensure_rnacos
from benchlib.runner import (
    Background,
    Profiler,
    SchedWatch,
    bg_args,
    closed_run,
    loadgen_env,
    register_sweep,
    run_loadgen,
    summarize_latency,
)

LONG_TIMEOUTS = ["--heartbeat-timeout-ms", "3600000", "--instance-expire-ms", "3600000"]

MODES: dict[str, dict[str, Any]] = {
    "full": {
        "ceiling_s": 5.0, "reg_configs": [(48, 1), (96, 1), (96, 2)], "reg_s": 10.0, "services": 64,
        "list_services": 64, "list_instances": 100,
        "conv_samples": 300, "push_samples": 200, "bg_rate": 1000.0, "bg_services": 512, "mem_instances": 100_000, "bulk_services": 1000,
        "ramp": [10000, 20000, 40000, 60000, 80000, 100000], "hold_s": 20.0, "beat_interval_s": 5.0, "ramp_register_rate": 1000,
        "fo_observe": 17.0, "short_flags": [], "poll_crosscheck": True,
    },
    "quick": {
        "ceiling_s": 3.0, "reg_configs": [(48, 1)], "reg_s": 8.0, "services": 64,
        "list_services": 64, "list_instances": 100,
        "conv_samples": 100, "push_samples": 60, "bg_rate": 1000.0, "bg_services": 512, "mem_instances": 20_000, "bulk_services": 1000,
        "ramp": [5000, 20000], "hold_s": 18.0, "beat_interval_s": 5.0, "ramp_register_rate": 1000,
        "fo_observe": 17.0, "short_flags": [], "poll_crosscheck": False,
    },
    "smoke": {
        "ceiling_s": 1.5, "reg_configs": [(24, 1)], "reg_s": 3.0, "services": 16,
        "list_services": 8, "list_instances": 10,
        "conv_samples": 20, "push_samples": 10, "bg_rate": 300.0, "bg_services": 64, "mem_instances": 2000, "bulk_services": 100,
        "ramp": [200, 500], "hold_s": 5.0, "beat_interval_s": 1.0, "ramp_register_rate": 500,
        "fo_observe": 5.0, "poll_crosscheck": False,
        "short_flags": ["--heartbeat-timeout-ms", "3000", "--instance-expire-ms", "6000",
                        "--client-beat-interval-ms", "1000"],
    },
}

def machine_info() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "model": model,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "kernel": platform.release(),
        "mem_bytes": mem,
        "loadavg_at_start": list(os.getloadavg()),
    }


# ----------------------------------------------------------------------------------------------
# phases
# ----------------------------------------------------------------------------------------------
def phase_ceiling(m: dict[str, Any], ps: ProcessSet) -> dict[str, Any]:
    log("loadgen ceiling: trivial server on CPU 0, generator on CPU 1")
    port = free_ports(1)[0]
    pin = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    cmd = [sys.executable, "-m", "benchlib.trivial", str(port)]
    server = ps.start("trivial", (["taskset", "-c", "0"] if pin else []) + cmd, env=loadgen_env())
    try:
        deadline = time.monotonic() + 10
        while http_get(f"http://127.0.0.1:{port}/", 0.5)[0] != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("trivial server did not start:\n" + server.tail())
            time.sleep(0.05)
        runs = {}
        for conns, depth in [m["reg_configs"][0], (32, 16)]:
            r = run_loadgen(["--workload", "ceiling", "--targets", f"127.0.0.1:{port}", "--connections", str(conns),
                             "--depth", str(depth), "--duration", str(m["ceiling_s"])], cpu="1" if pin else None)
            runs[f"c{conns}xd{depth}"] = {k: r[k] for k in ("ok_per_s", "failed", "cpu_us_per_request", "latency_ms")}
            log(f"  {conns} connections x depth {depth}: {r['ok_per_s']:,.0f} req/s, "
                f"generator CPU {r['cpu_us_per_request']} us/request")
    finally:
        ps.stop(server)
    best = max(v["ok_per_s"] for v in runs.values())
    first = runs[next(iter(runs))]
    return {
        "ceiling_req_per_s": best,
        "ceiling_register_config_req_per_s": first["ok_per_s"],
        "cpu_us_per_request": first["cpu_us_per_request"],
        "pinned": pin,
        "runs": runs,
    }



def phase_etcd(m: dict[str, Any], ps: ProcessSet, profiler: Profiler) -> dict[str, Any]:
    etcd = ensure_etcd()
    if etcd is None:
        log("etcd: not installed and cannot be installed (no apt-get or not root): skipping etcd")
        return {"skipped": "etcd not available"}
    version = subprocess.run([etcd, "--version"], capture_output=True, text=True, check=False).stdout.split("\n")[0]
    log(f"etcd: starting three members ({version})")
    cluster = start_etcd(ps, etcd)
    out: dict[str, Any] = {"version": version}
    try:
        pids = [p.pid for p in cluster.members]
        log("etcd: lease-bound puts/s (closed loop)")
        out["register"] = register_sweep(m, "etcd-put", cluster.addrs, pids, "etcd", Profiler(None), 0)
        idle = trio.run(lambda: probes.converge_etcd(cluster.addrs, max(10, m["conv_samples"] // 3), method="watch",
                                                     tag="i"))
        out["converge_idle"] = {**summarize_latency(idle["samples_ms"]), "missed": idle["missed"], "method": "watch",
                                "samples_ms": idle["samples_ms"]}
        log(f"etcd: idle cluster: converge p50 {out['converge_idle']['p50']} ms, p99 {out['converge_idle']['p99']} ms")
        log(f"etcd: put -> visible on every member under {m['bg_rate']:.0f} puts/s background")
        bg = Background(bg_args(m, "etcd-put", cluster.addrs, 50_000_000))
        sched = SchedWatch(pids)
        try:
            time.sleep(1.0)
            conv = trio.run(lambda: probes.converge_etcd(cluster.addrs, m["conv_samples"], method="watch", tag="w"))
            if m["poll_crosscheck"]:
                conv_poll = trio.run(
                    lambda: probes.converge_etcd(cluster.addrs, m["conv_samples"] // 3, method="poll", tag="p"))
                out["converge_poll"] = {**summarize_latency(conv_poll["samples_ms"]), "missed": conv_poll["missed"],
                                        "samples_ms": conv_poll["samples_ms"]}
        finally:
            bgres = bg.stop()
        out["converge"] = {**summarize_latency(conv["samples_ms"]), "missed": conv["missed"], "method": "watch",
                           "samples_ms": conv["samples_ms"]}
        out["background"] = {k: bgres[k] for k in ("ok_per_s", "failed", "rate_target", "latency_ms")}
        out["background"]["server_sched"] = sched.result()
        log(f"  converge p50 {out['converge']['p50']} ms, p99 {out['converge']['p99']} ms "
            f"(background achieved {bgres['ok_per_s']:.0f}/s, {bgres['failed']} failed)")
        out["rss_bytes"] = [rss_bytes(p) for p in pids]
    finally:
        cluster.stop()
    return out


def _metric(addr: str, name: str) -> float:
    """One unlabelled sample from a node's /metrics (0 when absent)."""
    status, body = http_get(f"http://{addr}/metrics", 5.0)
    for line in body.decode(errors="replace").splitlines() if status == 200 else []:
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def _instance_counts(addrs: list[str]) -> list[int]:
    counts = []
    for a in addrs:
        status, body = http_get(f"http://{a}/nacos/v1/ns/operator/metrics", 5.0)
        counts.append(int(json.loads(body)["instanceCount"]) if status == 200 else -1)
    return counts


def wait_counts(addrs: list[str], expected: int, timeout: float) -> tuple[list[int], float]:
    t0 = time.perf_counter()
    while True:
        counts = _instance_counts(addrs)
        if all(c >= expected for c in counts) or time.perf_counter() - t0 > timeout:
            return counts, time.perf_counter() - t0
        time.sleep(0.1)


def phase_distro_main(m: dict[str, Any], ps: ProcessSet, profiler: Profiler) -> dict[str, Any]:
    log("ours: starting three nodes (heartbeat timeouts 1 h for this phase)")
    cluster = start_distro(ps, "main", LONG_TIMEOUTS)
    out: dict[str, Any] = {}
    try:
        pids = [cluster.node(i).pid for i in range(3)]
        log("ours: registrations/s (closed loop)")
        out["register"] = register_sweep(m, "distro-register", cluster.addrs, pids, "distro", profiler, 0)
        total = sum(r["ok"] for r in out["register"]["runs"])
        counts, waited = wait_counts(cluster.addrs, total, 30)
        out["register"]["instances_listed_per_node"] = counts
        out["register"]["registered_ok"] = total
        log(f"  every node lists {counts} instances (registered ok: {total}; settled {waited:.1f} s later)")
        out["list"] = listset.list_phase(m, cluster.addrs, pids, "ours", profile=(profiler, "distro-list"))

        method = "watch" if trio.run(probes.has_watch, cluster.addrs[0]) else "poll"
        idle = trio.run(lambda: probes.converge_distro(cluster.addrs, max(10, m["conv_samples"] // 3),
                                                       method=method, net=199))
        out["converge_idle"] = {**summarize_latency(idle["samples_ms"]), "missed": idle["missed"], "method": method,
                                "samples_ms": idle["samples_ms"]}
        log(f"  idle cluster: converge p50 {out['converge_idle']['p50']} ms, p99 {out['converge_idle']['p99']} ms")
        log(f"ours: register -> visible on every node ({method}) under {m['bg_rate']:.0f} registrations/s background")
        bg = Background(bg_args(m, "distro-register", cluster.addrs, 50_000_000))
        sched = SchedWatch(pids)
        try:
            time.sleep(1.0)
            profiler.start("distro-converge-bg", {f"n{i + 1}": p for i, p in enumerate(pids)}, 8)
            conv = trio.run(lambda: probes.converge_distro(cluster.addrs, m["conv_samples"], method=method, net=200))
            profiler.wait()
            conv_poll = None
            if m["poll_crosscheck"] and method != "poll":
                conv_poll = trio.run(
                    lambda: probes.converge_distro(cluster.addrs, m["conv_samples"] // 3, method="poll", net=202))
        finally:
            bgres = bg.stop()
        out["converge"] = {**summarize_latency(conv["samples_ms"]), "missed": conv["missed"], "method": method,
                           "samples_ms": conv["samples_ms"], "poll_interval_ms": conv["poll_interval_ms"]}
        if conv_poll is not None:
            out["converge_poll"] = {**summarize_latency(conv_poll["samples_ms"]), "missed": conv_poll["missed"],
                                    "samples_ms": conv_poll["samples_ms"]}
        out["background"] = {k: bgres[k] for k in ("ok_per_s", "failed", "rate_target", "latency_ms")}
        out["background"]["server_sched"] = sched.result()
        log(f"  converge p50 {out['converge']['p50']} ms, p99 {out['converge']['p99']} ms, missed "
            f"{conv['missed']} (background achieved {bgres['ok_per_s']:.0f}/s, {bgres['failed']} failed)")

        log("ours: change -> UDP push subscriber (Nacos-Java-Client:v1.4.2, one subscriber per node)")
        sched = SchedWatch(pids)
        push = trio.run(lambda: probes.push_udp(cluster.addrs, m["push_samples"]))
        push["server_sched"] = sched.result()
        if push.get("supported"):
            out["push"] = {**summarize_latency(push["samples_ms"]), "missed": push["missed"],
                           "packets": push["packets"], "samples_ms": push["samples_ms"],
                           "server_sched": push["server_sched"]}
            log(f"  push p50 {out['push']['p50']} ms, p99 {out['push']['p99']} ms, missed {push['missed']}, "
                f"packets {push['packets']}")
        else:
            out["push"] = {"skipped": "the nodes do not announce UDP push (cacheMillis 10000) to a Java 1.4 agent"}
            log("  skipped: " + out["push"]["skipped"])
        out["sdk_push"] = sdk_probe(cluster, m)
        out["rss_bytes"] = [rss_bytes(p) for p in pids]
        check_alive(cluster)
    finally:
        cluster.stop()
    return out


def sdk_probe(cluster: DistroCluster, m: dict[str, Any]) -> dict[str, Any]:
    code = "import distroreg as c; print(hasattr(c, 'NamingClient'))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    if res.stdout.strip() != "True":
        log("  SDK subscriber: distroreg.NamingClient does not exist yet: skipped")
        return {"skipped": "distroreg.NamingClient not present"}
    from benchlib import sdkprobe

    out: dict[str, Any] = {}
    for j, mode in enumerate(["auto", "watch"] if m["poll_crosscheck"] else ["auto"]):
        try:
            r = sdkprobe.run(cluster.addrs, max(10, m["push_samples"] // 2), mode=mode, net=203 + j)
        except Exception as exc:  # someone else's code under test: report, do not abort the run
            log(f"  SDK subscriber ({mode}) failed: {type(exc).__name__}: {exc}")
            out[mode] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            continue
        r.update(summarize_latency(r["samples_ms"]))
        out[mode] = r
        log(f"  SDK subscriber push={mode} (in effect {sorted(set(r['mode_in_effect']))}): p50 {r['p50']} ms, "
            f"p99 {r['p99']} ms, missed {r['missed']}")
    if "p99" in out.get("auto", {}):
        out["p99"] = out["auto"]["p99"]
    return out


def check_alive(cluster: DistroCluster) -> None:
    for i, proc in enumerate(cluster.nodes):
        if proc is not None and not proc.alive():
            raise RuntimeError(f"node n{i + 1} died unexpectedly (someone else's cleanup?):\n{proc.tail()}")


def phase_memory_snapshot(m: dict[str, Any], ps: ProcessSet, profiler: Profiler) -> dict[str, Any]:
    n = m["mem_instances"]
    log(f"ours: memory per instance and snapshot load at {n:,} instances (fresh cluster, 1 h timeouts)")
    cluster = start_distro(ps, "mem", LONG_TIMEOUTS)
    out: dict[str, Any] = {"instances": n}
    try:
        pids = [cluster.node(i).pid for i in range(3)]
        time.sleep(1.0)
        before = [rss_bytes(p) for p in pids]
        cpu0 = sum(cpu_seconds(p) for p in pids)
        r = run_loadgen(["--workload", "distro-register", "--targets", ",".join(cluster.addrs), "--connections", "48",
                         "--count", str(n), "--services", str(m["bulk_services"]), "--prefix", "mem", "--base", "0"])
        out["register"] = {k: r[k] for k in ("ok", "failed", "ok_per_s", "elapsed_s", "errors", "timeline",
                                             "bucket_s")}
        cpu = sum(cpu_seconds(p) for p in pids) - cpu0
        out["register"]["server_cpu_us_per_ok"] = round(cpu / r["ok"] * 1e6, 1) if r["ok"] else None
        out["register"]["server_cores_used"] = round(cpu / r["elapsed_s"], 2) if r["elapsed_s"] else None
        counts, _ = wait_counts(cluster.addrs, r["ok"], 60)
        log(f"  registered {r['ok']:,} ({r['ok_per_s']:,.0f}/s, {r['failed']} failed); nodes list {counts}")
        time.sleep(1.0)
        after = [rss_bytes(p) for p in pids]
        per = [(a - b) / max(1, r["ok"]) for a, b in zip(after, before, strict=True)]
        out.update({"rss_before": before, "rss_after": after, "bytes_per_instance_per_node": [round(x) for x in per],
                    "bytes_per_instance": round(sum(per) / len(per)), "listed": counts})
        log(f"  RSS before {[b >> 20 for b in before]} MiB, after {[a >> 20 for a in after]} MiB: "
            f"{out['bytes_per_instance']} bytes per instance per node")
        log(f"ours: light beats/s (closed loop) over those {r['ok']:,} instances")
        out["beat"] = closed_run(m, "distro-beat", cluster.addrs, pids,
                                 ["--count", str(n), "--services", str(m["bulk_services"]), "--prefix", "mem"],
                                 profile=(profiler, "distro-beat-closed"))

        victim = 2
        log(f"  restarting n{victim + 1} (SIGTERM, then a new process) while the others hold {r['ok']:,} instances")
        chunks_before = [_metric(a, "distro_snapshot_chunks_sent_total") for a in cluster.addrs[:victim]]
        ps.stop(cluster.node(victim))
        t0 = time.perf_counter()
        proc = cluster.start_node(victim)
        first_answer = None
        ready = None
        while time.perf_counter() - t0 < 120:
            status, _ = http_get(f"http://{cluster.addrs[victim]}/readyz", 1.0)
            now = time.perf_counter()
            if status and first_answer is None:
                first_answer = now
            if status == 200:
                ready = now
                break
            if not proc.alive():
                raise RuntimeError("restarted node exited:\n" + proc.tail())
            time.sleep(0.005)
        out["snapshot_load_ms"] = None if ready is None else round((ready - t0) * 1000, 1)
        out["snapshot_after_listen_ms"] = (None if ready is None or first_answer is None
                                           else round((ready - first_answer) * 1000, 1))
        counts = _instance_counts([cluster.addrs[victim]])
        out["restarted_node_lists"] = counts[0]
        chunks = [_metric(a, "distro_snapshot_chunks_sent_total") - b
                  for a, b in zip(cluster.addrs[:victim], chunks_before, strict=True)]
        out["snapshot_chunks_sent_by_peers"] = chunks
        out["snapshot_chunks_needed"] = -(-(r["ok"] + 100) // 5000)
        log(f"  ready {out['snapshot_load_ms']} ms after spawn ({out['snapshot_after_listen_ms']} ms after its HTTP "
            f"port first answered); it lists {counts[0]:,} instances")
        check_alive(cluster)
    finally:
        cluster.stop()
    return out


def phase_register(m: dict[str, Any], ps: ProcessSet, profiler: Profiler) -> dict[str, Any]:
    """Only the registration sweep of the main phase (``--only register``): registrations/s and server CPU
    per registration on a fresh cluster, with py-spy profiles under ``--profile``; for quick before/after
    comparisons of the write path."""
    log("ours: registrations/s only (fresh cluster, heartbeat timeouts 1 h)")
    cluster = start_distro(ps, "reg", LONG_TIMEOUTS)
    try:
        pids = [cluster.node(i).pid for i in range(3)]
        return register_sweep(m, "distro-register", cluster.addrs, pids, "distro", profiler, 0)
    finally:
        cluster.stop()


def phase_rnacos_register(m: dict[str, Any], ps: ProcessSet, profiler: Profiler) -> dict[str, Any]:
    """r-nacos's registration sweep alone (``--only register,rnacos-register`` compares the two in one run)."""
    binary, how = ensure_rnacos()
    if binary is None:
        log(f"r-nacos: {how}")
        return {"skipped": how}
    return rnacos_phases.phase_register(m, ps, profiler, binary)


def phase_failover(m: dict[str, Any], ps: ProcessSet) -> dict[str, Any]:
    flags = m["short_flags"]
    log("ours: failover (fresh cluster, default timeouts" + (", shortened for --smoke" if flags else "") + ")")
    cluster = start_distro(ps, "fo", flags)
    try:
        def kill(i: int) -> None:
            cluster.node(i).kill(signal.SIGKILL)

        res = trio.run(lambda: probes.failover(cluster.addrs, kill, observe=m["fo_observe"]))
        log(f"  killed {res['victim']} (owner of {res['victim_services']} of {res['instances']} beating services): "
            f"survivors agreed on new owners after {res['failover_ms']} ms; "
            f"{res['violation_count']} not-listed/unhealthy observations in {res['observed_s']} s; beats {res['beats']}")
    finally:
        cluster.stop()
    return res


def phase_ramp(m: dict[str, Any], ps: ProcessSet, profiler: Profiler) -> dict[str, Any]:
    log(f"ours: heartbeat ramp {m['ramp']} (beats every {m['beat_interval_s']:g} s, hold {m['hold_s']:g} s per step)")
    return heartbeat_ramp(m, lambda: start_distro(ps, "hb", m["short_flags"]), profiler, "distro")


def phase_rnacos(m: dict[str, Any], ps: ProcessSet, profiler: Profiler, results: dict[str, Any],
                 mode: str) -> dict[str, Any]:
    """r-nacos's four sub-phases (``benchlib.rnacos_phases``, and ``benchlib.grpcbench`` for gRPC); a sub-phase
    that fails is noted, not fatal."""
    binary, how = ensure_rnacos()
    if binary is None:
        log(f"r-nacos: {how}")
        return {"skipped": how}
    log(f"r-nacos {rnacos.VERSION}: {binary} ({how})")
    out: dict[str, Any] = {"binary": binary, "version": rnacos.VERSION}
    runs: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("main", lambda: rnacos_phases.phase_main(m, ps, profiler, binary)),
        ("memory", lambda: rnacos_phases.phase_memory(m, ps, binary)),
        ("ramp", lambda: rnacos_phases.phase_ramp(m, ps, profiler, binary)),
        ("grpc", lambda: grpcbench.phase_rnacos_grpc(ps, mode, binary)),
    ]
    for name, run in runs:
        try:
            out[name] = run()
        except Exception as exc:  # someone else's server under test: report, do not abort the run
            log(f"r-nacos phase {name} FAILED: {type(exc).__name__}: {exc}")
            results["notes"].append(f"r-nacos phase {name} failed: {type(exc).__name__}: {str(exc)[:500]}")
            for proc in list(ps.procs):
                ps.stop(proc)
    return out


def phase_rnacos_grpc(ps: ProcessSet, mode: str, results: dict[str, Any]) -> None:
    """r-nacos's gRPC sub-phase alone (``--only grpc,rnacos-grpc`` compares the two in one run), into
    ``details.rnacos.grpc`` as the whole ``rnacos`` phase puts it."""
    binary, how = ensure_rnacos()
    if binary is None:
        log(f"r-nacos: {how}")
        results["details"]["rnacos"] = {"skipped": how}
        return
    rn = results["details"].setdefault("rnacos", {})
    rn.update({"binary": binary, "version": rnacos.VERSION})
    rn["grpc"] = grpcbench.phase_rnacos_grpc(ps, mode, binary)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes; finishes within 5 minutes")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes and short timeouts (CI): every figure, ~2 min")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--plots", type=Path, help="write PNG plots into this directory (needs matplotlib)")
    ap.add_argument("--markdown", type=Path, help="write the report (docs/benchmarks.md) here")
    ap.add_argument("--profile", type=Path, help="py-spy profiles of the nodes into this directory")
    ap.add_argument("--keep-logs", action="store_true",
                    help="keep the nodes' logs (the run's work directory, named at the start) after a run that "
                         "did not fail (a failed run always keeps them)")
    ap.add_argument("--only", help="comma-separated phases: ceiling,etcd,main,memory,failover,ramp,grpc,rnacos "
                                   "(grpc and rnacos are not in --smoke's default), or register and "
                                   "rnacos-register: the registration sweep alone, ours and r-nacos's, or "
                                   "rnacos-grpc: r-nacos's gRPC phase alone (the rnacos phase includes it); "
                                   "these three are in no default")
    ap.add_argument("--ramp", help="comma-separated heartbeat ramp steps (instances), instead of the mode's")
    ap.add_argument("--scale", type=int, metavar="N",
                    help="run only the scale phase (benchlib.scale): N instances, a /healthz pause probe every 10 ms")
    ap.add_argument("--scale-hold", type=float, default=60.0, metavar="S",
                    help="seconds of churn at scale (long holds show whether the frozen heap is ever collected)")
    ap.add_argument("--memory-profile", type=int, metavar="N",
                    help="run no cluster: where a node's memory per instance goes, N instances in one process "
                         "(benchlib.memory_profile; its own flags after --)")
    ap.add_argument("--render", type=Path, metavar="JSON",
                    help="run nothing: re-render the table, --plots and --markdown from a saved --json file")
    args, rest = ap.parse_known_args(argv)
    if args.memory_profile:
        from benchlib import memory_profile

        return memory_profile.main(["--instances", str(args.memory_profile), *[a for a in rest if a != "--"]])
    if rest:
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.render:
        saved: dict[str, Any] = json.loads(args.render.read_text())
        figures(saved)  # the headline figures again from the details (a figure added since the run shows too)
        print(table(saved))
        write_outputs(saved, args)
        return 0
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    m = dict(MODES[mode])
    if args.ramp:
        m["ramp"] = [int(x) for x in args.ramp.split(",") if x]
    default = "ceiling,etcd,main,memory,failover,ramp" + ("" if mode == "smoke" else ",grpc,rnacos")
    phases = set((args.only or default).split(","))
    if args.scale:
        phases = {"scale"}
        m["scale_hold_s"] = args.scale_hold
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="distro-bench-"))
    ps = ProcessSet(workdir)
    profiler = Profiler(args.profile)
    command = "scripts/bench " + " ".join(argv if argv is not None else sys.argv[1:])
    results: dict[str, Any] = {
        "machine": machine_info(), "mode": mode, "command": command.strip(),
        "distro": {}, "etcd": {}, "rnacos": {}, "loadgen": {}, "details": {"distro": {}}, "notes": [],
        "settings": {k: v for k, v in m.items() if k != "short_flags"},
    }
    log(f"mode {mode}; logs in {workdir}; machine {results['machine']['cpus']} CPUs "
        f"({results['machine']['model']}), load average {results['machine']['loadavg_at_start']}")

    def on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    failed = False
    try:
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("ceiling", lambda: results["loadgen"].update(phase_ceiling(m, ps))),
            ("etcd", lambda: results["details"].__setitem__("etcd", phase_etcd(m, ps, profiler))),
            ("main", lambda: results["details"]["distro"].__setitem__("main", phase_distro_main(m, ps, profiler))),
            ("register", lambda: results["details"]["distro"].__setitem__("register", phase_register(m, ps, profiler))),
            ("rnacos-register", lambda: results["details"].__setitem__("rnacos_register",
                                                                        phase_rnacos_register(m, ps, profiler))),
            ("memory", lambda: results["details"]["distro"].__setitem__("memory", phase_memory_snapshot(m, ps, profiler))),
            ("failover", lambda: results["details"]["distro"].__setitem__("failover", phase_failover(m, ps))),
            ("ramp", lambda: results["details"]["distro"].__setitem__("ramp", phase_ramp(m, ps, profiler))),
            ("grpc", lambda: results["details"]["distro"].__setitem__("grpc", grpcbench.phase_grpc(m, ps, mode, profiler))),
            ("rnacos", lambda: results["details"].__setitem__("rnacos", phase_rnacos(m, ps, profiler, results, mode))),
            ("rnacos-grpc", lambda: phase_rnacos_grpc(ps, mode, results)),
            ("scale", lambda: results["details"]["distro"].__setitem__("scale", scale.phase_scale(m, ps, args.scale,
                                                                                               profiler))),
        ]
        for name, step in steps:
            if name not in phases or (name == "rnacos-grpc" and "rnacos" in phases):
                continue
            try:
                step()
            except (RuntimeError, OSError, trio.TooSlowError, ValueError, KeyError) as exc:
                failed = True
                log(f"phase {name} FAILED: {type(exc).__name__}: {exc}")
                results["notes"].append(f"phase {name} failed: {type(exc).__name__}: {str(exc)[:500]}")
                for proc in list(ps.procs):
                    if proc.name != "trivial":
                        ps.stop(proc)
    finally:
        for bg in list(Background.running):
            bg.kill()
        profiler.wait()
        ps.stop_all()
    results["machine"]["loadavg_at_end"] = list(os.getloadavg())
    results["duration_s"] = round(time.perf_counter() - started, 1)
    figures(results)
    if results["details"]["distro"].get("main", {}).get("push", {}).get("skipped"):
        results["notes"].append("push_p99_ms: " + results["details"]["distro"]["main"]["push"]["skipped"])
    print()
    print(table(results))
    print(f"\n{mode} run took {results['duration_s']:.0f} s; machine load average at start "
          f"{results['machine']['loadavg_at_start']}, at end {results['machine']['loadavg_at_end']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n")
        log(f"wrote {args.json}")
    write_outputs(results, args)
    if failed or args.keep_logs:
        log(f"logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


def write_outputs(results: dict[str, Any], args: argparse.Namespace) -> None:
    if args.plots:
        made = report.plots(results, args.plots)
        log(f"plots: {', '.join(made) if made else 'none (matplotlib missing)'}")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(report.markdown(results, args.markdown, args.plots))
        log(f"wrote {args.markdown}")


if __name__ == "__main__":
    sys.exit(main())
