"""The scale mode of ``scripts/bench`` (``--scale N``): our cluster loaded with N instances, watched for stalls.

A pause probe (``benchlib.pauseprobe``) asks every node's ``/healthz`` every 10 ms for the whole phase; the
phase then

1. registers N instances into N / 100 services (48 connections, round-robin over the nodes) and records the
   rate, the memory per instance per node, and that all three nodes list all of them;
2. holds for ``hold_s`` seconds under churn (registrations and deregistrations of other instances at
   ``churn_per_s`` each, so tombstones always exist and housekeeping has work);
3. times the first ``instance/list`` of a 10,000-instance service on every node after a change to it (until
   the response's head is read, and until the whole body is: the render, then the transfer and reading),
   asked plain as nacos-sdk-python asks, and after another change with ``Accept-Encoding: gzip`` as the Java
   1.x client asks (read compressed; the inflating, which that client does next, timed apart);
4. restarts one node (SIGTERM, a new process) and times it until ready.

The probe's slowest answers carry the second at which they happened, and the phase records when each step
started, so a stall can be placed. Collections that ``cluster/node/gctune.py`` logs are counted from the
nodes' logs, as are every peer declared down and ownership change (a flap, unless it is the restart's) and
the ready lines. gctune collects the frozen heap only on evidence of garbage in it (``collected the frozen
heap`` in the log).
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from benchlib.procs import DistroCluster, ProcessSet, http_get, log, rss_bytes, start_distro
from benchlib.runner import Background, Profiler, run_loadgen

LONG_TIMEOUTS = ["--heartbeat-timeout-ms", "3600000", "--instance-expire-ms", "3600000"]
BIG = 10_000
RESTART_PROFILE_S = 20.0  # how long ``--profile`` records the nodes from the restart step on


def _counts(addrs: list[str]) -> list[int]:
    out = []
    for a in addrs:
        status, body = http_get(f"http://{a}/nacos/v1/ns/operator/metrics", 10.0)
        m = re.search(rb'"instanceCount":\s*(\d+)', body) if status == 200 else None
        out.append(int(m.group(1)) if m else -1)
    return out


def _wait_counts(addrs: list[str], expected: int, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        counts = _counts(addrs)
        if all(c >= expected for c in counts) or time.monotonic() > deadline:
            return counts
        time.sleep(0.5)


def _big_list_after_change(cluster: DistroCluster, samples: int = 5) -> dict[str, Any]:
    """Fill one service with 10,000 instances; then, ``samples`` times, register one more on node 1 and time
    each node's first ``instance/list`` of it once it shows the change (the render after a change)."""
    run_loadgen(["--workload", "distro-register", "--targets", ",".join(cluster.addrs), "--connections", "24",
                 "--count", str(BIG), "--services", "1", "--prefix", "big", "--base", "0"])
    time.sleep(0.5)
    # The first list of a service ever renders every host (each node keeps the rendered hosts, and a
    # change re-renders only what changed): timed apart, it is not a list after a change.
    cold: list[float] = []
    for a in cluster.addrs:
        t0 = time.perf_counter()
        http_get(f"http://{a}/nacos/v1/ns/instance/list?serviceName=big-0", 10.0)
        cold.append(round((time.perf_counter() - t0) * 1000, 1))
    times: list[float] = []
    heads: list[float] = []
    gzip_times: list[float] = []
    inflate_times: list[float] = []
    sizes: dict[str, int] = {}
    not_shown = 0
    for k in range(samples):
        # a change, then every node's list as nacos-sdk-python asks (plain); another, then as the Java 1.x
        # client asks (Accept-Encoding: gzip: read compressed, then inflated, as that client does)
        for encoding in ("identity", "gzip"):
            ip = f"10.250.{k}.{1 if encoding == 'identity' else 2}"
            _post(cluster.addrs[0], f"/nacos/v1/ns/instance?serviceName=big-0&ip={ip}&port=1")
            time.sleep(0.5)  # replicated everywhere (convergence is ~10 ms; leave margin on a busy machine)
            for a in cluster.addrs:
                status, body, head_ms, all_ms = _timed_get(f"http://{a}/nacos/v1/ns/instance/list?serviceName=big-0",
                                                           encoding)
                sizes[encoding] = len(body)
                if encoding == "identity":
                    times.append(all_ms)
                    heads.append(head_ms)
                else:
                    gzip_times.append(all_ms)
                    t0 = time.perf_counter()
                    body = _inflate(body)
                    inflate_times.append(round((time.perf_counter() - t0) * 1000, 1))
                if status != 200 or ip.encode() not in body:
                    not_shown += 1
                    log(f"  big list ({encoding}) on {a}: status {status}, change not shown")
    return {"instances": BIG, "first_list_ever_ms": cold, "first_list_after_change_ms": times,
            "first_list_after_change_head_ms": heads, "max_ms": max(times) if times else None,
            "first_list_after_change_gzip_ms": gzip_times, "gzip_inflate_ms": inflate_times,
            "body_bytes": sizes.get("identity"), "gzip_bytes": sizes.get("gzip"), "changes_not_shown": not_shown}


def _inflate(body: bytes) -> bytes:
    """A gzip body inflated (a plain one, from a node that does not compress, as it is)."""
    import gzip

    try:
        return gzip.decompress(body)
    except (OSError, EOFError):
        return body


def _timed_get(url: str, encoding: str = "identity") -> tuple[int, bytes, float, float]:
    """(status, body as sent, ms until the response's head was read, ms until the body was) of one GET with
    ``Accept-Encoding: encoding``: ``identity`` is what nacos-sdk-python sends in effect (urllib sends none),
    ``gzip`` what the Java 1.x client accepts. The head arrives once the node has rendered the list and begun
    to send it; the rest is the transfer and reading."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"Accept-Encoding": encoding})
    t0 = time.perf_counter()
    head_ms = 0.0
    try:
        with urllib.request.urlopen(request, timeout=10.0) as resp:
            head_ms = round((time.perf_counter() - t0) * 1000, 1)
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except (OSError, ValueError):
        status, body = 0, b""
    return status, body, head_ms, round((time.perf_counter() - t0) * 1000, 1)


def _post(addr: str, target: str) -> None:
    import urllib.request

    req = urllib.request.Request(f"http://{addr}{target}", method="POST", data=b"")
    try:
        with urllib.request.urlopen(req, timeout=5.0) as resp:
            resp.read()
    except OSError as exc:
        log(f"  POST {target} failed: {exc}")


def _chunks_sent(addrs: list[str]) -> list[int]:
    """Each node's ``distro_snapshot_chunks_sent_total`` (-1 when it cannot be read)."""
    out = []
    for a in addrs:
        status, body = http_get(f"http://{a}/metrics", 10.0)
        m = re.search(rb"^distro_snapshot_chunks_sent_total (\d+)", body, re.M) if status == 200 else None
        out.append(int(m.group(1)) if m else -1)
    return out


def _log_lines(cluster: DistroCluster, *needles: str) -> list[str]:
    """The nodes' log lines that contain any of ``needles`` (each cut to its last 160 characters)."""
    lines = []
    for proc in cluster.nodes:
        if proc is None:
            continue
        try:
            text = proc.log_path.read_text(errors="replace")
        except OSError:
            continue
        lines += [f"{proc.name}: {line.strip()[-160:]}" for line in text.splitlines()
                  if any(n in line for n in needles)]
    return lines


def phase_scale(m: dict[str, Any], ps: ProcessSet, n: int, profiler: Profiler | None = None) -> dict[str, Any]:
    services = max(1, n // 100)
    log(f"scale: {n:,} instances in {services:,} services, /healthz probed every 10 ms on every node")
    # The big service holds BIG instances and then gains one per sample: above the default bound of 10,000
    # instances per service, whose 400 left the "after a change" lists without a change.
    # Every task step over 50 ms is logged by the node (cluster/node/stallwatch.py), to place the stalls.
    os.environ.setdefault("DISTRO_STALL_LOG_MS", "50")
    cluster = start_distro(ps, "scale", [*LONG_TIMEOUTS, "--max-instances-per-service", str(2 * BIG)])
    out: dict[str, Any] = {"instances": n, "services": services, "steps": {}, "hold_s": m.get("scale_hold_s", 60.0),
                           "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    probe = Background(["--targets", ",".join(cluster.addrs)], module="benchlib.pauseprobe")
    t_start = time.perf_counter()

    def step(name: str) -> None:
        out["steps"][name] = round(time.perf_counter() - t_start, 1)
        log(f"  scale step {name} at t+{out['steps'][name]} s")

    churn: list[Background] = []
    try:
        pids = [cluster.node(i).pid for i in range(3)]
        before = [rss_bytes(p) for p in pids]
        step("load")
        r = run_loadgen(["--workload", "distro-register", "--targets", ",".join(cluster.addrs), "--connections", "48",
                         "--count", str(n), "--services", str(services), "--prefix", "scale", "--base", "0"],
                        timeout=7200)
        counts = _wait_counts(cluster.addrs, r["ok"], 120)
        after = [rss_bytes(p) for p in pids]
        out["register"] = {k: r[k] for k in ("ok", "failed", "ok_per_s", "elapsed_s", "errors")}
        out["listed"] = counts
        out["bytes_per_instance_per_node"] = [round((a - b) / max(1, r["ok"])) for a, b in zip(after, before,
                                                                                                 strict=True)]
        log(f"  loaded {r['ok']:,} ({r['ok_per_s']:,.0f}/s, {r['failed']} failed); nodes list {counts}; "
            f"{out['bytes_per_instance_per_node']} B per instance per node")
        step("churn")
        rate = str(m.get("scale_churn_per_s", 150))
        common = ["--targets", ",".join(cluster.addrs), "--connections", "12", "--rate", rate, "--duration", "7200",
                  "--services", "100", "--prefix", "churn", "--base", "0"]
        churn.append(Background(["--workload", "distro-register", *common]))
        time.sleep(1.0)
        churn.append(Background(["--workload", "distro-deregister", *common]))
        time.sleep(m.get("scale_hold_s", 60.0))
        out["churn"] = [b.stop()["ok_per_s"] for b in churn]
        churn.clear()
        step("big-list")
        out["big_list"] = _big_list_after_change(cluster)
        log(f"  first list of a {BIG:,}-instance service after a change: {out['big_list']['first_list_after_change_ms']} ms")
        step("restart")
        survivors = cluster.addrs[:2]
        chunks_before = _chunks_sent(survivors)
        if profiler is not None:  # the survivors across the restart, then the restarted node from its start
            profiler.start("scale-restart", {"n1": cluster.node(0).pid, "n2": cluster.node(1).pid}, RESTART_PROFILE_S,
                           timeline=True)
        ps.stop(cluster.node(2))
        t0 = time.perf_counter()
        cluster.start_node(2)
        if profiler is not None:
            time.sleep(0.3)  # py-spy cannot attach before the interpreter is up
            profiler.start("scale-restart", {"n3": cluster.node(2).pid}, RESTART_PROFILE_S, timeline=True)
        cluster.wait_ready([2], timeout=300)
        out["restart_ready_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        # How many snapshot chunks each survivor sent for the restart (one of them, once, if all went well).
        out["restart_chunks_sent"] = [after - before for after, before in zip(_chunks_sent(survivors), chunks_before,
                                                                              strict=True)]
        log(f"  restarted n3 ready after {out['restart_ready_ms']:,} ms; snapshot chunks sent by n1, n2: "
            f"{out['restart_chunks_sent']}")
        step("end")
        out["gc_log"] = _log_lines(cluster, "collection paused", "collected the frozen heap")
        # A peer declared down or an ownership change is a flap unless it is the planned restart's.
        out["membership_log"] = _log_lines(cluster, "peer down:", "ownership changed:")
        out["ready_log"] = _log_lines(cluster, "ready: ")
        out["stall_log"] = _log_lines(cluster, "stall: task")
        # Runs of steps between two looks at the sockets over 50 ms: what a request waiting on the node waits for.
        out["loop_stall_log"] = _log_lines(cluster, "between two looks at its sockets")
    finally:
        for b in churn:
            b.kill()
        out["pauses"] = probe.stop()
        cluster.stop()
    p = out["pauses"]
    log(f"  /healthz every 10 ms: slowest answer {p['max_ms']} ms, {p['over_100ms']} answers over 100 ms; "
        f"slowest per node {[(a, n['slowest'][:3]) for a, n in p['nodes'].items()]}")
    return out
