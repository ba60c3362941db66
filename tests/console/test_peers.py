"""The console's peer queries (cluster/console/peers.py) between runtimes on the in-memory peer transport,
under trio's autojump clock: a peer's version and start time, the last beats only the owner knows, and a
peer that does not answer (None at the deadline, never a hang)."""

from __future__ import annotations

import trio
import trio.testing

from cluster.console.endpoints import ConsoleEndpoints, package_version
from cluster.node.memlink import MemoryNetwork
from cluster.node.pump import NodeRuntime
from distro.config import DistroConfig
from distro.messages import ConsoleReply
from distro.model import Instance, service_key
from distro.requests import Beat, Register
from tests.memcluster import make_runtimes, start_on_network

KEY = service_key(None, None, "console-peers")


async def start(nursery: trio.Nursery) -> tuple[MemoryNetwork, list[NodeRuntime], list[ConsoleEndpoints]]:
    runtimes = make_runtimes(DistroConfig(cluster_size=2), 2)
    consoles = [ConsoleEndpoints(runtime, auth_enabled=False) for runtime in runtimes]
    return await start_on_network(nursery, runtimes), runtimes, consoles


async def test_a_peer_tells_its_version_and_start(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        _, _, consoles = await start(nursery)
        await trio.sleep(5)
        reply = await consoles[0].peers.ask("n1")
        assert reply is not None and reply.version == package_version()
        assert reply.started_ms == consoles[1].started_ms and reply.now_ms - reply.started_ms >= 5000
        assert reply.beats == ()
        nursery.cancel_scope.cancel()


async def test_the_owner_tells_when_its_instances_last_beat(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        _, runtimes, consoles = await start(nursery)
        owner_id = runtimes[0].node.owner_of(KEY)
        owner = next(r for r in runtimes if r.node.node_id == owner_id)
        other = next(c for c in consoles if c.runtime is not owner)
        assert (await owner.submit(Register(KEY, Instance("10.0.0.1", 80)))).status == 200
        await trio.sleep(3)
        assert (await owner.submit(Beat(KEY, "DEFAULT", "10.0.0.1", 80))).status == 200
        beat_ms = owner.now_ms()
        reply = await other.peers.ask(owner.node.node_id, KEY)
        assert reply is not None and reply.beats == (("DEFAULT/10.0.0.1:80", beat_ms),)
        assert other.local_beats(KEY) == {}  # a non-owner does not know
        nursery.cancel_scope.cancel()


async def test_a_silent_peer_gives_none_at_the_deadline(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        network, _, consoles = await start(nursery)
        network.cut("n0", "n1")
        started = trio.current_time()
        assert await consoles[0].peers.ask("n1") is None
        assert trio.current_time() - started == consoles[0].peers.deadline_ms / 1000
        nursery.cancel_scope.cancel()


async def test_foreign_late_and_excess_replies_are_dropped(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        network, _, consoles = await start(nursery)
        peers = consoles[0].peers
        network.cut("n0", "n1")
        answers: list[ConsoleReply | None] = []

        async def ask() -> None:
            answers.append(await peers.ask("n1"))

        nursery.start_soon(ask)
        await trio.sleep(0.1)
        forged = ConsoleReply(1, "9.9.9", 1, 2, ())
        peers._on_reply("n2", forged)  # not the peer that was asked
        await trio.sleep(2)
        assert answers == [None]
        peers._on_reply("n1", forged)  # too late: nobody waits for it any more
        peers.max_pending = 0
        assert await peers.ask("n1") is None  # over the bound: answered at once
        nursery.cancel_scope.cancel()
