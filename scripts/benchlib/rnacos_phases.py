"""The r-nacos phases of ``scripts/bench``: the same load generator, probes and sizes as ours, against three
r-nacos 0.8.8 members (``benchlib.rnacos``), each phase on a fresh cluster.

1. registrations/s (the same closed-loop sweep), instance/list/s over the services it filled, register ->
   visible on every member (polling ``instance/list``: r-nacos has no long-poll watch) under the same
   background registrations, and change -> Nacos 1.x UDP subscriber;
2. bulk registrations/s and memory per instance (the mode's ``mem_instances`` into ``bulk_services``
   services), light beats/s over those instances, and the restart of a member (SIGTERM, a new process on the
   same data directory) until it answers ``/health`` and lists every instance again;
3. the heartbeat ramp (``benchlib.ramp``) with r-nacos's default timeouts (15 s unhealthy, 30 s expired, as
   ours run it).

Phases 1 and 2 set r-nacos's naming timeouts to an hour, as ours run with ``--heartbeat-timeout-ms 3600000``.
"""

from __future__ import annotations

import time
from typing import Any

import trio

from benchlib import listset, probes
from benchlib.procs import ProcessSet, cpu_seconds, http_get, log, rss_bytes
from benchlib.ramp import heartbeat_ramp
from benchlib.rnacos import RnacosCluster, instance_count, start_rnacos
from benchlib.runner import (
    Background,
    Profiler,
    SchedWatch,
    bg_args,
    closed_run,
    register_sweep,
    run_loadgen,
    summarize_latency,
)


def wait_listed(addrs: list[str], prefix: str, expected: int, timeout: float) -> tuple[list[int], float]:
    """Until every member lists ``expected`` instances in ``prefix-*`` services (or the timeout passes)."""
    t0 = time.perf_counter()
    while True:
        counts = [instance_count(a, prefix) for a in addrs]
        if all(c >= expected for c in counts) or time.perf_counter() - t0 > timeout:
            return counts, time.perf_counter() - t0
        time.sleep(0.2)


def _check_alive(cluster: RnacosCluster) -> None:
    for i, proc in enumerate(cluster.nodes):
        if proc is not None and not proc.alive():
            raise RuntimeError(f"r-nacos member {i + 1} died unexpectedly:\n{proc.tail()}")


def phase_register(m: dict[str, Any], ps: ProcessSet, profiler: Profiler, binary: str) -> dict[str, Any]:
    """Only r-nacos's registration sweep (``scripts/bench --only register,rnacos-register``): the same-run
    counterpart of our ``register`` phase."""
    log("r-nacos: registrations/s only (fresh members, naming timeouts 1 h)")
    cluster = start_rnacos(ps, binary, "rreg", long_timeouts=True)
    try:
        pids = [cluster.node(i).pid for i in range(3)]
        return register_sweep(m, "distro-register", cluster.addrs, pids, "rnacos", profiler, 0)
    finally:
        cluster.stop()


def phase_main(m: dict[str, Any], ps: ProcessSet, profiler: Profiler, binary: str) -> dict[str, Any]:
    log("r-nacos: starting three members (naming timeouts 1 h for this phase)")
    cluster = start_rnacos(ps, binary, "rmain", long_timeouts=True)
    out: dict[str, Any] = {}
    try:
        pids = [cluster.node(i).pid for i in range(3)]
        log("r-nacos: registrations/s (closed loop)")
        out["register"] = register_sweep(m, "distro-register", cluster.addrs, pids, "rnacos", profiler, 0)
        total = sum(r["ok"] for r in out["register"]["runs"])
        counts, waited = wait_listed(cluster.addrs, "", total, 60)
        out["register"]["instances_listed_per_node"] = counts
        out["register"]["registered_ok"] = total
        log(f"  every member lists {counts} instances (registered ok: {total}; settled {waited:.1f} s later)")
        out["list"] = listset.list_phase(m, cluster.addrs, pids, "r-nacos")
        log(f"r-nacos: register -> visible on every member (poll) under {m['bg_rate']:.0f} registrations/s")
        bg = Background(bg_args(m, "distro-register", cluster.addrs, 50_000_000))
        sched = SchedWatch(pids)
        try:
            time.sleep(1.0)
            conv = trio.run(lambda: probes.converge_distro(cluster.addrs, m["conv_samples"], method="poll", net=200))
        finally:
            bgres = bg.stop()
        out["converge"] = {**summarize_latency(conv["samples_ms"]), "missed": conv["missed"], "method": "poll",
                           "samples_ms": conv["samples_ms"], "poll_interval_ms": conv["poll_interval_ms"]}
        out["background"] = {k: bgres[k] for k in ("ok_per_s", "failed", "rate_target", "latency_ms")}
        out["background"]["server_sched"] = sched.result()
        log(f"  converge p50 {out['converge']['p50']} ms, p99 {out['converge']['p99']} ms, missed {conv['missed']} "
            f"(background achieved {bgres['ok_per_s']:.0f}/s, {bgres['failed']} failed)")
        log("r-nacos: change -> UDP push subscriber (Nacos-Java-Client:v1.4.2, one subscriber per member)")
        push = trio.run(lambda: probes.push_udp(cluster.addrs, m["push_samples"]))
        if push.get("supported") and not push["packets"]["received"]:
            out["push"] = {"skipped": "no UDP packet reached a Nacos 1.x subscriber (udpPort, clientIP, a Java "
                                      "client's User-Agent) in five changes", "packets": push["packets"]}
            log("  " + out["push"]["skipped"])
        elif push.get("supported"):
            out["push"] = {**summarize_latency(push["samples_ms"]), "missed": push["missed"],
                           "packets": push["packets"], "samples_ms": push["samples_ms"]}
            log(f"  push p50 {out['push']['p50']} ms, p99 {out['push']['p99']} ms, missed {push['missed']}")
        else:
            out["push"] = {"skipped": "the members do not announce UDP push to a Java 1.4 agent"}
        out["rss_bytes"] = [rss_bytes(p) for p in pids]
        _check_alive(cluster)
    finally:
        cluster.stop()
    return out


def _restart(cluster: RnacosCluster, victim: int, prefix: str, expected: int) -> dict[str, Any]:
    """SIGTERM a member, start a new process on its data directory, and time until it answers ``/health``
    and until it lists every instance again."""
    ps = cluster.ps
    ps.stop(cluster.node(victim))
    t0 = time.perf_counter()
    proc = cluster.start_node(victim, join=False)
    healthy = listed = None
    count = -1
    while time.perf_counter() - t0 < 120:
        now = time.perf_counter()
        if healthy is None and http_get(f"http://{cluster.addrs[victim]}/health", 1.0)[0] == 200:
            healthy = now
        if healthy is not None:
            count = instance_count(cluster.addrs[victim], prefix)
            if count >= expected:
                listed = time.perf_counter()
                break
        if not proc.alive():
            raise RuntimeError("restarted r-nacos member exited:\n" + proc.tail())
        time.sleep(0.005)
    return {"restart_healthy_ms": None if healthy is None else round((healthy - t0) * 1000, 1),
            "snapshot_load_ms": None if listed is None else round((listed - t0) * 1000, 1),
            "restarted_node_lists": count}


def phase_memory(m: dict[str, Any], ps: ProcessSet, binary: str) -> dict[str, Any]:
    n = m["mem_instances"]
    log(f"r-nacos: bulk registrations and memory per instance at {n:,} instances in {m['bulk_services']} services")
    cluster = start_rnacos(ps, binary, "rmem", long_timeouts=True)
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
        counts, _ = wait_listed(cluster.addrs, "mem", r["ok"], 60)
        log(f"  registered {r['ok']:,} ({r['ok_per_s']:,.0f}/s, {r['failed']} failed); members list {counts}")
        time.sleep(1.0)
        after = [rss_bytes(p) for p in pids]
        per = [(a - b) / max(1, r["ok"]) for a, b in zip(after, before, strict=True)]
        out.update({"rss_before": before, "rss_after": after, "bytes_per_instance_per_node": [round(x) for x in per],
                    "bytes_per_instance": round(sum(per) / len(per)), "listed": counts})
        log(f"  RSS before {[b >> 20 for b in before]} MiB, after {[a >> 20 for a in after]} MiB: "
            f"{out['bytes_per_instance']} bytes per instance per member")
        log(f"r-nacos: light beats/s (closed loop) over those {r['ok']:,} instances")
        out["beat"] = closed_run(m, "distro-beat", cluster.addrs, pids,
                                 ["--count", str(n), "--services", str(m["bulk_services"]), "--prefix", "mem"])
        log(f"  restarting member 3 (SIGTERM, then a new process on its data) while the others hold {r['ok']:,}")
        out.update(_restart(cluster, 2, "mem", r["ok"]))
        log(f"  healthy {out['restart_healthy_ms']} ms after spawn; lists every instance "
            f"{out['snapshot_load_ms']} ms after spawn ({out['restarted_node_lists']:,} listed)")
        _check_alive(cluster)
    finally:
        cluster.stop()
    return out


def phase_ramp(m: dict[str, Any], ps: ProcessSet, profiler: Profiler, binary: str) -> dict[str, Any]:
    log(f"r-nacos: heartbeat ramp {m['ramp']} (beats every {m['beat_interval_s']:g} s, hold {m['hold_s']:g} s "
        "per step; r-nacos's default timeouts of 15 s and 30 s)")
    return heartbeat_ramp(m, lambda: start_rnacos(ps, binary, "rhb", long_timeouts=False), profiler, "rnacos")
