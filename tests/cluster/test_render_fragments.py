"""A big service's ``hosts`` array is kept as runs of hosts, of which a change joins again only those it touched
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

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.api import render as render_module
from cluster.api.hostscache import FRAGMENT_MIN_HOSTS, RUN_HOSTS
from cluster.api.render import _JSON, ListQuery, ListRenderer
from distro.config import DistroConfig
from distro.model import (
    META_BEAT_INTERVAL,
    META_BEAT_TIMEOUT,
    META_DELETE_TIMEOUT,
    META_ID_GENERATOR,
    Instance,
    make_instance,
)
from distro.node import DistroNode
from distro.requests import Register
from distro.views import ServiceView
from tests.client.support import InProcessCluster, InProcessNode
from tests.cluster.bigservice import KEY, change_at_random, ip_of, register

GUARD = 60


def hosts_of(body: bytes) -> list[dict[str, object]]:
    hosts = json.loads(body)["hosts"]
    assert isinstance(hosts, list)
    return hosts


def current_view(node: InProcessNode) -> ServiceView:
    view = node.runtime.node.view(KEY)
    assert view is not None
    return view


async def test_joined_arrays_match_a_fresh_render_through_random_changes() -> None:
    rng = random.Random(7)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            node = (await InProcessCluster(1).start(nursery)).nodes[0]
            renderer = ListRenderer(node.runtime)
            count = RUN_HOSTS * 3 + 5
            for i in range(count):
                await register(node, i, metadata={"v": "0"})
            queries = [ListQuery(KEY), ListQuery(KEY, java=True), ListQuery(KEY, ("A",)),
                       ListQuery(KEY, healthy_only=True), ListQuery(KEY, ("B",), java=True)]
            for step in range(60):
                # one change, several scattered ones, or a block of neighbours (a whole run) at once
                changes = {"metadata": {"v": str(step)}, "weight": 1.0 + step % 3, "healthy": step % 4 != 0}
                await change_at_random(node, rng, count, step, changes)
                for query in rng.sample(queries, 3):
                    fresh = ListRenderer(node.runtime)
                    body = renderer.render(query)
                    assert hosts_of(body) == hosts_of(fresh.render(query)), (step, query)
                    joined = b"".join(renderer.render_parts(query))  # the same body, but for lastRefTime
                    assert joined.partition(b'"hosts":')[2] == body.partition(b'"hosts":')[2]
                runs = renderer.hosts_cache.runs(current_view(node), False)
                assert all(0 < len(run[0]) < 2 * RUN_HOSTS for run in runs), [len(run[0]) for run in runs]
            nursery.cancel_scope.cancel()


async def test_a_change_joins_again_only_the_run_that_holds_it_and_counts_runs() -> None:
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            node = (await InProcessCluster(1).start(nursery)).nodes[0]
            renderer = ListRenderer(node.runtime)
            count = RUN_HOSTS * 4
            for i in range(count):
                await register(node, i)
            renderer.render(ListQuery(KEY))
            before = renderer.hosts_cache.runs(current_view(node), False)
            assert [len(run[0]) for run in before] == [RUN_HOSTS] * 4
            kept_bytes = renderer.hosts_cache.size_bytes
            body_bytes = sum(len(run[2]) for run in before)
            # the runs' bytes, and the kept body that is made of them counted once: not twice
            assert body_bytes < kept_bytes < 1.2 * body_bytes

            changed_ip = next(inst.ip for inst in before[2][0][5:])  # a host inside the third run
            i = next(i for i in range(count) if ip_of(i) == changed_ip)
            await register(node, i, metadata={"changed": "yes"})
            parts = renderer.render_parts(ListQuery(KEY))
            after = renderer.hosts_cache.runs(current_view(node), False)
            assert [a is b for a, b in zip(before, after, strict=True)] == [True, True, False, True]
            # the runs are sent as they are kept: [, run, ",", run, ..., ]
            assert [part for part in parts if any(part is run[2] for run in after)] == [run[2] for run in after]
            changed = next(h for h in hosts_of(b"".join(parts)) if h["ip"] == changed_ip)
            assert changed["metadata"] == {"changed": "yes"}

            await node.runtime.submit(Register(KEY, make_instance("10.0.0.0", 1, cluster="A")))  # sorts first
            renderer.render(ListQuery(KEY))
            shifted = renderer.hosts_cache.runs(current_view(node), False)
            assert [a is b for a, b in zip(after[1:], shifted[1:], strict=True)] == [True] * 3  # not moved along
            assert len(shifted[0][0]) == RUN_HOSTS + 1  # one host is too few for a run: it joins the next
            nursery.cancel_scope.cancel()


async def test_runs_stay_within_the_cache_bound() -> None:
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            node = (await InProcessCluster(1).start(nursery)).nodes[0]
            for i in range(FRAGMENT_MIN_HOSTS * 2):
                await register(node, i, metadata={"pad": "x" * 500})
            small = ListRenderer(node.runtime, cache_max_bytes=100_000)  # the array is about 90 KB
            body = small.render(ListQuery(KEY))
            assert len(hosts_of(body)) == FRAGMENT_MIN_HOSTS * 2
            assert small.hosts_cache.size_bytes <= 100_000
            assert small.hosts_cache.runs(current_view(node), False) == []  # over a quarter of the bound: not kept
            assert hosts_of(small.render(ListQuery(KEY))) == hosts_of(body)
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


async def test_prepare_renders_a_cold_big_list_in_slices_that_the_render_then_uses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(render_module, "PREPARE_SLICE_HOSTS", 40)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            node = (await InProcessCluster(1).start(nursery)).nodes[0]
            for i in range(200):
                await register(node, i)
            renderer = ListRenderer(node.runtime)
            rendered: list[int] = []
            original = renderer._host_fragments

            def counting(hosts: list[Instance], key: object, name: str) -> list[bytes]:
                hosts = list(hosts)
                rendered.append(len(hosts))
                return original(hosts, key, name)  # type: ignore[arg-type]

            monkeypatch.setattr(renderer, "_host_fragments", counting)
            others = 0

            async def other_task() -> None:
                nonlocal others
                while True:
                    await trio.lowlevel.checkpoint()
                    others += 1

            async with trio.open_nursery() as inner:
                inner.start_soon(other_task)
                await trio.lowlevel.checkpoint()
                others = 0
                await renderer.prepare(ListQuery(KEY))
                inner.cancel_scope.cancel()
            assert rendered == [40] * 5 and others >= 4  # five slices, the event loop ran between them
            await register(node, 7, metadata={"changed": "meanwhile"})  # a change after prepare
            body = renderer.render(ListQuery(KEY))
            assert rendered[5:] == [1]  # only the changed host is rendered by the render itself
            assert hosts_of(body) == hosts_of(ListRenderer(node.runtime).render(ListQuery(KEY)))
            await renderer.prepare(ListQuery(KEY))  # kept now: nothing to prepare
            await renderer.prepare(ListQuery(KEY, ("A",)))  # a filtered form reads the kept runs
            assert rendered[6:] == []
            nursery.cancel_scope.cancel()
