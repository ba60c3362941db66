"""The gRPC phases of ``scripts/bench``: Nacos 2.x clients against our three nodes (``--only grpc``) and
against three r-nacos members (``--only rnacos-grpc``; also a sub-phase of ``rnacos``), the same way.

Three figures, each on a fresh cluster (heartbeat timeouts of an hour, as the main phase), with the load
generators (``benchlib/grpcraw.py``, ``benchlib/grpcload.py``) in processes of their own. Both systems serve
gRPC on their HTTP port + 1000, as Nacos clients expect:

* registrations/s over gRPC, closed loop (``grpc_reg_connections`` connections spread over the nodes, each
  registering its instance in 64 services in turn, every call a real write), and the server CPU per
  registration summed over the three processes (the v1 HTTP figure's like). On the same cluster, in
  alternating rounds, the v1 HTTP registration run of the main phase (the HTTP load generator, the same
  number of connections, one call in flight each, 64 services) so the two protocols are compared in one
  run on one loaded machine (``ratio``: gRPC over HTTP, best round of each);
* change -> gRPC subscriber: a v1 HTTP update on one node, the ``NotifySubscriberRequest`` on another
  node's subscriber (p50/p99);
* connected clients held: ``grpc_hold`` connections across the cluster, each with one instance and one
  subscription, held for ``grpc_hold_s``; every node must list every instance; node memory per connection.

r-nacos gets the same rounds but those of grpcio's client (whose CPU per call is the figure it measures on
this machine, not the server's); its connections and instances are counted from its ``/metrics``
(``grpc_conn_size``, collected every second on the members that hold the clients instead of every 15 s)
and ``catalog/services``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchlib.procs import DistroCluster, ProcessSet, cpu_seconds, http_get, log, rss_bytes, start_distro
from benchlib.rnacos import RnacosCluster, instance_count, start_rnacos
from benchlib.runner import Profiler, run_loadgen

LOAD = Path(__file__).resolve().parent / "grpcload.py"
RAW_LOAD = Path(__file__).resolve().parent / "grpcraw.py"
LONG_TIMEOUTS = ["--heartbeat-timeout-ms", "3600000", "--instance-expire-ms", "3600000"]
Cluster = DistroCluster | RnacosCluster
# (connections open, instances listed) on each node, from the nodes themselves
Census = Callable[[list[str]], tuple[list[int], list[int]]]
SIZES: dict[str, dict[str, Any]] = {
    "full": {"grpc_reg_connections": 48, "grpc_reg_s": 10.0, "grpc_reg_rounds": 3, "grpc_push_samples": 200, "grpc_hold": 10_000,
             "grpc_hold_s": 30.0},
    "quick": {"grpc_reg_connections": 48, "grpc_reg_s": 8.0, "grpc_reg_rounds": 3, "grpc_push_samples": 100, "grpc_hold": 3_000,
              "grpc_hold_s": 20.0},
    "smoke": {"grpc_reg_connections": 8, "grpc_reg_s": 3.0, "grpc_reg_rounds": 1, "grpc_push_samples": 20, "grpc_hold": 100,
              "grpc_hold_s": 5.0},
}


def _load(*args: str, timeout: float, script: Path = LOAD) -> dict[str, Any]:
    done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=timeout,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"grpcload {args[0]} failed: {done.stderr[-1000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _metric(addr: str, name: str) -> float:
    status, body = http_get(f"http://{addr}/metrics", timeout=5)
    if status != 200:
        raise RuntimeError(f"/metrics on {addr}: {status}")
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)


def _grpc_round(cluster: Cluster, sizes: dict[str, Any], profile: tuple[Profiler, str] | None,
                client: str = "raw") -> dict[str, Any]:
    pids = [cluster.node(i).pid for i in range(3)]
    before = [cpu_seconds(pid) for pid in pids]
    if profile is not None:
        profile[0].start(profile[1], {f"n{i + 1}": p for i, p in enumerate(pids)}, sizes["grpc_reg_s"] - 1)
    args = ["--servers", ",".join(cluster.addrs), "--connections", str(sizes["grpc_reg_connections"]),
            "--seconds", str(sizes["grpc_reg_s"])]
    if client == "raw":
        result = _load(*args, timeout=sizes["grpc_reg_s"] + 120, script=RAW_LOAD)
    else:
        result = _load("register", *args, timeout=sizes["grpc_reg_s"] + 120)
    if profile is not None:
        profile[0].wait()
    cpu_s = sum(cpu_seconds(pid) - b for pid, b in zip(pids, before, strict=True))
    result["server_cpu_us_per_reg"] = round(cpu_s / max(1, result["ok"]) * 1e6)
    return result


def _http_round(cluster: Cluster, sizes: dict[str, Any], round_no: int) -> dict[str, Any]:
    pids = [cluster.node(i).pid for i in range(3)]
    before = [cpu_seconds(pid) for pid in pids]
    r = run_loadgen(["--workload", "distro-register", "--targets", ",".join(cluster.addrs), "--connections",
                     str(sizes["grpc_reg_connections"]), "--depth", "1", "--duration", str(sizes["grpc_reg_s"]),
                     "--services", "64", "--prefix", f"http{round_no}", "--base", str(round_no * 1_000_000)])
    cpu_s = sum(cpu_seconds(pid) - b for pid, b in zip(pids, before, strict=True))
    return {"ok": r["ok"], "failed": r["failed"], "per_s": r["ok_per_s"],
            "server_cpu_us_per_reg": round(cpu_s / max(1, r["ok"]) * 1e6),
            "client_cpu_us_per_call": r.get("cpu_us_per_request")}


def _registrations(cluster: Cluster, sizes: dict[str, Any], profiler: Profiler, grpcio: bool = True) -> dict[str, Any]:
    """Alternating rounds on the same cluster: v1 HTTP, gRPC with the lean generator (``grpcraw``, the headline
    figure: it costs the client about what the HTTP generator does) and, with ``grpcio``, gRPC with grpcio's
    client; the best round of each."""
    runs: dict[str, list[dict[str, Any]]] = {"http": [], "raw": [], **({"grpcio": []} if grpcio else {})}
    for n in range(sizes["grpc_reg_rounds"]):
        runs["http"].append(_http_round(cluster, sizes, n))
        log(f"  v1 HTTP round {n + 1}: {runs['http'][-1]}")
        runs["raw"].append(_grpc_round(cluster, sizes, (profiler, "grpc-register") if n == 0 else None))
        log(f"  gRPC (lean client) round {n + 1}: {runs['raw'][-1]}")
        if grpcio:
            runs["grpcio"].append(_grpc_round(cluster, sizes, None, client="grpcio"))
            log(f"  gRPC (grpcio) round {n + 1}: {runs['grpcio'][-1]}")
    best = {name: max(rounds, key=lambda r: r["per_s"]) for name, rounds in runs.items()}
    http_per_s = best["http"]["per_s"]
    out = {**best["raw"], "client": "grpcraw", "rounds": runs["raw"], "http": {**best["http"], "rounds": runs["http"]},
           "ratio": round(best["raw"]["per_s"] / http_per_s, 2) if http_per_s else None}
    if grpcio:
        out["grpcio"] = {**best["grpcio"], "rounds": runs["grpcio"]}
        out["ratio_grpcio"] = round(best["grpcio"]["per_s"] / http_per_s, 2) if http_per_s else None
    return out


def _hold(cluster: Cluster, sizes: dict[str, Any], census: Census) -> dict[str, Any]:
    count = sizes["grpc_hold"]
    pids = [cluster.node(i).pid for i in range(3)]
    before = [rss_bytes(pid) for pid in pids]
    proc = subprocess.Popen([sys.executable, str(LOAD), "hold", "--servers", ",".join(cluster.addrs),
                             "--connections", str(count), "--seconds", str(sizes["grpc_hold_s"])],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ready = json.loads(proc.stdout.readline() or "{}")
    time.sleep(sizes["grpc_hold_s"] / 2)
    after = [rss_bytes(pid) for pid in pids]
    open_now, listed = census(cluster.addrs)
    end = json.loads(proc.communicate(timeout=sizes["grpc_hold_s"] + 120)[0].strip().splitlines()[-1])
    return {
        "connections": count, "failed_setups": ready.get("failed"), "setup_s": ready.get("setup_s"),
        "open_per_node": open_now, "listed_per_node": listed, "alive_at_end": end.get("alive_at_end"),
        "node_rss_mb": [round(a / 1e6) for a in after],
        "bytes_per_connection": round((sum(after) - sum(before)) / max(1, count)),
    }


def _ours_census(addrs: list[str]) -> tuple[list[int], list[int]]:
    return ([int(_metric(a, "distro_grpc_connections_open")) for a in addrs],
            [int(_metric(a, "distro_live_instances")) for a in addrs])


def _rnacos_census(addrs: list[str]) -> tuple[list[int], list[int]]:
    return ([int(_metric(a, "grpc_conn_size")) for a in addrs], [instance_count(a, "grpc-hold") for a in addrs])


def _no_grpcio() -> dict[str, Any] | None:
    try:
        import grpc  # noqa: F401
    except ImportError:
        log("gRPC phase: skipped, grpcio is not installed (pip install -e '.[bench]')")
        return {"skipped": "grpcio is not installed (pip install -e '.[bench]')"}
    return None


def _measure(label: str, start: Callable[[bool], Cluster], census: Census, sizes: dict[str, Any],
             profiler: Profiler, grpcio: bool) -> dict[str, Any]:
    """The three figures of one system: ``start(long_timeouts)`` gives a fresh cluster of it."""
    out: dict[str, Any] = {}
    log(f"{label} over gRPC: registrations/s")
    cluster = start(True)
    try:
        out["register"] = _registrations(cluster, sizes, profiler, grpcio=grpcio)
        reg = out["register"]
        log(f"  gRPC {reg['per_s']}/s ({reg['server_cpu_us_per_reg']} us server CPU each"
            + (f"; grpcio's client: {reg['grpcio']['per_s']}/s, {reg['grpcio']['server_cpu_us_per_reg']} us"
               if grpcio else "")
            + f") vs v1 HTTP {reg['http']['per_s']}/s ({reg['http']['server_cpu_us_per_reg']} us): "
            f"ratio {reg['ratio']}")
        log(f"{label} over gRPC: change -> subscriber")
        out["push"] = _load("push", "--server", cluster.addrs[0], "--http", cluster.addrs[1], "--samples",
                            str(sizes["grpc_push_samples"]), timeout=300)
        log(f"  {out['push']}")
    finally:
        cluster.stop()
    log(f"{label} over gRPC: {sizes['grpc_hold']} connected clients")
    cluster = start(False)
    try:
        out["hold"] = _hold(cluster, sizes, census)
        log(f"  {out['hold']}")
    finally:
        cluster.stop()
    return out


def phase_grpc(m: dict[str, Any], ps: ProcessSet, mode: str, profiler: Profiler | None = None) -> dict[str, Any]:
    """Our three figures; each on a fresh cluster. Skipped (noted) without grpcio (the bench extra)."""
    def start(long_timeouts: bool) -> Cluster:
        return start_distro(ps, "grpc-reg" if long_timeouts else "grpc-hold", LONG_TIMEOUTS if long_timeouts else [])

    return _no_grpcio() or _measure("ours", start, _ours_census, SIZES[mode], profiler or Profiler(None), True)


def phase_rnacos_grpc(ps: ProcessSet, mode: str, binary: str) -> dict[str, Any]:
    """r-nacos's three figures, as ours (but grpcio's client): registrations and push on members with naming
    timeouts of an hour, the clients held on members with its defaults (no py-spy: it is not Python)."""
    def start(long_timeouts: bool) -> Cluster:
        if long_timeouts:
            return start_rnacos(ps, binary, "rgrpc-reg", long_timeouts=True)
        # the clients held: its connection gauge fresh within a second (its default collects every 15 s)
        return start_rnacos(ps, binary, "rgrpc-hold", long_timeouts=False,
                            extra_env={"RNACOS_METRICS_COLLECT_INTERVAL_SECOND": "1"})

    return _no_grpcio() or _measure("r-nacos", start, _rnacos_census, SIZES[mode], Profiler(None), False)


__all__ = ["SIZES", "phase_grpc", "phase_rnacos_grpc"]
