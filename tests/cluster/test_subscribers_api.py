"""``service/subscribers`` across the cluster: three in-process nodes on a memory network, real HTTP.

- by default a node answers every node's subscribers (asked over the peer link), de-duplicated and paged;
- ``aggregation=false`` answers the node's own only;
- a peer that does not answer within the deadline is left out and the answer says ``partial``.
"""

from __future__ import annotations

from typing import Any

import httpx
import trio

from cluster.api.watch import WATCH_PATH
from distro.messages import SubscribersQuery
from tests.client.support import InProcessCluster
from tests.polling import wait_for

NS = "/nacos/v1/ns"
JAVA = {"User-Agent": "Nacos-Java-Client:v1.4.2"}


async def _subscribe(http: httpx.AsyncClient, url: str, service: str, udp_port: int, **extra: str) -> None:
    params = {"serviceName": service, "udpPort": str(udp_port), "clientIP": "127.0.0.1", **extra}
    response = await http.get(f"{url}{NS}/instance/list", params=params, headers=JAVA)
    assert response.json()["cacheMillis"] == 10000  # the subscription was taken


async def _subscribers(http: httpx.AsyncClient, url: str, service: str, **params: str) -> dict[str, Any]:
    response = await http.get(f"{url}{NS}/service/subscribers", params={"serviceName": service, **params})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_subscribers_are_aggregated_over_the_cluster() -> None:
    async with trio.open_nursery() as nursery, httpx.AsyncClient() as http:
        cluster = await InProcessCluster(3).start(nursery)
        urls = cluster.urls
        await _subscribe(http, urls[1], "subs", 40001)
        await _subscribe(http, urls[2], "subs", 40002, clusters="c1")
        await _subscribe(http, urls[2], "subs", 40002, clusters="c2")  # same client, two filters: one row
        await _subscribe(http, urls[2], "other", 40003)

        everywhere = await _subscribers(http, urls[0], "subs")
        assert (everywhere["count"], everywhere["partial"]) == (2, False)
        rows = sorted(everywhere["subscribers"], key=lambda r: r["port"])
        assert [(r["addrStr"], r["agent"], r["protocol"]) for r in rows] == [
            ("127.0.0.1:40001", JAVA["User-Agent"], "udp"), ("127.0.0.1:40002", JAVA["User-Agent"], "udp")
        ]
        assert {(r["namespaceId"], r["serviceName"]) for r in rows} == {("public", "DEFAULT_GROUP@@subs")}
        assert (await _subscribers(http, urls[0], "subs", aggregation="false"))["count"] == 0
        assert (await _subscribers(http, urls[2], "subs", aggregation="false"))["count"] == 1
        page = await _subscribers(http, urls[1], "subs", pageNo="2", pageSize="1")
        assert (page["count"], len(page["subscribers"])) == (2, 1)

        # n2 stops answering queries (up, but silent): n0 answers without it, and says so
        cluster.nodes[2].runtime.peer_handlers[SubscribersQuery] = lambda sender, message: None
        silent = await _subscribers(http, urls[0], "subs")
        assert (silent["count"], silent["partial"]) == (1, True)
        assert silent["subscribers"][0]["addrStr"] == "127.0.0.1:40001"
        metrics = (await http.get(f"{urls[0]}/metrics")).text
        assert "distro_subscribers_partial_answers_total 1" in metrics.splitlines()
        nursery.cancel_scope.cancel()


async def test_http_watchers_are_subscribers_while_they_wait() -> None:
    async with trio.open_nursery() as nursery, httpx.AsyncClient() as http:
        cluster = await InProcessCluster(2).start(nursery)
        urls = cluster.urls
        watch_params = {"serviceName": "watched", "checksum": "", "timeoutMs": "10000", "app": "shop"}

        async def watch() -> None:
            await http.get(f"{urls[1]}{WATCH_PATH}", params=watch_params, headers={"User-Agent": "distroreg/1"})

        nursery.start_soon(watch)

        async def listed() -> bool:
            body = await _subscribers(http, urls[0], "watched")
            return body["count"] == 1

        await wait_for(listed, what="the watch listed through the other node")
        (row,) = (await _subscribers(http, urls[0], "watched"))["subscribers"]
        assert (row["protocol"], row["agent"], row["app"], row["ip"]) == ("watch", "distroreg/1", "shop", "127.0.0.1")
        nursery.cancel_scope.cancel()


async def test_the_node_lists_grpc_subscribers_too() -> None:
    from cluster.node.settings import parse_settings
    from cluster.node.wiring import NodeServer

    server = NodeServer(parse_settings(["--port", "18860"]))
    assert server.grpc is not None
    sources = server.api.subscribers.sources
    assert server.grpc.subscriber_rows in sources and server.push.subscriber_rows in sources
