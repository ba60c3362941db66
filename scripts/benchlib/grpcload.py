"""The gRPC load generator of ``scripts/bench`` (grpcio's asyncio client, raw Nacos ``Payload`` messages).

    python scripts/benchlib/grpcload.py register --servers H:P,... --connections 48 --services 64 --seconds 10
    python scripts/benchlib/grpcload.py push --server H:P --http H:P --samples 200 --rate 50
    python scripts/benchlib/grpcload.py hold --servers H:P,... --connections 10000 --seconds 30

Servers are HTTP addresses; the gRPC port is the HTTP port + 1000, as Nacos clients compute it. Each
connection is its own HTTP/2 connection (grpcio's local subchannel pool, as nacos-sdk-python does), set up as
a Nacos client does: ``ServerCheckRequest``, then ``ConnectionSetupRequest`` on the bi-stream. Every mode
prints one JSON line with its figures (``hold`` prints ``ready`` first, when every connection is set up).

* ``register``: a closed loop per connection of ``InstanceRequest`` registrations, each a real write (the
  connection's instance in one of ``--services`` services, its weight flipped on every pass).
* ``push``: one subscriber on ``--server``; changes made over v1 HTTP on ``--http`` (another node), one at a
  time; the time from the HTTP call to the ``NotifySubscriberRequest`` that carries the change.
* ``hold``: ``--connections`` connections across the servers, each with one instance and one subscription,
  answering the server's detection probes, held for ``--seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import grpc
import httpx

from cluster.grpc.wire import Payload, decode_payload, encode_payload

GRPC_OFFSET = 1000
_IDENTITY = {"request_serializer": None, "response_deserializer": None}


def succeeded(answer: dict[str, Any]) -> bool:
    """Nacos's ``Response.isSuccess()``: ``resultCode`` 200 (r-nacos writes no ``success`` field; ours and
    Nacos's Java server write both)."""
    return answer.get("resultCode") == 200


def _payload(kind: str, body: dict[str, Any]) -> bytes:
    return encode_payload(Payload(kind, json.dumps(body).encode()))


class Connection:
    """One Nacos gRPC connection: a channel, its unary stub and its bi-stream."""

    def __init__(self, http_address: str) -> None:
        host, _, port = http_address.rpartition(":")
        self.channel = grpc.aio.insecure_channel(
            f"{host}:{int(port) + GRPC_OFFSET}", options=[("grpc.use_local_subchannel_pool", 1)]
        )
        self.unary = self.channel.unary_unary("/Request/request", **_IDENTITY)
        self.bi: Any = None
        self.pushes: asyncio.Queue[tuple[float, Payload]] = asyncio.Queue()
        self._seq = 0
        self._reader: asyncio.Task[None] | None = None

    async def setup(self) -> None:
        check = decode_payload(await self.unary(_payload("ServerCheckRequest", {"requestId": "0"}), timeout=30))
        if check.type != "ServerCheckResponse":
            raise RuntimeError(f"server check failed: {check.body[:200]!r}")
        self.bi = self.channel.stream_stream("/BiRequestStream/requestBiStream", **_IDENTITY)()
        await self.bi.write(_payload("ConnectionSetupRequest", {"clientVersion": "bench", "labels": {}}))
        self._reader = asyncio.create_task(self._read())
        for _ in range(300):  # the setup is registered when a health check passes
            answer = await self.call("HealthCheckRequest", {})
            if succeeded(answer):
                return
            await asyncio.sleep(0.01)
        raise RuntimeError("the connection setup was never accepted")

    async def _read(self) -> None:
        async for raw in self.bi:
            payload = decode_payload(raw)
            self.pushes.put_nowait((time.perf_counter(), payload))
            request_id = json.loads(payload.body).get("requestId", "")
            answer = payload.type.replace("Request", "Response")
            await self.bi.write(_payload(answer, {"requestId": request_id, "resultCode": 200}))

    async def call(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        self._seq += 1
        raw = await self.unary(_payload(kind, {"requestId": str(self._seq), **body}), timeout=30)
        answer: dict[str, Any] = json.loads(decode_payload(raw).body)
        return answer

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self.channel.close()


def _register_body(service: str, ip: str, weight: float) -> dict[str, Any]:
    return {"namespace": "public", "groupName": "DEFAULT_GROUP", "serviceName": service, "type": "registerInstance",
            "instance": {"ip": ip, "port": 8080, "weight": weight, "healthy": True, "enabled": True,
                         "ephemeral": True, "clusterName": "DEFAULT", "metadata": {}}}


async def run_register(servers: list[str], connections: int, services: int, seconds: float) -> dict[str, Any]:
    conns = [Connection(servers[i % len(servers)]) for i in range(connections)]
    await asyncio.gather(*(c.setup() for c in conns))
    counts = {"ok": 0, "errors": 0}
    deadline = time.perf_counter() + seconds

    async def loop(index: int, conn: Connection) -> None:
        ip = f"10.{index // 250 % 250}.{index % 250}.1"
        n = 0
        while time.perf_counter() < deadline:
            service = f"grpc-bench-{n % services}"
            answer = await conn.call("InstanceRequest", _register_body(service, ip, 1.0 + (n // services) % 2))
            counts["ok" if succeeded(answer) else "errors"] += 1
            n += 1

    started = time.perf_counter()
    cpu0 = _cpu_s()
    await asyncio.gather(*(loop(i, c) for i, c in enumerate(conns)))
    elapsed = time.perf_counter() - started
    cpu = _cpu_s() - cpu0
    await asyncio.gather(*(c.close() for c in conns))
    calls = counts["ok"] + counts["errors"]
    return {"connections": connections, "seconds": round(elapsed, 2), **counts,
            "per_s": round(counts["ok"] / elapsed, 1),
            "client_cpu_us_per_call": round(cpu / calls * 1e6, 1) if calls else None}


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _seqs(payload: Payload) -> set[str]:
    """The ``seq`` metadata of every host in a push (none for other server requests)."""
    hosts = json.loads(payload.body).get("serviceInfo", {}).get("hosts") or []
    return {str(host.get("metadata", {}).get("seq")) for host in hosts}


async def _push_of(conn: Connection, tag: str, timeout_s: float) -> float | None:
    """When the push carrying ``tag`` arrived (perf_counter), or None after ``timeout_s``; earlier pushes and
    other server requests are passed over."""
    deadline = time.perf_counter() + timeout_s
    while (remaining := deadline - time.perf_counter()) > 0:
        try:
            arrived, payload = await asyncio.wait_for(conn.pushes.get(), remaining)
        except TimeoutError:
            return None
        if tag in _seqs(payload):
            return arrived
    return None


async def run_push(server: str, http: str, samples: int, rate: float, timeout_s: float = 5.0) -> dict[str, Any]:
    """One change at a time: a v1 HTTP update with a new ``seq``, then the push that carries it (or
    ``timeout_s``), then a pause of ``1 / rate`` before the next, so a server that holds changes back to push
    them together is timed change by change instead of losing the changes a later one overtook. Gives up
    after five misses in a row with nothing received."""
    service = "grpc-push-bench"
    async with httpx.AsyncClient(timeout=10) as client:
        url = f"http://{http}/nacos/v1/ns/instance"
        await client.post(url, params={"serviceName": service, "ip": "10.99.0.1", "port": 80})
        conn = Connection(server)
        await conn.setup()
        await conn.call("SubscribeServiceRequest", {"serviceName": service, "subscribe": True, "clusters": ""})
        latencies: list[float] = []
        missed = sent = 0
        for i in range(samples):
            started = time.perf_counter()
            await client.put(url, params={"serviceName": service, "ip": "10.99.0.1", "port": 80,
                                          "metadata": json.dumps({"seq": str(i)})})
            sent += 1
            arrived = await _push_of(conn, str(i), timeout_s)
            if arrived is None:
                missed += 1
                if missed >= 5 and not latencies:
                    break
            else:
                latencies.append((arrived - started) * 1000)
            await asyncio.sleep(1 / rate)
        await conn.close()
    latencies.sort()
    return {"samples": sent, "received": len(latencies), "missed": missed, "timeout_s": timeout_s,
            "p50_ms": _pct(latencies, 0.5), "p99_ms": _pct(latencies, 0.99), "max_ms": _pct(latencies, 1.0)}


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, int(q * (len(values) - 1) + 0.5))], 2)


async def run_hold(servers: list[str], connections: int, seconds: float) -> dict[str, Any]:
    conns = [Connection(servers[i % len(servers)]) for i in range(connections)]
    failed = 0
    semaphore = asyncio.Semaphore(64)

    async def set_up(index: int, conn: Connection) -> bool:
        async with semaphore:
            try:
                await conn.setup()
                service = f"grpc-hold-{index % 500}"
                ip = f"10.{100 + index // 62500}.{index // 250 % 250}.{index % 250 + 1}"
                ok = succeeded(await conn.call("InstanceRequest", _register_body(service, ip, 1.0)))
                sub = await conn.call("SubscribeServiceRequest", {"serviceName": service, "subscribe": True})
                return ok and succeeded(sub)
            except (grpc.aio.AioRpcError, RuntimeError):
                return False

    started = time.perf_counter()
    results = await asyncio.gather(*(set_up(i, c) for i, c in enumerate(conns)))
    failed = sum(1 for ok in results if not ok)
    setup_s = time.perf_counter() - started
    print(json.dumps({"ready": True, "connections": connections, "failed": failed, "setup_s": round(setup_s, 1)}),
          flush=True)
    await asyncio.sleep(seconds)
    alive = sum(1 for c in conns if c._reader is not None and not c._reader.done())
    await asyncio.gather(*(c.close() for c in conns))
    return {"connections": connections, "failed": failed, "alive_at_end": alive, "setup_s": round(setup_s, 1),
            "held_s": seconds}


def main(argv: list[str] | None = None) -> int:
    """Parse the mode and print its JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    reg = sub.add_parser("register")
    reg.add_argument("--servers", required=True)
    reg.add_argument("--connections", type=int, default=48)
    reg.add_argument("--services", type=int, default=64)
    reg.add_argument("--seconds", type=float, default=10.0)
    push = sub.add_parser("push")
    push.add_argument("--server", required=True)
    push.add_argument("--http", required=True)
    push.add_argument("--samples", type=int, default=200)
    push.add_argument("--rate", type=float, default=50.0, help="the pause after a push, before the next change, "
                                                               "is 1/RATE s")
    hold = sub.add_parser("hold")
    hold.add_argument("--servers", required=True)
    hold.add_argument("--connections", type=int, default=10_000)
    hold.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args(argv)
    if args.mode == "register":
        result = asyncio.run(run_register(args.servers.split(","), args.connections, args.services, args.seconds))
    elif args.mode == "push":
        result = asyncio.run(run_push(args.server, args.http, args.samples, args.rate))
    else:
        result = asyncio.run(run_hold(args.servers.split(","), args.connections, args.seconds))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
