"""UDP push: a subscriber that behaves like the Nacos Java client gets pushes, acks them, and a push
nobody acks is sent again. Real ``distro-node`` processes where the CLI allows it; in-process nodes (memory
peer transport, real HTTP and UDP sockets) for the knobs it does not expose (TTL, bounds, retries)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import trio

from cluster.api.push import PushConfig, parse_ack, push_capable
from tests.client.support import (
    NS,
    InProcessCluster,
    NodeProcesses,
    decode_push,
    metric,
    register,
    unique,
)
from tests.polling import wait_for

JAVA_UA = "Nacos-Java-Client:v1.4.2"
GUARD = 30


@pytest.fixture(scope="module")
def nodes() -> Iterator[NodeProcesses]:
    with NodeProcesses(3) as cluster:
        yield cluster


class JavaLikeSubscriber:
    """A UDP socket plus list calls with udpPort/clientIP and the Java client's User-Agent."""

    def __init__(self, http: httpx.AsyncClient, url: str, service: str, agent: str = JAVA_UA) -> None:
        self.http = http
        self.url = url
        self.service = service
        self.agent = agent
        self.sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)

    async def open(self) -> JavaLikeSubscriber:
        await self.sock.bind(("127.0.0.1", 0))
        return self

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    async def list(self) -> dict[str, object]:
        response = await self.http.get(
            f"{self.url}{NS}/instance/list",
            params={"serviceName": self.service, "udpPort": str(self.port), "clientIP": "127.0.0.1"},
            headers={"User-Agent": self.agent},
        )
        assert response.status_code == 200
        body = response.json()
        assert isinstance(body, dict)
        return body

    async def receive(self) -> tuple[dict[str, object], tuple[str, int], bytes]:
        data, address = await self.sock.recvfrom(65536)
        return decode_push(data), address, data

    async def receive_hosts(self, count: int) -> dict[str, object]:
        """Receive (and ack) pushes until one lists ``count`` hosts; that packet."""
        while True:
            packet, address, _ = await self.receive()
            await self.ack(packet, address)
            data = json.loads(str(packet["data"]))
            if len(data["hosts"]) == count:
                return packet

    async def ack(self, packet: dict[str, object], address: tuple[str, int], *, as_string: bool = True) -> None:
        ref = packet["lastRefTime"]
        ack = {"type": "push-ack", "lastRefTime": str(ref) if as_string else ref, "data": ""}
        await self.sock.sendto(json.dumps(ack).encode(), address)

    def close(self) -> None:
        self.sock.close()


async def push_state(http: httpx.AsyncClient, url: str) -> dict[str, float]:
    state = (await http.get(f"{url}{NS}/operator/push/state")).json()
    assert isinstance(state, dict)
    return state


# ------------------------------------------------------------------------------------------------
# real nodes
# ------------------------------------------------------------------------------------------------
async def test_java_like_subscriber_gets_replicated_change_and_acks(nodes: NodeProcesses) -> None:
    service = unique("push-java")
    with trio.fail_after(GUARD):
        async with httpx.AsyncClient(trust_env=False) as http:
            sub = await JavaLikeSubscriber(http, nodes.urls[1], service).open()
            body = await sub.list()
            assert body["cacheMillis"] == 10000  # push subscription taken
            before = await push_state(http, nodes.urls[1])
            # written through node 0, replicated to node 1, pushed by node 1
            await register(http, nodes.urls[0], service, "10.1.0.1", 8080, metadata='{"zone":"a"}')
            packet, address, raw = await sub.receive()
            assert raw[:1] == b"{"  # small: not compressed
            assert packet["type"] == "dom"
            assert isinstance(packet["lastRefTime"], int)
            data = json.loads(str(packet["data"]))
            assert data["cacheMillis"] == 10000
            assert data["dom"] == f"DEFAULT_GROUP@@{service}"  # the Java client gets the grouped name
            assert [(h["ip"], h["port"], h["metadata"]) for h in data["hosts"]] == [("10.1.0.1", 8080, {"zone": "a"})]
            assert data["checksum"]
            await sub.ack(packet, address)

            async def acked() -> bool:
                return (await push_state(http, nodes.urls[1]))["succeed"] > before["succeed"]

            await wait_for(acked, what="ack counted")
            assert await metric(http, nodes.urls[1], "distro_push_acked_total") >= 1
            assert await metric(http, nodes.urls[1], "distro_push_subscribers") >= 1
            subscribers = (await http.get(f"{nodes.urls[1]}{NS}/service/subscribers",
                                          params={"serviceName": service})).json()
            assert subscribers["count"] == 1
            assert subscribers["subscribers"][0]["addrStr"] == f"127.0.0.1:{sub.port}"
            assert subscribers["subscribers"][0]["agent"] == JAVA_UA
            sub.close()


async def test_unacked_push_is_retransmitted_then_acked_as_integer(nodes: NodeProcesses) -> None:
    service = unique("push-retry")
    url = nodes.urls[2]
    with trio.fail_after(GUARD):
        async with httpx.AsyncClient(trust_env=False) as http:
            sub = await JavaLikeSubscriber(http, url, service).open()
            await sub.list()
            before = await push_state(http, url)
            await register(http, nodes.urls[0], service, "10.1.0.2", 8080)
            first, _, _ = await sub.receive()  # not acked
            again, address, _ = await sub.receive()
            assert again["lastRefTime"] == first["lastRefTime"]
            assert again["data"] == first["data"]
            await sub.ack(again, address, as_string=False)

            async def settled() -> bool:
                state = await push_state(http, url)
                return state["succeed"] > before["succeed"] and state["pending"] == 0

            await wait_for(settled)
            state = await push_state(http, url)
            assert state["retransmitted"] > before["retransmitted"]
            sub.close()


async def test_large_push_is_gzipped(nodes: NodeProcesses) -> None:
    service = unique("push-gzip")
    with trio.fail_after(GUARD):
        async with httpx.AsyncClient(trust_env=False) as http:
            for i in range(8):
                await register(http, nodes.urls[0], service, f"10.2.0.{i}", 8080,
                               metadata=json.dumps({"blob": "x" * 200, "i": str(i)}))
            sub = await JavaLikeSubscriber(http, nodes.urls[1], service).open()
            await wait_for(lambda: _has_hosts(http, nodes.urls[1], service, 8))
            await sub.list()
            await register(http, nodes.urls[0], service, "10.2.0.99", 8080)
            packet, address, raw = await sub.receive()
            assert raw[:2] == b"\x1f\x8b"
            assert len(raw) < len(json.dumps(packet))
            assert len(json.loads(str(packet["data"]))["hosts"]) == 9
            await sub.ack(packet, address)
            sub.close()


async def _has_hosts(http: httpx.AsyncClient, url: str, service: str, count: int) -> bool:
    response = await http.get(f"{url}{NS}/instance/list", params={"serviceName": service})
    return len(response.json()["hosts"]) == count


async def test_garbage_udp_is_counted_and_push_keeps_working(nodes: NodeProcesses) -> None:
    service = unique("push-garbage")
    url = nodes.urls[0]
    with trio.fail_after(GUARD):
        async with httpx.AsyncClient(trust_env=False) as http:
            state = await push_state(http, url)
            target = ("127.0.0.1", int(state["udpPort"]))
            junk = [b"", b"\x00" * 10, b"\x1f\x8b" + b"x" * 100, b"{", b"[]", b'{"type":"push-ack"}',
                    b'{"type":"push-ack","lastRefTime":"abc"}', b'{"type":"push-ack","lastRefTime":true}',
                    b'{"type":"push-ack","lastRefTime":"\xc2\xb2"}', b'{"type":"dom","data":1}',
                    b"[" * 5000, b"\xff\xfe" * 3000, b'{"type":"push-ack","lastRefTime":"1"}']
            with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as raw:
                for payload in junk:
                    await raw.sendto(payload, target)
            await wait_for(lambda: _metric_at_least(http, url, "distro_push_garbage_packets_total", 10))
            assert await metric(http, url, "distro_push_unknown_acks_total") >= 1
            sub = await JavaLikeSubscriber(http, url, service).open()
            await sub.list()
            await register(http, nodes.urls[1], service, "10.3.0.1", 8080)
            await sub.receive_hosts(1)
            sub.close()


async def _metric_at_least(http: httpx.AsyncClient, url: str, name: str, value: float) -> bool:
    return await metric(http, url, name) >= value


async def test_agents_that_cannot_receive_pushes_get_3000(nodes: NodeProcesses) -> None:
    service = unique("push-agents")
    url = nodes.urls[0]
    with trio.fail_after(GUARD):
        async with httpx.AsyncClient(trust_env=False) as http:
            for agent in ("curl/8.0", "Nacos-C-Client:v1.0.11", "Nacos-Python-Client:v0.1.17", ""):
                sub = await JavaLikeSubscriber(http, url, service, agent=agent).open()
                assert (await sub.list())["cacheMillis"] == 3000
                sub.close()
            subscribers = (await http.get(f"{url}{NS}/service/subscribers", params={"serviceName": service})).json()
            assert subscribers["count"] == 0
            # clientIP does not say where pushes go (the caller's own address does): a bad one changes nothing
            response = await http.get(f"{url}{NS}/instance/list",
                                      params={"serviceName": service, "udpPort": "5", "clientIP": "not-an-ip"},
                                      headers={"User-Agent": JAVA_UA})
            assert response.json()["cacheMillis"] == 10000
            subscribers = (await http.get(f"{url}{NS}/service/subscribers", params={"serviceName": service})).json()
            assert [s["addrStr"] for s in subscribers["subscribers"]] == ["127.0.0.1:5"]
            for agent in ("Nacos-Go-Client:v1.0.0", "Nacos-CSharp-Client:v0.9.0", "Distro-Python-Client:v0.1.0"):
                sub = await JavaLikeSubscriber(http, url, service, agent=agent).open()
                assert (await sub.list())["cacheMillis"] == 10000
                sub.close()


# ------------------------------------------------------------------------------------------------
# in-process nodes (knobs the CLI does not expose)
# ------------------------------------------------------------------------------------------------
async def test_subscriber_that_stops_listing_is_forgotten() -> None:
    config = PushConfig(subscriber_ttl_ms=300, sweep_interval_ms=50)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery, httpx.AsyncClient(trust_env=False) as http:
            cluster = await InProcessCluster(1, push=config).start(nursery)
            node = cluster.nodes[0]
            sub = await JavaLikeSubscriber(http, node.url, "ttl-svc").open()
            await sub.list()
            assert node.push.subscriber_count == 1
            await wait_for(lambda: node.push.subscriber_count == 0)
            assert node.push.stats.expired_subscribers == 1
            await sub.list()  # listing again subscribes again
            assert node.push.subscriber_count == 1
            sub.close()
            nursery.cancel_scope.cancel()


async def test_subscribers_are_bounded() -> None:
    config = PushConfig(max_subscribers=2)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery, httpx.AsyncClient(trust_env=False) as http:
            cluster = await InProcessCluster(1, push=config).start(nursery)
            node = cluster.nodes[0]
            subs = [await JavaLikeSubscriber(http, node.url, "bounded").open() for _ in range(3)]
            assert [(await s.list())["cacheMillis"] for s in subs] == [10000, 10000, 3000]
            assert (await subs[0].list())["cacheMillis"] == 10000  # a refresh is not a new subscriber
            assert node.push.subscriber_count == 2
            assert node.push.stats.refused_subscribers == 1
            for s in subs:
                s.close()
            nursery.cancel_scope.cancel()


async def test_push_nobody_acks_fails_after_max_tries() -> None:
    config = PushConfig(max_tries=3, retry_interval_ms=30)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery, httpx.AsyncClient(trust_env=False) as http:
            cluster = await InProcessCluster(2, push=config).start(nursery)
            node = cluster.nodes[1]
            sub = await JavaLikeSubscriber(http, node.url, "silent").open()
            await sub.list()
            await register(http, cluster.nodes[0].url, "silent", "10.4.0.1", 80)
            seqs = [(await sub.receive())[0]["lastRefTime"] for _ in range(3)]
            assert len(set(seqs)) == 1
            await wait_for(lambda: node.push.stats.failed == 1)
            assert node.push.stats.sent == 1
            assert node.push.stats.retransmitted == 2
            assert node.push.pending_count == 0
            sub.close()
            nursery.cancel_scope.cancel()


async def test_burst_of_changes_is_coalesced_and_last_push_is_complete() -> None:
    config = PushConfig(push_delay_ms=50)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery, httpx.AsyncClient(trust_env=False) as http:
            cluster = await InProcessCluster(2, push=config).start(nursery)
            node = cluster.nodes[1]
            sub = await JavaLikeSubscriber(http, node.url, "burst").open()
            await sub.list()
            async with trio.open_nursery() as writers:
                for i in range(20):
                    writers.start_soon(register, http, cluster.nodes[0].url, "burst", f"10.5.0.{i}", 80)
            await sub.receive_hosts(20)
            assert node.push.stats.sent < 20
            sub.close()
            nursery.cancel_scope.cancel()


async def test_newer_push_supersedes_unacked_one() -> None:
    config = PushConfig(retry_interval_ms=5_000)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery, httpx.AsyncClient(trust_env=False) as http:
            cluster = await InProcessCluster(1, push=config).start(nursery)
            node = cluster.nodes[0]
            sub = await JavaLikeSubscriber(http, node.url, "supersede").open()
            await sub.list()
            await register(http, node.url, "supersede", "10.6.0.1", 80)
            first, _, _ = await sub.receive()
            await register(http, node.url, "supersede", "10.6.0.2", 80)
            second, address, _ = await sub.receive()
            assert second["lastRefTime"] != first["lastRefTime"]
            assert node.push.stats.superseded == 1
            assert node.push.pending_count == 1
            await sub.ack(second, address)
            await wait_for(lambda: node.push.pending_count == 0)
            sub.close()
            nursery.cancel_scope.cancel()


def test_agent_versions() -> None:
    assert push_capable("Nacos-Java-Client:v1.4.2")
    assert push_capable("Nacos-Java-Client:v0.1.0")
    assert push_capable("Nacos-Java-Client:v2.0.0-SNAPSHOT")
    assert not push_capable("Nacos-Java-Client:v0.0.9")
    assert push_capable("Nacos-DNS:v0.4.3") and not push_capable("Nacos-DNS:v0.4.2")
    assert push_capable("Nacos-C-Client:v1.0.12") and not push_capable("Nacos-C-Client:v1.0.9")
    assert push_capable("Nacos-Go-Client:v0.1.0") and push_capable("Nacos-CSharp-Client:v0.9.0")
    assert not push_capable("Nacos-CSharp-Client:v0.8.9")
    assert push_capable("Distro-Python-Client:v0.1.0")
    assert not push_capable("Nacos-Python-Client:v0.1.17")
    assert not push_capable("")
    assert not push_capable("Nacos-Java-Client")


def test_ack_parsing() -> None:
    assert parse_ack(b'{"type":"push-ack","lastRefTime":"42","data":""}') == 42
    assert parse_ack(b'{"type":"push-ack","lastRefTime":42,"data":""}') == 42
    assert parse_ack(b'{"type": "push-ack", "lastRefTime":" 7 "}') == 7
    for bad in (b"", b"{", b"[]", b'{"type":"push-ack"}', b'{"type":"dump-ack","lastRefTime":"1"}',
                b'{"type":"push-ack","lastRefTime":true}', b'{"type":"push-ack","lastRefTime":"1e3"}',
                '{"type":"push-ack","lastRefTime":"²"}'.encode(), b'{"type":"push-ack","lastRefTime":null}',
                b"\xff" * 10, b"[" * 100_000):
        assert parse_ack(bad) is None
