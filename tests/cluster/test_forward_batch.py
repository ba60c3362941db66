"""Forwarded writes batched on a real peer link: two runtimes in one trio process, linked by PeerLinks over
127.0.0.1, real clock (sockets), no sleeps.

Writes that a non-owner forwards in one loop iteration travel in one frame, and so do the owner's replies;
each client still gets its own answer, a failing write among them included.

Run as a script for the CPU time per forwarded registration (both nodes, one process; docs/benchmarks.md)::

    .venv/bin/python -m tests.cluster.test_forward_batch [registrations] [concurrent clients] [--profile=FILE]
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from cluster.node.peerlink import PeerLinkConfig, PeerLinks
from cluster.node.pump import NodeRuntime
from distro.config import DistroConfig
from distro.model import ServiceKey, make_instance
from distro.requests import CODE_RESOURCE_NOT_FOUND, Beat, ClientRequest, Register, Result, UpdateInstance
from tests.polling import wait_for

SECRET = b"forward batch secret"
BATCH = 40


@asynccontextmanager
async def linked_runtimes() -> AsyncIterator[list[tuple[NodeRuntime, PeerLinks]]]:
    """Two ready runtimes, each with its own PeerLinks, linked both ways."""
    # every beat forwarded, as Nacos does: otherwise a beat of an instance whose replica has reached n1
    # is answered there (beat receipts), and the number of forwards would depend on replication timing
    config = DistroConfig(cluster_size=2, beat_receipt_interval_ms=0)
    pairs = []
    async with trio.open_nursery() as nursery:
        for name in ("n1", "n2"):
            runtime = NodeRuntime(name, config, address=f"{name}.http:8848")
            links = PeerLinks(
                PeerLinkConfig(name, f"{name}.http:8848", (), SECRET, reconnect_interval_ms=50),
                on_messages=runtime.on_messages,
                on_connected=runtime.on_connected,
                on_send_failed=runtime.on_send_failed,
            )
            runtime.transport = links
            await nursery.start(runtime.run)
            port = await nursery.start(links.serve, "127.0.0.1", 0)
            pairs.append((runtime, links, port))
        for (_, links, _), (_, _, other_port) in zip(pairs, reversed(pairs), strict=True):
            links.add_peer_address(f"127.0.0.1:{other_port}")
        with trio.fail_after(30):
            for runtime, _, _ in pairs:
                await runtime.ready_event.wait()
        await wait_for(lambda: all(len(r.node.live_members()) == 2 for r, _, _ in pairs))
        yield [(runtime, links) for runtime, links, _ in pairs]
        nursery.cancel_scope.cancel()


def keys_owned_by(runtime: NodeRuntime, count: int = 1) -> list[ServiceKey]:
    keys = [ServiceKey("public", "DEFAULT_GROUP", f"svc-{i}") for i in range(100 * count)]
    owned = [key for key in keys if runtime.node.owner_of(key) == runtime.node.node_id][:count]
    assert len(owned) == count, f"not {count} keys owned by {runtime.node.node_id}"
    return owned


async def test_a_batch_of_forwards_gets_every_reply_right() -> None:
    async with linked_runtimes() as [(n1, links1), (n2, links2)]:
        [key] = keys_owned_by(n2)
        requests: list[ClientRequest] = [Register(key, make_instance("10.9.0.1", 9000 + i)) for i in range(BATCH)]
        # Among them, writes whose answers differ: a failing one (an update of an unknown instance that must
        # exist), a beat of an unknown instance (20404), a beat of an instance registered before the batch.
        # (Tasks started together run in no set order: no request depends on another of the batch.)
        assert await n1.submit(Register(key, make_instance("10.9.9.7", 3))) == Result(200, "ok")
        requests[7] = UpdateInstance(key, "DEFAULT", "10.9.9.9", 1, {"weight": 2.0}, must_exist=True)
        requests[11] = Beat(key, "DEFAULT", "10.9.9.8", 2)
        requests[30] = Beat(key, "DEFAULT", "10.9.9.7", 3)
        results: dict[int, Result] = {}

        async def submit(i: int) -> None:
            results[i] = await n1.submit(requests[i])

        sent_before = links1.statistics()
        async with trio.open_nursery() as nursery:
            for i in range(BATCH):  # all started in one loop iteration: they queue together
                nursery.start_soon(submit, i)

        assert n1.node.statistics().forwards_sent == BATCH + 1
        assert n1.node.statistics().forward_fallbacks == 0
        assert n2.node.statistics().forwards_received == BATCH + 1
        for i, result in results.items():
            if i == 7:
                assert result.status == 400
                assert "10.9.9.9:1" in str(result.body)
            elif i == 11:
                assert result.status == 200
                assert isinstance(result.body, dict) and result.body["code"] == CODE_RESOURCE_NOT_FOUND
            elif i == 30:
                assert result.status == 200
                assert isinstance(result.body, dict) and result.body["code"] == 10200
            else:
                assert result == Result(200, "ok"), (i, result)
        assert sorted(results) == list(range(BATCH))
        # The forwards went in fewer frames than messages, and so did the replies.
        sent = links1.statistics()
        forwards_frames = sent.frames_sent - sent_before.frames_sent
        assert sent.messages_sent - sent_before.messages_sent >= BATCH
        assert forwards_frames < BATCH // 2, forwards_frames
        replies = links2.statistics()
        assert replies.messages_sent > replies.frames_sent
        # Every registration (not the failing update, nor the beats) reached both nodes.
        registered = {3} | {r.instance.port for r in requests if isinstance(r, Register)}
        for runtime in (n1, n2):
            await wait_for(lambda runtime=runtime: ports(runtime, key) == registered)  # type: ignore[misc]


def ports(runtime: NodeRuntime, key: ServiceKey) -> set[int]:
    view = runtime.node.view(key)
    return set() if view is None else {inst.port for inst in view.instances}


# ------------------------------------------------------------------------------------------------
# CPU per forwarded registration (run this module as a script)
# ------------------------------------------------------------------------------------------------


async def _measure(count: int, concurrency: int, profile: str | None) -> None:
    """``count`` registrations submitted on the node that does not own their service, ``concurrency`` at a
    time, over a real link: the CPU time of this process (both nodes) per registration."""
    import cProfile
    import time

    async with linked_runtimes() as [(n1, links1), (n2, _)]:
        keys = keys_owned_by(n2, 64)
        next_port = iter(range(count))

        async def client() -> None:
            for i in next_port:
                ip = f"10.{i // 62500}.{i // 250 % 250}.{i % 250}"
                result = await n1.submit(Register(keys[i % len(keys)], make_instance(ip, 80)))
                assert result.status == 200, result

        profiler = cProfile.Profile() if profile else None
        started, cpu_started = time.perf_counter(), time.process_time()
        if profiler:
            profiler.enable()
        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(client)
        if profiler:
            profiler.disable()
            profiler.dump_stats(profile)
        cpu = time.process_time() - cpu_started
        elapsed = time.perf_counter() - started
        stats = links1.statistics()
        print(
            f"{count} forwarded registrations, {concurrency} at a time: {count / elapsed:,.0f}/s, "
            f"CPU {cpu / count * 1e6:.1f} us per registration (both nodes); "
            f"{stats.messages_sent / max(1, stats.frames_sent):.1f} messages per frame from the forwarder"
        )


if __name__ == "__main__":
    import sys

    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    prof = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--profile=")), None)
    trio.run(_measure, int(args[0]) if args else 20_000, int(args[1]) if len(args) > 1 else 48, prof)
