"""Several NodeRuntimes in one trio process, started together on an in-memory peer network
(cluster/node/memlink.py): the start-up the runtime's and the console's tests share (run them under
``autojump_clock``: the waits are deadlines in virtual time)."""

from __future__ import annotations

import trio

from cluster.node.memlink import MemoryNetwork
from cluster.node.pump import NodeRuntime
from distro.config import DistroConfig
from tests.polling import wait_for


def make_runtimes(config: DistroConfig, count: int) -> list[NodeRuntime]:
    """``count`` runtimes, not started: ``n0``, ``n1``, ... advertised at 127.0.0.1:8848, :8849, ..."""
    return [NodeRuntime(f"n{i}", config, address=f"127.0.0.1:{8848 + i}") for i in range(count)]


async def start_on_network(nursery: trio.Nursery, runtimes: list[NodeRuntime]) -> MemoryNetwork:
    """Start ``runtimes`` in ``nursery`` on a new in-memory network; returns it once every runtime is ready
    and sees all of them live."""
    network = MemoryNetwork()
    await nursery.start(network.run)
    for runtime in runtimes:
        await nursery.start(runtime.run)
        network.attach(runtime)
    with trio.fail_after(30):
        for runtime in runtimes:
            await runtime.ready_event.wait()
    count = len(runtimes)
    await wait_for(lambda: all(len(r.node.live_members()) == count for r in runtimes), timeout_s=30,
                   what="every runtime seeing all of them live")
    return network
