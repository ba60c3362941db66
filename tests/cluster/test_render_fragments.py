"""A big service's ``hosts`` array is joined from kept per-host fragments after a change
(cluster/api/render.py, cluster/api/hostscache.py), and the result is always what a renderer with nothing
kept would answer.

Real node runtime (one in-process node); the reference is a second ListRenderer over the same runtime
that has never rendered anything, so every host it answers is rendered fresh. The host objects themselves
are formatted straight into strings (``ListRenderer._host_fragments``): byte for byte what encoding the
host's dict (``_host``, which small services and protection still use) gives, whatever the fields hold.
"""

from __future__ import annotations

import json
import random

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.api.hostscache import FRAGMENT_MIN_HOSTS
from cluster.api.render import _JSON, ListQuery, ListRenderer
from distro.config import DistroConfig
from distro.model import (
    META_BEAT_INTERVAL,
    META_BEAT_TIMEOUT,
    META_DELETE_TIMEOUT,
    META_ID_GENERATOR,
    Instance,
    make_instance,
    service_key,
)
from distro.node import DistroNode
from distro.requests import Deregister, Register, UpdateInstance
from tests.client.support import InProcessCluster, InProcessNode

GUARD = 60
KEY = service_key(None, None, "big")


def hosts_of(body: bytes) -> list[dict[str, object]]:
    hosts = json.loads(body)["hosts"]
    assert isinstance(hosts, list)
    return hosts


async def register(node: InProcessNode, i: int, **fields: object) -> None:
    instance = make_instance(f"10.0.{i // 256}.{i % 256}", 8080, cluster=("A", "B")[i % 2], **fields)
    result = await node.runtime.submit(Register(KEY, instance))
    assert result.status == 200, result


async def test_joined_arrays_match_a_fresh_render_through_random_changes() -> None:
    rng = random.Random(7)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            node = (await InProcessCluster(1).start(nursery)).nodes[0]
            renderer = ListRenderer(node.runtime)
            count = FRAGMENT_MIN_HOSTS * 2
            for i in range(count):
                await register(node, i, metadata={"v": "0"})
            queries = [ListQuery(KEY), ListQuery(KEY, java=True), ListQuery(KEY, ("A",)),
                       ListQuery(KEY, healthy_only=True), ListQuery(KEY, ("B",), java=True)]
            for step in range(40):
                i = rng.randrange(count + 8)
                action = rng.choice(["update", "deregister", "register"])
                ip = f"10.0.{i // 256}.{i % 256}"
                if action == "update":
                    changes = {"metadata": {"v": str(step)}, "weight": 1.0 + step % 3, "healthy": step % 4 != 0}
                    await node.runtime.submit(UpdateInstance(KEY, ("A", "B")[i % 2], ip, 8080, changes))
                elif action == "deregister":
                    await node.runtime.submit(Deregister(KEY, ("A", "B")[i % 2], ip, 8080))
                else:
                    await register(node, i, metadata={"v": f"r{step}"})
                for query in rng.sample(queries, 3):
                    fresh = ListRenderer(node.runtime)
                    assert hosts_of(renderer.render(query)) == hosts_of(fresh.render(query)), (step, query)
            nursery.cancel_scope.cancel()


async def test_a_change_reuses_the_fragments_of_unchanged_hosts_and_counts_them() -> None:
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            node = (await InProcessCluster(1).start(nursery)).nodes[0]
            renderer = ListRenderer(node.runtime)
            for i in range(FRAGMENT_MIN_HOSTS + 10):
                await register(node, i)
            renderer.render(ListQuery(KEY))
            view = node.runtime.node.view(KEY)
            assert view is not None
            before = dict(renderer.hosts_cache.fragments(view, False))
            assert len(before) == FRAGMENT_MIN_HOSTS + 10
            kept_bytes = renderer.hosts_cache.size_bytes
            assert kept_bytes > sum(len(fragment) for _, fragment in before.values())

            await register(node, 3, metadata={"changed": "yes"})
            body = renderer.render(ListQuery(KEY))
            view = node.runtime.node.view(KEY)
            assert view is not None
            after = renderer.hosts_cache.fragments(view, False)
            reused = [key for key, (_, fragment) in after.items() if key in before and before[key][1] is fragment]
            assert len(reused) == FRAGMENT_MIN_HOSTS + 9  # every host but the one that changed
            changed = next(h for h in hosts_of(body) if h["ip"] == "10.0.0.3")
            assert changed["metadata"] == {"changed": "yes"}
            nursery.cancel_scope.cancel()


async def test_fragments_stay_within_the_cache_bound() -> None:
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            node = (await InProcessCluster(1).start(nursery)).nodes[0]
            for i in range(FRAGMENT_MIN_HOSTS * 2):
                await register(node, i, metadata={"pad": "x" * 500})
            small = ListRenderer(node.runtime, cache_max_bytes=100_000)  # the array is about 90 KB
            body = small.render(ListQuery(KEY))
            assert len(hosts_of(body)) == FRAGMENT_MIN_HOSTS * 2
            assert small.hosts_cache.size_bytes <= 100_000
            view = node.runtime.node.view(KEY)
            assert view is not None
            assert small.hosts_cache.fragments(view, False) == {}  # over a quarter of the bound: not kept
            nursery.cancel_scope.cancel()


class _Runtime:
    """What ListRenderer reads of a runtime: a real (never started) node, and the time."""

    def __init__(self) -> None:
        self.node = DistroNode("n1", DistroConfig(), 0)

    def now_ms(self) -> int:
        return 0


texts = st.text(max_size=8)
timing = st.sampled_from([META_BEAT_INTERVAL, META_BEAT_TIMEOUT, META_DELETE_TIMEOUT, META_ID_GENERATOR])
host_instances = st.builds(
    Instance,
    ip=st.sampled_from(["10.0.0.1", "host-a.example", "fe80::1", 'odd"ip\\']),
    port=st.integers(0, 65535),
    cluster=st.sampled_from(["DEFAULT", "A-1"]),
    weight=st.floats(0.0, 10000.0, allow_nan=False),
    healthy=st.booleans(),
    enabled=st.booleans(),
    metadata=st.dictionaries(timing | texts, st.sampled_from(["2000", "snowflake", "simple", "x"]) | texts,
                             max_size=4),
    assigned_id=st.sampled_from(["", "1234"]),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(host_instances, max_size=6), st.sampled_from(["big", "g@@big", "名\"x"]))
def test_host_fragments_are_byte_for_byte_the_encoded_host_objects(instances: list[Instance], name: str) -> None:
    renderer = ListRenderer(_Runtime())  # type: ignore[arg-type]
    expected = [_JSON.encode(renderer._host(inst, KEY, name)).encode() for inst in instances]
    assert renderer._host_fragments(instances, KEY, name) == expected
