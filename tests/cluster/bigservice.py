"""A big service for the list renderer's tests (tests/cluster/test_render_fragments.py, test_list_gzip.py):
host ``i`` is ``10.0.<i // 256>.<i % 256>:8080`` in cluster A or B (alternately), registered on one in-process
node, and random changes to it that touch one host, a few scattered ones or a block of neighbours (a whole
run of the hosts cache, cluster/api/hostscache.py) at once."""

from __future__ import annotations

import random

from cluster.api.hostscache import RUN_HOSTS
from distro.model import make_instance, service_key
from distro.requests import Deregister, Register, UpdateInstance
from tests.client.support import InProcessNode

KEY = service_key(None, None, "big")


def ip_of(i: int) -> str:
    """Host ``i``'s address."""
    return f"10.0.{i // 256}.{i % 256}"


def cluster_of(i: int) -> str:
    """Host ``i``'s cluster."""
    return ("A", "B")[i % 2]


async def register(node: InProcessNode, i: int, **fields: object) -> None:
    """Register (or register again) host ``i`` with ``fields``."""
    instance = make_instance(ip_of(i), 8080, cluster=cluster_of(i), **fields)
    result = await node.runtime.submit(Register(KEY, instance))
    assert result.status == 200, result


async def change_at_random(
    node: InProcessNode, rng: random.Random, count: int, step: int, changes: dict[str, object]
) -> None:
    """Step ``step`` of a random walk over a service of ``count`` hosts: one host, a few scattered ones or a
    block of neighbours, picked among ``count + 8`` (so some are not registered), all updated with
    ``changes``, deregistered, or registered again (metadata ``v`` = ``r<step>``)."""
    first = rng.randrange(count + 8)
    width = rng.choice([1, 1, 3, RUN_HOSTS + 20])
    picked = range(first, first + width) if width > 3 else [rng.randrange(count + 8) for _ in range(width)]
    action = rng.choice(["update", "deregister", "register"])
    for i in picked:
        if action == "update":
            await node.runtime.submit(UpdateInstance(KEY, cluster_of(i), ip_of(i), 8080, changes))
        elif action == "deregister":
            await node.runtime.submit(Deregister(KEY, cluster_of(i), ip_of(i), 8080))
        else:
            await register(node, i, metadata={"v": f"r{step}"})
