"""SDK pieces without a registry: the push receiver (acks, gzip, garbage), snapshot parsing, the disk cache,
weighted choice, and the load balancer's handling of dead instances (fake inner transport)."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import httpx
import pytest
import trio

from distroreg import DiskCache, Instance, LoadBalancedTransport, NamingClient, ServiceInfo
from distroreg.model import choose_by_weight
from tests.polling import wait_for

GUARD = 10
LIST = {
    "name": "DEFAULT_GROUP@@svc", "groupName": "DEFAULT_GROUP", "clusters": "", "cacheMillis": 10000,
    "lastRefTime": 1, "checksum": "abc",
    "hosts": [{"ip": "10.0.0.1", "port": 80, "weight": 2.0, "healthy": True, "enabled": True,
               "clusterName": "DEFAULT", "metadata": {"a": "b"}, "instanceId": "x", "serviceName": "svc"}],
}


async def test_push_receiver_acks_dom_and_gzip_and_survives_garbage() -> None:
    with trio.fail_after(GUARD):
        async with NamingClient(["127.0.0.1:1"], push="udp", client_ip="127.0.0.1") as naming:
            address = naming.udp_address
            assert address is not None
            with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as server:
                await server.bind(("127.0.0.1", 0))
                for junk in (b"", b"\x1f\x8b" + b"\x00" * 20, b"[" * 50_000, b"{", b"\xff\xfe", b"null"):
                    await server.sendto(junk, address)
                packet = json.dumps({"type": "dom", "data": json.dumps(LIST), "lastRefTime": 77}).encode()
                await server.sendto(packet, address)
                ack, _ = await server.recvfrom(65536)
                assert json.loads(ack) == {"type": "push-ack", "lastRefTime": "77", "data": ""}
                await server.sendto(gzip.compress(packet.replace(b"77", b"78")), address)
                ack, _ = await server.recvfrom(65536)
                assert json.loads(ack)["lastRefTime"] == "78"
                await server.sendto(json.dumps({"type": "dump", "lastRefTime": 79}).encode(), address)
                ack, _ = await server.recvfrom(65536)
                assert json.loads(ack)["type"] == "dump-ack"
                await server.sendto(json.dumps({"type": "what", "lastRefTime": 80}).encode(), address)
                ack, _ = await server.recvfrom(65536)
                assert json.loads(ack)["type"] == "unknown-ack"
            assert naming.stats.pushes_received == 2
            await wait_for(lambda: naming.stats.pushes_acked == 4)  # counted once the ack is sent


def test_service_info_parsing() -> None:
    info = ServiceInfo.from_json(json.dumps(LIST))
    assert (info.name, info.group, info.grouped_name, info.checksum, info.cache_millis) == (
        "svc", "DEFAULT_GROUP", "DEFAULT_GROUP@@svc", "abc", 10000)
    host = info.hosts[0]
    assert (host.ip, host.port, host.weight, host.metadata, host.address) == ("10.0.0.1", 80, 2.0, {"a": "b"},
                                                                              "10.0.0.1:80")
    assert hash(host) == hash(Instance("10.0.0.1", 80))
    bare = ServiceInfo.from_json('{"dom":"svc","hosts":[{"ip":"::1","port":1,"valid":false}]}')
    assert bare.group == "DEFAULT_GROUP" and not bare.hosts[0].healthy and bare.hosts[0].address == "[::1]:1"
    for bad in ("[]", "{}", '{"name":"x","hosts":{"a":1}}', '{"name":"x","hosts":[{"port":1}]}',
                '{"name":"x","hosts":[],"lastRefTime":[1]}', "[" * 100_000, "nope"):
        with pytest.raises(ValueError):
            ServiceInfo.from_json(bad)


def test_disk_cache_round_trip(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, "dev/ns")
    assert cache.read("G@@s", "") is None
    cache.write("G@@s", "c1,c2", '{"a":1}')
    cache.write("G@@s", "c1,c2", '{"a":2}')
    assert cache.read("G@@s", "c1,c2") == '{"a":2}'
    assert cache.path_for("G@@s", "c1,c2").parent == tmp_path / "dev%2Fns"
    assert sorted(p.name for p in cache.directory.iterdir()) == ["G%40%40s%40%40c1%2Cc2.json"]


def test_weighted_choice() -> None:
    rng = random.Random(1)
    hosts = [Instance("a", 1, weight=1.0), Instance("b", 1, weight=3.0), Instance("c", 1, weight=0.0)]
    picks = [choose_by_weight(hosts, rng).ip for _ in range(4000)]
    assert picks.count("c") == 0
    assert 2.5 < picks.count("b") / picks.count("a") < 3.5
    assert choose_by_weight([Instance("z", 1, weight=0.0)], rng).ip == "z"


class _FakeInner(httpx.AsyncBaseTransport):
    """Refuses connections to port 1, answers others with the port it was sent to."""

    def __init__(self) -> None:
        self.attempts: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.attempts.append(f"{request.url.host}:{request.url.port}")
        if request.url.port == 1:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json={"port": request.url.port, "host": request.headers["host"]})


class _FakeNaming:
    def __init__(self, hosts: list[Instance]) -> None:
        self.hosts = hosts

    async def select_instances(self, service: str, healthy: bool, clusters: object, *, group: str) -> list[Instance]:
        await trio.lowlevel.checkpoint()
        return [h for h in self.hosts if service == "svc"]


async def test_load_balancer_skips_dead_instances_and_gives_up() -> None:
    inner = _FakeInner()
    naming = _FakeNaming([Instance("10.0.0.1", 1, weight=100.0), Instance("10.0.0.2", 2)])
    transport = LoadBalancedTransport(naming, transport=inner, seed=3)  # type: ignore[arg-type]
    with trio.fail_after(GUARD):
        async with httpx.AsyncClient(transport=transport) as http:
            for _ in range(5):
                response = await http.get("http://svc/x")
                assert response.json() == {"port": 2, "host": "10.0.0.2:2"}
            naming.hosts = [Instance("10.0.0.1", 1)]
            with pytest.raises(httpx.ConnectError, match="no reachable healthy instance of service 'svc'"):
                await http.get("http://svc/x")
            with pytest.raises(httpx.ConnectError, match="'other'"):
                await http.get("http://other/x")
            inner.attempts.clear()
            assert (await http.get("http://127.0.0.1:9/x")).json()["port"] == 9  # IPs pass through
            assert inner.attempts == ["127.0.0.1:9"]
