"""Measure change -> subscriber latency: raw UDP push (a Java-like subscriber), and the SDK over UDP push
and over the HTTP watch. Prints p50/p90/p99/max per path; asserts nothing.

A change is one write (register or deregister of a toggling instance) sent over HTTP to node 1; the
subscriber listens on node 2, and the service is owned by a third node, so every change is forwarded to
its owner, applied, replicated to node 2 (after the ``--sync-delay-ms`` batching delay, 2 ms by
default), then pushed.
Latency is measured until the subscriber sees the new list, from just before the write request is sent
and from the moment its answer (``ok``) arrives (0 when the subscriber saw it first).

    python examples/push_latency.py                      # starts 3 local nodes on free ports
    python examples/push_latency.py --servers 127.0.0.1:8848,127.0.0.1:8849 --changes 500
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import trio

# Run from a checkout without installing: the server's packages and the SDK (client/distroreg).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "client"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from distroreg import NamingClient, PushMode

NS = "/nacos/v1/ns"


@contextmanager
def local_nodes(count: int) -> Iterator[list[str]]:
    """``count`` distro-node processes on 127.0.0.1 (HTTP port p, peer link p+1000)."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port + 1000 < 65536 and port not in ports:
            ports.append(port)
    addresses = [f"127.0.0.1:{p}" for p in ports]
    node = Path(sys.executable).parent / "distro-node"
    command = [str(node)] if node.exists() else [sys.executable, "-c", "from cluster.node.main import main; main()"]
    env = {**os.environ, "DISTRO_CLUSTER_SECRET": os.urandom(16).hex()}
    logs = Path(tempfile.mkdtemp(prefix="push-latency-"))
    procs = []
    for i, port in enumerate(ports):
        with open(logs / f"n{i + 1}.log", "wb") as log:
            procs.append(subprocess.Popen(
                [*command, "--node-id", f"n{i + 1}", "--host", "127.0.0.1", "--port", str(port),
                 "--advertise-address", f"127.0.0.1:{port}", "--peers", ",".join(addresses)],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
    try:
        deadline = time.monotonic() + 30
        with httpx.Client(timeout=1, trust_env=False) as http:
            for address in addresses:
                while True:
                    try:
                        if http.get(f"http://{address}/readyz").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"nodes not ready; logs in {logs}")
                    time.sleep(0.05)
        yield addresses
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(10)


def report(name: str, samples: Samples) -> None:
    for label, values in (("write sent", samples[0]), ("write answered", samples[1])):
        ms = sorted(v * 1000 for v in values)
        q = statistics.quantiles(ms, n=100, method="inclusive")
        print(f"{name:<26} from {label:<15} n={len(ms):<4} p50={q[49]:7.2f} ms  p90={q[89]:7.2f} ms  "
              f"p99={q[98]:7.2f} ms  max={ms[-1]:7.2f} ms")


Samples = tuple[list[float], list[float]]  # (write sent -> seen, write answered -> seen)


async def measure(
    http: httpx.AsyncClient, writer: str, service: str, changes: int,
    seen: Callable[[int], Awaitable[None]],
) -> Samples:
    """Toggle 10.99.0.2 in ``service`` (10.99.0.1 stays), awaiting ``seen(host_count)`` after each write."""
    from_sent, from_answer = [], []
    for i in range(changes):
        present = i % 2 == 0
        params = {"serviceName": service, "ip": "10.99.0.2", "port": "80"}
        seen_at: list[float] = []

        async def watch(count: int, seen_at: list[float] = seen_at) -> None:
            await seen(count)
            seen_at.append(time.perf_counter())

        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch, 2 if present else 1)
            response = await (http.post if present else http.delete)(f"{writer}{NS}/instance", params=params)
            answered = time.perf_counter()
            assert response.text == "ok", response.text
        from_sent.append(seen_at[0] - start)
        from_answer.append(max(0.0, seen_at[0] - answered))
    return from_sent, from_answer


async def pick_service(servers: list[str], prefix: str) -> str:
    """A service name owned by neither node 1 (the writer) nor node 2 (the subscriber's), when there is a
    third node: every change then takes the whole path (forward, apply, replicate, push)."""
    if len(servers) < 3:
        return prefix
    async with httpx.AsyncClient(trust_env=False) as http:
        for n in range(1000):
            name = f"{prefix}-{n}"
            response = await http.get(f"http://{servers[0]}{NS}/operator/distro/server", params={"serviceName": name})
            if response.json()["responsibleServer"] not in servers[:2]:
                return name
    return prefix


async def udp_push(servers: list[str], changes: int) -> Samples:
    service = await pick_service(servers, f"latency-udp-{os.getpid()}")
    writer, reader = f"http://{servers[0]}", f"http://{servers[1 % len(servers)]}"
    async with httpx.AsyncClient(trust_env=False) as http:
        await http.post(f"{writer}{NS}/instance", params={"serviceName": service, "ip": "10.99.0.1", "port": "80"})
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        await sock.bind(("127.0.0.1", 0))
        listed = await http.get(f"{reader}{NS}/instance/list",
                                params={"serviceName": service, "udpPort": str(sock.getsockname()[1]),
                                        "clientIP": "127.0.0.1"},
                                headers={"User-Agent": "Nacos-Java-Client:v1.4.2"})
        assert listed.json()["cacheMillis"] == 10000

        async def seen(count: int) -> None:
            while True:
                data, address = await sock.recvfrom(65536)
                packet = json.loads(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
                ack = {"type": "push-ack", "lastRefTime": str(packet["lastRefTime"]), "data": ""}
                await sock.sendto(json.dumps(ack).encode(), address)
                if len(json.loads(packet["data"])["hosts"]) == count:
                    return

        samples = await measure(http, writer, service, changes, seen)
        sock.close()
        return samples


async def sdk(servers: list[str], changes: int, push: PushMode) -> Samples:
    service = await pick_service(servers, f"latency-sdk-{push}-{os.getpid()}")
    writer = f"http://{servers[0]}"
    async with (
        httpx.AsyncClient(trust_env=False) as http,
        NamingClient([servers[1 % len(servers)]], push=push) as naming,
    ):
        await http.post(f"{writer}{NS}/instance", params={"serviceName": service, "ip": "10.99.0.1", "port": "80"})
        async with naming.subscribe(service) as subscription:
            async for info in subscription:
                if len(info.hosts) == 1:
                    break

            async def seen(count: int) -> None:
                async for info in subscription:
                    if len(info.hosts) == count:
                        return

            return await measure(http, writer, service, changes, seen)


async def main_async(servers: list[str], changes: int) -> None:
    with trio.fail_after(600):
        report("UDP push (raw subscriber)", await udp_push(servers, changes))
        report("SDK, push=udp", await sdk(servers, changes, "udp"))
        report("SDK, push=watch", await sdk(servers, changes, "watch"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", default="", help="host:port,... of a running cluster (default: start 3 nodes)")
    p.add_argument("--changes", type=int, default=200)
    args = p.parse_args()
    if args.servers:
        trio.run(main_async, args.servers.split(","), args.changes)
        return
    with local_nodes(3) as servers:
        trio.run(main_async, servers, args.changes)


if __name__ == "__main__":
    main()
