"""The heartbeat ramp, for any Nacos-API cluster: register instances in steps, beat each every few seconds
(light beats, spread over the nodes), and check every second on every node that all are listed and healthy.
A step holds when under 0.1% of beats fail, at least 95% of the needed beat rate is achieved, and no
observation finds an instance missing or unhealthy; the ramp stops at the first step that does not hold.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Protocol

from benchlib.procs import Proc, cpu_seconds, http_get, log
from benchlib.runner import Background, Profiler, SchedWatch, run_loadgen


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
    """Steps of ``m["ramp"]`` instances beating every ``beat_interval_s``; the figure is the last step held."""
    interval = m["beat_interval_s"]
    cluster = start()
    steps = []
    passed = 0
    registered = 0
    try:
        pids = [cluster.node(i).pid for i in range(3)]
        for step_no, n in enumerate(m["ramp"]):
            if n > registered:
                r = run_loadgen(["--workload", "distro-register", "--targets", ",".join(cluster.addrs),
                                 "--connections", "48", "--count", str(n - registered), "--base", str(registered),
                                 "--services", "100", "--prefix", "hb"])
                if r["failed"]:
                    log(f"  registering up to {n}: {r['failed']} failed: {r['errors']}")
                registered = n
            rate = n / interval
            conns = min(600, max(24, int(rate / 20)))
            cpu0 = [cpu_seconds(p) for p in pids]
            sched = SchedWatch(pids)
            beats = Background(["--workload", "distro-beat", "--targets", ",".join(cluster.addrs),
                                "--connections", str(conns), "--rate", f"{rate:.1f}", "--count", str(n),
                                "--duration", str(m["hold_s"] + 30), "--services", "100", "--prefix", "hb"])
            if step_no == len(m["ramp"]) - 1:
                profiler.start(f"{label}-beat", {f"n{i + 1}": p for i, p in enumerate(pids)}, min(10, m["hold_s"] - 2))
            flaps = []
            t0 = time.perf_counter()
            time.sleep(min(2.0, m["hold_s"] / 4))
            while time.perf_counter() - t0 < m["hold_s"] - 0.5:
                for i, a in enumerate(cluster.addrs):
                    total, healthy = catalog_counts(a, "hb")
                    if total != n or healthy != n:
                        flaps.append(f"t+{time.perf_counter() - t0:.1f}s n{i + 1}: {healthy}/{total} healthy of {n}")
                time.sleep(1.0)
            res = beats.stop()
            profiler.wait()
            cpu = [round(cpu_seconds(p) - c, 2) for p, c in zip(pids, cpu0, strict=True)]
            total_beats = res["ok"] + res["failed"]
            achieved = res["ok"] / res["elapsed_s"] if res["elapsed_s"] else 0.0
            ok = (res["failed"] <= 0.001 * max(1, total_beats) and achieved >= 0.95 * rate and not flaps)
            step = {"instances": n, "beats_per_s_target": round(rate, 1), "beats_per_s": round(achieved, 1),
                    "beats_failed": res["failed"], "beat_latency_ms": res["latency_ms"], "flaps": flaps[:10],
                    "flap_count": len(flaps), "server_cpu_s": cpu, "ok": ok, "errors": res["errors"],
                    "server_cpu_us_per_beat": round(sum(cpu) / res["ok"] * 1e6, 1) if res["ok"] else None,
                    "server_sched": sched.result(),
                    "loadgen_cpu_s": res["cpu_s"]}
            steps.append(step)
            log(f"  {n:,} instances: {achieved:,.0f}/{rate:,.0f} beats/s, {res['failed']} failed, beat p99 "
                f"{res['latency_ms']['p99']} ms, {len(flaps)} unhealthy/missing observations, node CPU {cpu} s "
                f"(waited {step['server_sched']['wait_per_cpu']} s for a CPU per CPU-second) "
                f"-> {'steady' if ok else 'NOT steady'}")
            if not ok:
                break
            passed = n
        for i, proc in enumerate(cluster.nodes):
            if proc is not None and not proc.alive():
                raise RuntimeError(f"{label} node {i + 1} died unexpectedly:\n{proc.tail()}")
    finally:
        cluster.stop()
    return {"max_heartbeating_instances": passed, "steps": steps, "beat_interval_s": interval,
            "hold_s": m["hold_s"], "capped": passed == m["ramp"][-1]}
