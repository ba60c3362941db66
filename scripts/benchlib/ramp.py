"""The heartbeat ramp, for any Nacos-API cluster: register instances in steps, beat each every few seconds
(light beats, spread over the nodes), and check every second on every node that all are listed and healthy.
A step holds when under 0.1% of beats fail, at least 95% of the needed beat rate is achieved, and no
observation finds an instance missing or unhealthy; the ramp stops at the first step that does not hold.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any, Protocol

from benchlib.procs import Proc, cpu_seconds, http_get, log
from benchlib.runner import Profiler, SchedWatch, Steered, run_loadgen

REGISTER_CHUNK = 4000
"""A step's new instances are registered this many at a time, each batch joining the beat cycle at once."""


class NacosCluster(Protocol):
    """What the ramp needs of a cluster: its HTTP addresses, its processes, and a way to stop it."""

    @property
    def addrs(self) -> list[str]: ...

    nodes: list[Proc | None]

    def node(self, i: int) -> Proc: ...

    def stop(self) -> None: ...


def catalog_counts(addr: str, prefix: str) -> tuple[int, int]:
    """(instances, healthy instances) a node lists in services named ``prefix-*`` (-1, -1 on error)."""
    total = healthy = 0
    page = 1
    while True:
        status, body = http_get(f"http://{addr}/nacos/v1/ns/catalog/services?pageNo={page}&pageSize=1000", 5.0)
        if status != 200:
            return -1, -1
        rows = json.loads(body).get("serviceList", [])
        for row in rows:
            if str(row.get("name", "")).startswith(prefix + "-"):
                total += int(row.get("ipCount", 0))
                healthy += int(row.get("healthyInstanceCount", 0))
        if len(rows) < 1000:
            return total, healthy
        page += 1


def heartbeat_ramp(m: dict[str, Any], start: Callable[[], NacosCluster], profiler: Profiler,
                   label: str) -> dict[str, Any]:
    """Steps of ``m["ramp"]`` instances beating every ``beat_interval_s``; the figure is the last step held.

    One load generator beats for the whole ramp (``benchlib.openloop``, steered over stdin): a step's new
    instances are registered in batches, at ``ramp_register_rate`` per second (open loop), while it keeps
    beating the ones before, and it widens its cycle
    (and its rate) to each batch once it is registered, so no instance goes unbeaten between steps. Each step is judged over its window of ``hold_s`` minus a
    settling time after the switch.
    """
    interval = m["beat_interval_s"]
    settle_s = min(2.0, m["hold_s"] / 4)
    cluster = start()
    steps: list[dict[str, Any]] = []
    passed = 0
    registered = 0
    driver: Steered | None = None
    try:
        pids = [cluster.node(i).pid for i in range(3)]
        conns = min(600, max(24, int(max(m["ramp"]) / interval / 20)))
        for step_no, n in enumerate(m["ramp"]):
            t_reg = time.perf_counter()
            added = n - registered
            while registered < n:
                # in chunks, each joining the beat cycle at once: an instance registered early in a long
                # registration must not wait for the rest before its first beat (15 s makes it unhealthy);
                # at a set pace, so that registering (~3x a beat's CPU) does not starve the beats
                chunk = min(REGISTER_CHUNK, n - registered)
                r = run_loadgen(["--workload", "distro-register", "--targets", ",".join(cluster.addrs),
                                 "--connections", "48", "--count", str(chunk), "--base", str(registered),
                                 "--rate", str(m["ramp_register_rate"]), "--duration", "3600",
                                 "--services", "100", "--prefix", "hb"])
                if r["failed"]:
                    log(f"  registering {registered:,}-{registered + chunk - 1:,}: {r['failed']} failed: "
                        f"{r['errors']}")
                registered += chunk
                if driver is None:
                    driver = Steered(["--workload", "distro-beat", "--targets", ",".join(cluster.addrs),
                                      "--connections", str(conns), "--rate", f"{registered / interval:.1f}",
                                      "--count", str(registered), "--duration", "36000", "--services", "100",
                                      "--prefix", "hb", "--control"])
                else:
                    driver.set(registered, registered / interval)
            if added > 0:
                log(f"  registered {added:,} more in {time.perf_counter() - t_reg:.1f} s, beating them as they "
                    "came")
            rate = n / interval
            assert driver is not None
            time.sleep(settle_s)
            warmup = driver.report()
            steps.append(_hold_step(m, cluster, pids, driver, profiler, label, n, rate,
                                    step_no == len(m["ramp"]) - 1, warmup))
            if not steps[-1]["ok"]:
                break
            passed = n
        for i, proc in enumerate(cluster.nodes):
            if proc is not None and not proc.alive():
                raise RuntimeError(f"{label} node {i + 1} died unexpectedly:\n{proc.tail()}")
    finally:
        if driver is not None:
            driver.stop()
        cluster.stop()
    return {"max_heartbeating_instances": passed, "steps": steps, "beat_interval_s": interval,
            "hold_s": m["hold_s"], "settle_s": settle_s,
            "register_per_s": m["ramp_register_rate"], "capped": passed == m["ramp"][-1]}


def _hold_step(m: dict[str, Any], cluster: NacosCluster, pids: list[int], driver: Steered, profiler: Profiler,
               label: str, n: int, rate: float, last: bool, warmup: dict[str, Any]) -> dict[str, Any]:
    """One step's window: every node's catalog every second, then the generator's report of the window."""
    window_s = m["hold_s"] - min(2.0, m["hold_s"] / 4)
    cpu0 = [cpu_seconds(p) for p in pids]
    sched = SchedWatch(pids)
    if last:
        profiler.start(f"{label}-beat", {f"n{i + 1}": p for i, p in enumerate(pids)}, min(10, window_s - 1))
    flaps = []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < window_s - 0.5:
        for i, a in enumerate(cluster.addrs):
            total, healthy = catalog_counts(a, "hb")
            if total != n or healthy != n:
                flaps.append(f"t+{time.perf_counter() - t0:.1f}s n{i + 1}: {healthy}/{total} healthy of {n}")
        time.sleep(max(0.0, 1.0 - (time.perf_counter() - t0) % 1.0))
    while time.perf_counter() - t0 < window_s:
        time.sleep(0.05)
    res = driver.report()
    profiler.wait()
    cpu = [round(cpu_seconds(p) - c, 2) for p, c in zip(pids, cpu0, strict=True)]
    total_beats = res["ok"] + res["failed"]
    elapsed = res["elapsed_s"]
    achieved = res["ok"] / elapsed if elapsed else 0.0
    ok = res["failed"] <= 0.001 * max(1, total_beats) and achieved >= 0.95 * rate and not flaps
    step = {"instances": n, "beats_per_s_target": round(rate, 1), "beats_per_s": round(achieved, 1),
            "beats_scheduled_per_s": round(res["scheduled"] / elapsed, 1) if elapsed else 0.0,
            "beats_failed": res["failed"], "beat_latency_ms": res["latency_ms"], "flaps": flaps[:10],
            "flap_count": len(flaps), "server_cpu_s": cpu, "ok": ok, "errors": res["errors"],
            "server_cpu_us_per_beat": round(sum(cpu) / res["ok"] * 1e6, 1) if res["ok"] else None,
            "server_cores": [round(c / elapsed, 2) for c in cpu] if elapsed else None,
            "server_sched": sched.result(), "window_s": elapsed,
            "loadgen_cpu_s": res["cpu_s"], "loadgen_cores": round(res["cpu_s"] / elapsed, 2) if elapsed else None,
            "loadgen_us_per_beat": res["cpu_us_per_request"], "loadgen_send_lag_ms": res["send_lag_ms"],
            "loadgen_no_idle_connection": res["no_idle_connection"],
            "settle": {k: warmup[k] for k in ("ok", "failed", "elapsed_s", "latency_ms")},
            "loadavg": [round(x, 2) for x in os.getloadavg()]}
    log(f"  {n:,} instances: {achieved:,.0f}/{rate:,.0f} beats/s ({step['beats_scheduled_per_s']:,.0f} sent on "
        f"schedule, send lag p99 {res['send_lag_ms']['p99']} ms), {res['failed']} failed, beat p99 "
        f"{res['latency_ms']['p99']} ms, {len(flaps)} unhealthy/missing observations, node cores "
        f"{step['server_cores']} ({step['server_cpu_us_per_beat']} us/beat; waited "
        f"{step['server_sched']['wait_per_cpu']} s for a CPU per CPU-second), generator {step['loadgen_cores']} "
        f"cores ({res['cpu_us_per_request']} us/beat), load average {step['loadavg'][0]} "
        f"-> {'steady' if ok else 'NOT steady'}")
    return step
