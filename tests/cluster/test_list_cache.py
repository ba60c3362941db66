"""The instance/list body cache (cluster/api/render.py) is bounded in bytes, and cluster filters are
normalised so that names of clusters a service does not have cannot make new cache entries.

Issue 14, finding 1: ``clusters=DEFAULT,x<i>`` with ever-new ``i`` cached one copy of the service's list
per filter; 60 requests against a 2.4 MB service pinned about 140 MB.
"""

from __future__ import annotations

import gc
import json
import tracemalloc

import httpx
import trio

from distro.model import make_instance, service_key
from distro.requests import Register
from tests.client.support import NS, InProcessCluster, InProcessNode, metric

GUARD = 60


async def fill(
    node: InProcessNode, service: str, count: int, *, clusters: tuple[str, ...] = ("DEFAULT",), pad: int = 1000
) -> None:
    """``count`` instances with ``pad`` bytes of metadata each, spread over ``clusters``."""
    key = service_key(None, None, service)
    for i in range(count):
        instance = make_instance(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", 8080,
                                 cluster=clusters[i % len(clusters)], metadata={"pad": "x" * pad})
        result = await node.runtime.submit(Register(key, instance))
        assert result.status == 200, result


async def retained_bytes_after(requests: int, http: httpx.AsyncClient, url: str, params: dict[str, str]) -> int:
    """Bytes still allocated after ``requests`` list calls, the i-th with ``{i}`` in its values filled in."""
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(requests):
        response = await http.get(f"{url}{NS}/instance/list", params={k: v.format(i=i) for k, v in params.items()})
        assert response.status_code == 200
    gc.collect()
    return tracemalloc.get_traced_memory()[0] - before


async def test_filters_naming_unknown_clusters_do_not_pin_new_copies() -> None:
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery, httpx.AsyncClient(trust_env=False) as http:
            node = (await InProcessCluster(1).start(nursery)).nodes[0]
            await fill(node, "big", 300)
            body = (await http.get(f"{node.url}{NS}/instance/list", params={"serviceName": "big"})).content
            assert len(body) > 300_000
            tracemalloc.start()
            try:
                retained = await retained_bytes_after(
                    60, http, node.url, {"serviceName": "big", "clusters": "DEFAULT,x{i}"}
                )
            finally:
                tracemalloc.stop()
            # one more copy at most (the DEFAULT-only form), not 60
            assert retained < 2 * len(body), (retained, len(body))
            listed = await http.get(f"{node.url}{NS}/instance/list", params={"serviceName": "big", "clusters": "x1,DEFAULT"})
            assert listed.json()["clusters"] == "x1,DEFAULT"  # the answer still echoes the filter as asked
            assert len(listed.json()["hosts"]) == 300
            unknown = await http.get(f"{node.url}{NS}/instance/list", params={"serviceName": "big", "clusters": "x1"})
            assert unknown.json()["hosts"] == []
            nursery.cancel_scope.cancel()


async def test_the_cache_stays_within_its_bytes_and_says_so_on_metrics() -> None:
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery, httpx.AsyncClient(trust_env=False) as http:
            cluster = await InProcessCluster(1, flags=["--list-cache-bytes", "200000"]).start(nursery)
            node = cluster.nodes[0]
            clusters = tuple(f"c{i}" for i in range(8))
            await fill(node, "wide", 400, clusters=clusters, pad=100)  # 8 real clusters: 255 filters, 25 to 200 KB
            for mask in range(1, 256):
                chosen = ",".join(c for bit, c in enumerate(clusters) if mask >> bit & 1)
                for healthy_only in ("false", "true"):
                    params = {"serviceName": "wide", "clusters": chosen, "healthyOnly": healthy_only}
                    response = await http.get(f"{node.url}{NS}/instance/list", params=params)
                    assert len(json.loads(response.content)["hosts"]) == 50 * chosen.count("c")
                    assert await metric(http, node.url, "distro_list_cache_bytes") <= 200_000
            assert await metric(http, node.url, "distro_list_cache_max_bytes") == 200_000
            assert await metric(http, node.url, "distro_list_cache_evictions_total") > 0
            nursery.cancel_scope.cancel()
