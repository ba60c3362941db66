"""The load generator shared by both systems: raw HTTP/1.1 keep-alive connections on trio.

    PYTHONPATH=scripts python -m benchlib.loadgen --workload distro-register --targets 127.0.0.1:8848,... \\
        --connections 48 --depth 4 --duration 10 [--rate 1000] [--count N] [--base 0] [--services 64]

Prints one JSON object on stdout: requests ok/failed, achieved rate, latency percentiles, a per-bucket
timeline of completions, and the generator's own CPU time (so its cost per request can be subtracted).

Workloads (index ``i`` of a run maps to a distinct instance ``base + i``):

* ``distro-register``: ``POST /nacos/v1/ns/instance?serviceName=<prefix>-<g % services>&ip=<ip(g)>&port=<port>``;
  ok means status 200 and body ``ok``.
* ``distro-beat``: a light beat ``PUT /nacos/v1/ns/instance/beat`` for instance ``base + i % count``;
  ok means status 200 and ``"code":10200`` in the body.
* ``etcd-put``: ``POST /v3/kv/put`` through etcd's JSON gateway with base64 key ``/registry/<service>/<ip>:<port>``,
  a JSON instance as value, bound to a lease granted once per connection (TTL 600 s), as etcd-based
  registries (etcd's own ``naming/endpoints``, go-micro, Kitex) do.
* ``distro-deregister``: ``DELETE /nacos/v1/ns/instance`` of instance ``base + i`` (the register workload's
  shapes); ok means status 200 and body ``ok``.
* ``distro-list``: ``GET /nacos/v1/ns/instance/list?serviceName=<prefix>-<(base + i) % services>`` (for profiling reads).
* ``ceiling``: the ``distro-register`` request shape; ok means status 200 (for a trivial server).

Closed loop (no ``--rate``, on trio): every connection keeps ``--depth`` requests in flight (pipelined).
Open loop (``--rate``, ``benchlib.openloop``: one thread on ``epoll``, no trio, ~15-20 us of generator CPU
per request): request ``i`` is due at ``start + i / rate``; it goes out on an idle connection (one in
flight each), and latency is measured from the due time (so a server that falls behind shows it).
``--control`` steers an open loop over stdin (the heartbeat ramp's one generator for all its steps).
"""

from __future__ import annotations

import argparse
import base64
import json
import resource
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from benchlib.httpraw import HttpError, RawConn, ResponseParser, build_request, split_addr
from benchlib.openloop import OpenLoop, Stats, percentiles

__all__ = ["Config", "Generator", "instance_of", "main", "percentiles"]

NS = "/nacos/v1/ns"


def instance_of(g: int, prefix: str, services: int) -> tuple[str, str, int]:
    """(service, ip, port) of global instance number ``g``; distinct for every g < 2**24 * 50000."""
    ip = f"10.{(g >> 16) & 255}.{(g >> 8) & 255}.{g & 255}"
    port = 10000 + (g >> 24)
    return f"{prefix}-{g % services}", ip, port


@dataclass
class Config:
    """One load generator run: the workload, its targets, and how hard and how long to drive them."""

    workload: str
    targets: list[str]
    connections: int = 48
    depth: int = 1
    duration: float | None = None
    count: int | None = None
    rate: float | None = None
    base: int = 0
    services: int = 64
    prefix: str = "bench"
    bucket_s: float = 0.25
    lease_ttl: int = 600


class Generator:
    """Runs one workload; ``await run()`` returns the summary dict."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.stats = Stats()
        self.next_index = 0
        self.start = 0.0
        self.deadline = float("inf")
        self.make: Callable[[int, dict[str, Any]], bytes]
        self.check: Callable[[int, bytes], bool]
        self._setup_workload()

    # -- workloads ------------------------------------------------------------------------------
    def _setup_workload(self) -> None:
        cfg = self.cfg
        prefix, services, base = cfg.prefix, cfg.services, cfg.base
        w = cfg.workload
        if w in ("distro-register", "ceiling"):

            def make(i: int, ctx: dict[str, Any]) -> bytes:
                svc, ip, port = instance_of(base + i, prefix, services)
                return (
                    f"POST {NS}/instance?serviceName={svc}&ip={ip}&port={port}&ephemeral=true HTTP/1.1\r\n"
                    f"Host: {ctx['host']}\r\nContent-Length: 0\r\n\r\n"
                ).encode()

            self.make = make
            self.check = (lambda s, b: s == 200) if w == "ceiling" else (lambda s, b: s == 200 and b == b"ok")
        elif w == "distro-beat":
            def make_beat(i: int, ctx: dict[str, Any]) -> bytes:
                svc, ip, port = instance_of(base + i, prefix, services)
                return (
                    f"PUT {NS}/instance/beat?serviceName={svc}&ip={ip}&port={port} HTTP/1.1\r\n"
                    f"Host: {ctx['host']}\r\nContent-Length: 0\r\n\r\n"
                ).encode()

            self.make = make_beat
            self.check = lambda s, b: s == 200 and b'"code":10200' in b
        elif w == "distro-deregister":

            def make_dereg(i: int, ctx: dict[str, Any]) -> bytes:
                svc, ip, port = instance_of(base + i, prefix, services)
                return (
                    f"DELETE {NS}/instance?serviceName={svc}&ip={ip}&port={port}&ephemeral=true HTTP/1.1\r\n"
                    f"Host: {ctx['host']}\r\nContent-Length: 0\r\n\r\n"
                ).encode()

            self.make = make_dereg
            self.check = lambda s, b: s == 200 and b == b"ok"
        elif w == "distro-list":

            def make_list(i: int, ctx: dict[str, Any]) -> bytes:
                return (
                    f"GET {NS}/instance/list?serviceName={prefix}-{(base + i) % services} HTTP/1.1\r\n"
                    f"Host: {ctx['host']}\r\n\r\n"
                ).encode()

            self.make = make_list
            self.check = lambda s, b: s == 200 and b'"hosts"' in b
        elif w == "etcd-put":

            def make_put(i: int, ctx: dict[str, Any]) -> bytes:
                svc, ip, port = instance_of(base + i, prefix, services)
                key = base64.b64encode(f"/registry/{svc}/{ip}:{port}".encode()).decode()
                value = base64.b64encode(
                    (
                        f'{{"ip":"{ip}","port":{port},"weight":1.0,"healthy":true,"enabled":true,'
                        f'"clusterName":"DEFAULT","metadata":{{}}}}'
                    ).encode()
                ).decode()
                body = f'{{"key":"{key}","value":"{value}","lease":"{ctx["lease"]}"}}'.encode()
                return (
                    f"POST /v3/kv/put HTTP/1.1\r\nHost: {ctx['host']}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n"
                ).encode() + body

            self.make = make_put
            self.check = lambda s, b: s == 200 and b'"header"' in b and b'"error"' not in b
        else:
            raise SystemExit(f"unknown workload {w}")

    def prepare_blocking(self, sock: socket.socket, ctx: dict[str, Any]) -> None:
        """What ``_prepare`` does, on a connected blocking socket (for the open loop)."""
        if self.cfg.workload != "etcd-put":
            return
        body = json.dumps({"TTL": self.cfg.lease_ttl}).encode()
        sock.sendall(build_request("POST", "/v3/lease/grant", ctx["host"], body, "Content-Type: application/json\r\n"))
        parser = ResponseParser()
        while True:
            data = sock.recv(65536)
            if not data:
                raise HttpError("lease grant: connection closed")
            got = parser.feed(data)
            if got:
                break
        status, reply = got[0]
        if status != 200:
            raise HttpError(f"lease grant: {status} {reply[:200]!r}")
        ctx["lease"] = json.loads(reply)["ID"]

    def open_loop(self, control: bool = False) -> dict[str, Any]:
        """The run with ``--rate``: the epoll engine of ``benchlib.openloop`` (no trio)."""
        cfg = self.cfg
        assert cfg.rate is not None
        engine = OpenLoop(cfg.targets, cfg.connections, cfg.rate, cfg.count, cfg.duration, self.make, self.check,
                          self.prepare_blocking, cfg.bucket_s, control=control,
                          cycle=cfg.workload == "distro-beat")
        out = engine.run()
        return {"workload": cfg.workload, "targets": cfg.targets, **out}

    async def _prepare(self, conn: RawConn, ctx: dict[str, Any]) -> None:
        ctx["host"] = f"{conn.host}:{conn.port}"
        if self.cfg.workload == "etcd-put":
            body = json.dumps({"TTL": self.cfg.lease_ttl}).encode()
            status, reply = await conn.request(
                build_request("POST", "/v3/lease/grant", ctx["host"], body, "Content-Type: application/json\r\n")
            )
            if status != 200:
                raise HttpError(f"lease grant: {status} {reply[:200]!r}")
            ctx["lease"] = json.loads(reply)["ID"]

    # -- scheduling -----------------------------------------------------------------------------
    def _take(self) -> int | None:
        cfg = self.cfg
        if cfg.count is not None and cfg.workload != "distro-beat" and self.next_index >= cfg.count:
            return None
        if time.perf_counter() >= self.deadline:
            return None
        i = self.next_index
        self.next_index += 1
        if cfg.workload == "distro-beat":
            return i % (cfg.count or 1)  # beats cycle over the instances
        return i

    async def _worker(self, target: str) -> None:
        host, port = split_addr(target)
        cfg = self.cfg
        stats = self.stats
        bucket = cfg.bucket_s
        start = self.start
        while True:
            conn = RawConn(host, port)
            ctx: dict[str, Any] = {}
            inflight: deque[float] = deque()
            try:
                await conn.connect()
                await self._prepare(conn, ctx)
                await self._closed_loop(conn, ctx, inflight)
                return
            except (HttpError, OSError, ValueError, KeyError, trio.TooSlowError) as exc:
                now = time.perf_counter()
                msg = type(exc).__name__ + ": " + str(exc)[:80]
                if not inflight:
                    stats.record(False, 0.0, now - start, bucket, msg)
                while inflight:
                    stats.record(False, now - inflight.popleft(), now - start, bucket, msg)
                if now >= self.deadline or (cfg.count is not None and cfg.workload != "distro-beat"
                                            and self.next_index >= cfg.count):
                    return
                await trio.sleep(0.05)
            finally:
                conn.close()

    async def _closed_loop(self, conn: RawConn, ctx: dict[str, Any], inflight: deque[float]) -> None:
        cfg, stats, make, check = self.cfg, self.stats, self.make, self.check
        depth, bucket, start = cfg.depth, cfg.bucket_s, self.start
        parser = conn.parser
        while True:
            now = time.perf_counter()
            batch = []
            while len(inflight) < depth:
                i = self._take()
                if i is None:
                    break
                batch.append(make(i, ctx))
                inflight.append(now)
            if not inflight:
                return
            if batch:
                await conn.send_all(b"".join(batch))
            data = await conn.recv_some()
            t = time.perf_counter()
            for status, body in parser.feed(data):
                t0 = inflight.popleft()
                good = check(status, body)
                stats.record(good, t - t0, t - start, bucket, "" if good else f"{status} {body[:60]!r}")

    async def _stop_on_sigterm(self) -> None:
        """SIGTERM ends the run early (in-flight requests complete) and still prints the summary."""
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                self.deadline = time.perf_counter()
                return

    async def run(self) -> dict[str, Any]:
        cfg = self.cfg
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        self.start = time.perf_counter()
        if cfg.duration is not None:
            self.deadline = self.start + cfg.duration
        async with trio.open_nursery() as outer:
            outer.start_soon(self._stop_on_sigterm)
            async with trio.open_nursery() as nursery:
                for c in range(cfg.connections):
                    nursery.start_soon(self._worker, cfg.targets[c % len(cfg.targets)])
            outer.cancel_scope.cancel()
        elapsed = time.perf_counter() - self.start
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        s = self.stats
        total = s.ok + s.failed
        return {
            "workload": cfg.workload,
            "targets": cfg.targets,
            "connections": cfg.connections,
            "depth": cfg.depth,
            "rate_target": cfg.rate,
            "ok": s.ok,
            "failed": s.failed,
            "errors": dict(sorted(s.errors.items(), key=lambda kv: -kv[1])[:5]),
            "elapsed_s": round(elapsed, 3),
            "ok_per_s": round(s.ok / elapsed, 1) if elapsed > 0 else 0.0,
            "latency_ms": percentiles(s.latencies_ms),
            "bucket_s": cfg.bucket_s,
            "timeline": s.timeline,
            "cpu_s": round(cpu, 3),
            "cpu_us_per_request": round(cpu / total * 1e6, 1) if total else None,
        }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", required=True,
                    choices=["distro-register", "distro-deregister", "distro-beat", "distro-list", "etcd-put",
                             "ceiling"])
    ap.add_argument("--targets", required=True, help="comma-separated host:port")
    ap.add_argument("--connections", type=int, default=48)
    ap.add_argument("--depth", type=int, default=1, help="requests in flight per connection (closed loop)")
    ap.add_argument("--duration", type=float)
    ap.add_argument("--count", type=int, help="stop after this many requests (beat: number of instances)")
    ap.add_argument("--rate", type=float, help="open loop: requests per second")
    ap.add_argument("--base", type=int, default=0)
    ap.add_argument("--services", type=int, default=64)
    ap.add_argument("--prefix", default="bench")
    ap.add_argument("--bucket", type=float, default=0.25)
    ap.add_argument("--control", action="store_true",
                    help="open loop steered by JSON lines on stdin (benchlib.openloop): set, report")
    a = ap.parse_args(argv)
    if a.control and a.rate is None:
        ap.error("--control needs --rate")
    if a.duration is None and (a.count is None or a.workload == "distro-beat"):
        ap.error("give --duration (or --count for a bounded run)")
    cfg = Config(
        workload=a.workload, targets=[t for t in a.targets.split(",") if t], connections=a.connections,
        depth=a.depth, duration=a.duration, count=a.count, rate=a.rate, base=a.base, services=a.services,
        prefix=a.prefix, bucket_s=a.bucket,
    )
    # A SIGTERM that lands while trio is not listening (start-up, or after the run ended but before the
    # summary is printed) must not kill the process silently: the orchestrator wants the summary.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    gen = Generator(cfg)
    result = gen.open_loop(a.control) if cfg.rate is not None else trio.run(gen.run)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
