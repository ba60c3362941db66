"""Change -> our SDK's subscriber (``distroreg.NamingClient``), one client per node.

Each client talks to one node only and subscribes to the probe service; the probe registers a new
instance on node k % n and times until every client's subscription yields a snapshot listing it.
"""

from __future__ import annotations

import contextlib
import random
import time
from typing import Any

import trio

from benchlib.httpraw import build_request, open_conn, split_addr
from benchlib.probes import NS, anchor, probe_ip


async def run_async(addrs: list[str], samples: int, mode: Any, net: int) -> dict[str, Any]:
    from distroreg import NamingClient

    n = len(addrs)
    service = f"probe-sdk-{mode}-{net}"
    seen: dict[tuple[int, str], float] = {}
    wake = trio.Event()
    lat: list[float] = []
    missed = 0
    modes: list[str] = []

    async def follow(i: int, client: Any, ready: trio.Event) -> None:
        nonlocal wake
        async with client.subscribe(service) as changes:
            ready.set()
            async for info in changes:
                t = time.perf_counter()
                for h in info.hosts:
                    seen.setdefault((i, h.ip), t)
                wake.set()
                wake = trio.Event()

    async with contextlib.AsyncExitStack() as stack:
        writers = [await open_conn(*split_addr(a)) for a in addrs]
        for conn in writers:
            stack.callback(conn.close)
        await anchor(writers[0], addrs[0], service, net, 7003)
        await trio.sleep(0.1)
        clients = [await stack.enter_async_context(NamingClient([a], push=mode, client_ip="127.0.0.1"))
                   for a in addrs]
        async with trio.open_nursery() as nursery:
            readies = [trio.Event() for _ in addrs]
            for i, c in enumerate(clients):
                nursery.start_soon(follow, i, c, readies[i])
            for r in readies:
                await r.wait()
            await trio.sleep(0.5)
            for k in range(samples):
                ip = probe_ip(k, net)
                w = k % n
                t0 = time.perf_counter()
                status, body = await writers[w].request(
                    build_request("POST", f"{NS}/instance?serviceName={service}&ip={ip}&port=7003", addrs[w]))
                if body != b"ok":
                    raise RuntimeError(f"sdk probe register failed: {status} {body[:100]!r}")
                with trio.move_on_after(5):
                    while not all((i, ip) in seen for i in range(n)):
                        await wake.wait()
                for i in range(n):
                    if (i, ip) in seen:
                        lat.append((seen[(i, ip)] - t0) * 1000)
                    else:
                        missed += 1
                await writers[w].request(
                    build_request("DELETE", f"{NS}/instance?serviceName={service}&ip={ip}&port=7003", addrs[w]))
                await trio.sleep(0.05 + random.random() * 0.03)
            modes = [str(c.mode) for c in clients]
            nursery.cancel_scope.cancel()
    return {"mode": mode, "mode_in_effect": modes, "samples_ms": lat, "missed": missed}


def run(addrs: list[str], samples: int, mode: str = "auto", net: int = 203) -> dict[str, Any]:
    return trio.run(run_async, addrs, samples, mode, net)
