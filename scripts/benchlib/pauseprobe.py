"""A pause probe: asks every node's ``/healthz`` every 10 ms and records how long each answer took, so a stall
of a node's event loop (a long garbage collection, a housekeeping scan, a big render) shows as one slow
answer and a gap.

    PYTHONPATH=scripts python -m benchlib.pauseprobe --targets 127.0.0.1:8848,... [--interval 0.01]

Runs until SIGTERM (or ``--duration``), then prints one JSON object: per node the number of probes, the
latency percentiles, the slowest answers with when they happened (seconds since the start), and how many
took longer than 100 ms. One trio task per node, one keep-alive connection each; a probe that finds its
predecessor still unanswered simply waits, so a 3 s stall is one 3 s sample, not 300 missing ones.

The probe also times itself: a task that sleeps ``--interval`` and records how late it woke (``probe_lag``:
its slowest wake-ups with when they happened, and how many were over 50 ms). A slow answer at the moment the
probe itself was late is the probe's (or the whole machine's) stall, not the node's.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from typing import Any

import trio

from benchlib.httpraw import HttpError, build_request, open_conn, split_addr
from benchlib.loadgen import percentiles

SLOW_MS = 100.0


async def _probe(addr: str, interval: float, out: dict[str, Any], start: float) -> None:
    host, port = split_addr(addr)
    req = build_request("GET", "/healthz", addr)
    samples: list[float] = []
    slowest: list[tuple[float, float]] = []  # (latency ms, at s)
    errors = 0
    out[addr] = {"samples": samples, "slowest": slowest, "errors": 0}
    conn = None
    next_at = trio.current_time()
    while True:
        try:
            if conn is None:
                conn = await open_conn(host, port, timeout=5.0)
            t0 = time.perf_counter()
            await conn.request(req)
            ms = (time.perf_counter() - t0) * 1000
            samples.append(ms)
            if len(slowest) < 10 or ms > slowest[-1][0]:
                slowest.append((ms, round(t0 - start, 2)))
                slowest.sort(reverse=True)
                del slowest[10:]
        except (HttpError, OSError, trio.TooSlowError):
            errors += 1
            out[addr]["errors"] = errors
            if conn is not None:
                conn.close()
            conn = None
        next_at += interval
        now = trio.current_time()
        if next_at < now:
            next_at = now
        await trio.sleep_until(next_at)


LAG_REPORTED_MS = 50.0


async def _own_lag(interval: float, lag: dict[str, Any], start: float) -> None:
    """How late this process wakes from a sleep of ``interval``: its own scheduling stalls."""
    slowest: list[tuple[float, float]] = lag["slowest"]
    while True:
        t0 = time.perf_counter()
        await trio.sleep(interval)
        late_ms = (time.perf_counter() - t0 - interval) * 1000
        lag["n"] += 1
        if late_ms > LAG_REPORTED_MS:
            lag["over_50ms"] += 1
        if len(slowest) < 10 or late_ms > slowest[-1][0]:
            slowest.append((round(late_ms, 1), round(t0 - start, 2)))
            slowest.sort(reverse=True)
            del slowest[10:]


async def run(targets: list[str], interval: float, duration: float | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    lag: dict[str, Any] = {"n": 0, "over_50ms": 0, "slowest": []}
    start = time.perf_counter()
    with trio.move_on_after(duration if duration is not None else float("inf")):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_own_lag, interval, lag, start)
            for addr in targets:
                nursery.start_soon(_probe, addr, interval, out, start)
            with trio.open_signal_receiver(signal.SIGTERM) as signals:
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break
    nodes = {}
    for addr, r in out.items():
        nodes[addr] = {**percentiles(r["samples"]), "errors": r["errors"],
                       "over_100ms": sum(1 for x in r["samples"] if x > SLOW_MS),
                       "slowest": [[round(ms, 1), at] for ms, at in r["slowest"]]}
    worst = max((n["max"] or 0.0 for n in nodes.values()), default=0.0)
    return {"interval_ms": interval * 1000, "elapsed_s": round(time.perf_counter() - start, 1), "nodes": nodes,
            "max_ms": worst, "over_100ms": sum(n["over_100ms"] for n in nodes.values()),
            "probe_lag": {**lag, "slowest": [list(x) for x in lag["slowest"]]}}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", required=True)
    ap.add_argument("--interval", type=float, default=0.01)
    ap.add_argument("--duration", type=float)
    a = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda signum, frame: None)  # see benchlib.loadgen.main
    result = trio.run(run, [t for t in a.targets.split(",") if t], a.interval, a.duration)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
