"""The SDK's one failover loop (distroreg.servers): the order servers are tried in, what fails over (connection
errors, 5xx) and what does not (4xx), the sticky current server, the error that lists every server, and the
login; over real sockets (a dead port, a live node) and over a fake server for answers a node does not give."""

from __future__ import annotations

import random
import socket
from collections.abc import Callable

import httpx
import pytest
import trio

from distroreg import NamingError, NamingUnavailable, ServerPool, SyncServerPool
from distroreg.servers import ServerRotation
from tests.client.support import NodeProcesses

SERVERS_PATH = "/nacos/v1/ns/operator/servers"


def dead_address() -> str:
    """A loopback port that refuses connections (bound once to get a free number, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def fake_servers(answers: dict[str, Callable[[httpx.Request], httpx.Response]]) -> httpx.MockTransport:
    """One fake server per host name; each answers with its function."""
    return httpx.MockTransport(lambda request: answers[request.url.host](request))


def test_rotation_starts_at_the_first_server_or_a_random_one() -> None:
    assert ServerRotation(["a:1", "b:2", "c:3"]).current == "http://a:1"
    starts = {ServerRotation(["a:1", "b:2", "c:3"], random.Random(seed)).current for seed in range(40)}
    assert starts == {"http://a:1", "http://b:2", "http://c:3"}
    with pytest.raises(ValueError):
        ServerRotation([])


def test_sync_pool_fails_over_from_a_dead_port_and_stays(sdk_nodes: NodeProcesses) -> None:
    dead, live = dead_address(), sdk_nodes.addresses[0]
    with httpx.Client(timeout=5, trust_env=False) as http:
        pool = SyncServerPool([dead, live], http)
        response = pool.request("GET", SERVERS_PATH, {})
        assert response.status_code == 200 and "servers" in response.json()
        assert (pool.current, pool.failovers) == (f"http://{live}", 1)
        pool.request("GET", SERVERS_PATH, {})
        assert pool.failovers == 1  # went straight to the live server


def test_sync_pool_lists_every_failure_when_no_server_answers() -> None:
    first, second = dead_address(), dead_address()
    with httpx.Client(timeout=5, trust_env=False) as http:
        pool = SyncServerPool([first, second], http)
        with pytest.raises(NamingUnavailable) as caught:
            pool.request("GET", SERVERS_PATH, {})
    failures = caught.value.failures
    assert [f.url for f in failures] == [f"http://{first}", f"http://{second}"]
    assert [f.reason for f in failures] == ["connection refused", "connection refused"]
    assert caught.value.status == 503 and caught.value.last_response is None
    assert pool.current == f"http://{second}"  # the next request starts one further on


def test_5xx_fails_over_4xx_does_not_and_the_last_5xx_is_kept() -> None:
    starting = httpx.Response(503, text="server is STARTINGnow, please try again later!")
    transport = fake_servers({
        "a": lambda request: starting,
        "b": lambda request: httpx.Response(400, text="caused: param 'serviceName' is required"),
        "c": lambda request: httpx.Response(502, text="bad gateway"),
    })
    with httpx.Client(transport=transport) as http:
        refused = SyncServerPool(["b:1", "a:1"], http).request("GET", SERVERS_PATH, {})
        assert (refused.status_code, refused.url.host) == (400, "b")  # a refusal is the caller's to read
        pool = SyncServerPool(["a:1", "b:1"], http)
        assert pool.request("GET", SERVERS_PATH, {}).status_code == 400 and pool.current == "http://b:1"
        with pytest.raises(NamingUnavailable) as caught:
            SyncServerPool(["c:1", "a:1"], http).request("GET", SERVERS_PATH, {})
    last = caught.value.last_response
    assert last is not None and last.status_code == 503 and "STARTINGnow" in last.text
    assert [f.reason for f in caught.value.failures] == ["HTTP 502 bad gateway",
                                                         "HTTP 503 server is STARTINGnow, please try again later!"]


def _auth_server(tokens_issued: list[str]) -> Callable[[httpx.Request], httpx.Response]:
    """Logs in with nacos/nacos; the first token it issues is rejected later as expired."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/nacos/v1/auth/login":
            if b"password=nacos" not in request.content:
                return httpx.Response(403, text="unknown user!")
            tokens_issued.append(f"t{len(tokens_issued)}")
            return httpx.Response(200, json={"accessToken": tokens_issued[-1], "tokenTtl": 18000})
        if request.url.params.get("accessToken") != tokens_issued[-1] or tokens_issued[-1] == "t0":
            return httpx.Response(403, text="token expired!")
        return httpx.Response(200, json={"servers": []})

    return answer


def test_sync_pool_logs_in_and_renews_a_rejected_token() -> None:
    issued: list[str] = []
    with httpx.Client(transport=fake_servers({"a": _auth_server(issued)})) as http:
        pool = SyncServerPool(["a:1"], http, username="nacos", password="nacos")
        assert pool.request("GET", SERVERS_PATH, {}).status_code == 200
        assert issued == ["t0", "t1"]  # t0 was refused as expired, so it logged in again
        assert pool.request("GET", SERVERS_PATH, {}).status_code == 200
        assert issued == ["t0", "t1"]  # the valid token is reused
        wrong = SyncServerPool(["a:1"], http, username="nacos", password="wrong")
        with pytest.raises(NamingError) as caught:
            wrong.request("GET", SERVERS_PATH, {})
    assert caught.value.status == 403 and "login failed" in caught.value.message


async def test_async_pool_follows_the_same_rule() -> None:
    issued: list[str] = []
    transport = fake_servers({"a": lambda request: httpx.Response(504, text="gateway timeout"),
                              "b": _auth_server(issued)})
    with trio.fail_after(10):
        async with httpx.AsyncClient(transport=transport) as http:
            pool = ServerPool(["a:1", "b:1"], http, username="nacos", password="nacos")
            response = await pool.request("GET", SERVERS_PATH, {})
            assert (response.status_code, pool.current, pool.failovers) == (200, "http://b:1", 1)
            assert issued == ["t0", "t1"]
            with pytest.raises(NamingUnavailable) as caught:
                await ServerPool(["a:1"], http).request("GET", SERVERS_PATH, {})
    assert [f.reason for f in caught.value.failures] == ["HTTP 504 gateway timeout"]
