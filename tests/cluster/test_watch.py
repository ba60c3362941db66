"""HTTP watch (``GET /nacos/v1/ns/instance/watch``): answers at once when the client is behind, waits for the
next change otherwise, 304 at the timeout, 503 over the watcher bound. Real nodes, plus one in-process
node for the bound."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import trio

from tests.client.support import NS, InProcessCluster, NodeProcesses, deregister, register, unique
from tests.polling import wait_for

GUARD = 30
WATCH = f"{NS}/instance/watch"


@pytest.fixture(scope="module")
def nodes() -> Iterator[NodeProcesses]:
    with NodeProcesses(2) as cluster:
        yield cluster


async def _list(http: httpx.AsyncClient, url: str, service: str) -> dict[str, object]:
    body = (await http.get(f"{url}{NS}/instance/list", params={"serviceName": service})).json()
    assert isinstance(body, dict)
    return body


async def test_answers_at_once_without_or_with_a_stale_checksum(nodes: NodeProcesses) -> None:
    service = unique("watch-now")
    url = nodes.urls[0]
    with trio.fail_after(GUARD):
        async with httpx.AsyncClient(trust_env=False) as http:
            await register(http, url, service, "10.7.0.1", 80)
            await wait_for(lambda: _count(http, url, service, 1))  # replicated here if another node owns it
            listed = await _list(http, url, service)
            response = await http.get(f"{url}{WATCH}", params={"serviceName": service})
            assert response.status_code == 200
            body = response.json()
            assert body["hosts"] == listed["hosts"] and body["checksum"] == listed["checksum"]
            response = await http.get(f"{url}{WATCH}", params={"serviceName": service, "checksum": "stale"})
            assert response.status_code == 200 and response.json()["checksum"] == listed["checksum"]


async def test_returns_on_a_replicated_change(nodes: NodeProcesses) -> None:
    service = unique("watch-change")
    with trio.fail_after(GUARD):
        async with httpx.AsyncClient(trust_env=False, timeout=20) as http:
            await register(http, nodes.urls[0], service, "10.7.1.1", 80)
            await wait_for(lambda: _count(http, nodes.urls[1], service, 1))
            checksum = str((await _list(http, nodes.urls[1], service))["checksum"])
            answer: list[httpx.Response] = []
            started = trio.Event()

            async def watch() -> None:
                started.set()
                answer.append(await http.get(f"{nodes.urls[1]}{WATCH}",
                                             params={"serviceName": service, "checksum": checksum,
                                                     "timeoutMs": "15000"}))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                await started.wait()
                await wait_for(lambda: _active_watchers(http, nodes.urls[1], 1))
                await deregister(http, nodes.urls[0], service, "10.7.1.1", 80)
            assert answer[0].status_code == 200
            body = answer[0].json()
            assert body["hosts"] == [] and body["checksum"] != checksum


async def test_unknown_service_waits_for_its_first_instance(nodes: NodeProcesses) -> None:
    service = unique("watch-new")
    with trio.fail_after(GUARD):
        async with httpx.AsyncClient(trust_env=False, timeout=20) as http:
            answer: list[httpx.Response] = []

            async def watch() -> None:
                answer.append(await http.get(f"{nodes.urls[0]}{WATCH}",
                                             params={"serviceName": service, "checksum": "", "timeoutMs": "15000"}))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                await wait_for(lambda: _active_watchers(http, nodes.urls[0], 1))
                await register(http, nodes.urls[1], service, "10.7.2.1", 80)
            assert answer[0].status_code == 200
            assert [h["ip"] for h in answer[0].json()["hosts"]] == ["10.7.2.1"]


async def test_times_out_with_304(nodes: NodeProcesses) -> None:
    service = unique("watch-timeout")
    url = nodes.urls[0]
    with trio.fail_after(GUARD):
        async with httpx.AsyncClient(trust_env=False) as http:
            await register(http, url, service, "10.7.3.1", 80)
            await wait_for(lambda: _count(http, url, service, 1))
            checksum = str((await _list(http, url, service))["checksum"])
            start = trio.current_time()
            response = await http.get(f"{url}{WATCH}",
                                      params={"serviceName": service, "checksum": checksum, "timeoutMs": "200"})
            assert response.status_code == 304 and response.content == b""
            assert trio.current_time() - start >= 0.2
            response = await http.get(f"{url}{WATCH}",
                                      params={"serviceName": service, "checksum": checksum, "timeoutMs": "0"})
            assert response.status_code == 304
            response = await http.get(f"{url}{WATCH}", params={"serviceName": service, "timeoutMs": "x"})
            assert response.status_code == 400
            text = (await http.get(f"{url}/metrics")).text
            assert "distro_watch_unchanged_total" in text


async def _count(http: httpx.AsyncClient, url: str, service: str, count: int) -> bool:
    return len((await _list(http, url, service))["hosts"]) == count  # type: ignore[arg-type]


async def _active_watchers(http: httpx.AsyncClient, url: str, at_least: int) -> bool:
    for line in (await http.get(f"{url}/metrics")).text.splitlines():
        if line.startswith("distro_watch_active "):
            return float(line.split()[1]) >= at_least
    return False


async def test_watchers_are_bounded_and_timeout_is_capped() -> None:
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery, httpx.AsyncClient(trust_env=False, timeout=10) as http:
            cluster = await InProcessCluster(1, watch={"max_watchers": 1, "max_timeout_ms": 300}).start(nursery)
            node = cluster.nodes[0]
            results: list[int] = []

            async def watch() -> None:
                response = await http.get(f"{node.url}{WATCH}",
                                          params={"serviceName": "capped", "checksum": "", "timeoutMs": "999999"})
                results.append(response.status_code)

            start = trio.current_time()
            async with trio.open_nursery() as watchers:
                watchers.start_soon(watch)
                await wait_for(lambda: node.watch.active == 1)
                second = await http.get(f"{node.url}{WATCH}", params={"serviceName": "other", "checksum": ""})
                assert second.status_code == 503
            assert results == [304]
            assert 0.3 <= trio.current_time() - start < 5  # capped at max_timeout_ms, not 999 s
            assert node.watch.rejected == 1
            nursery.cancel_scope.cancel()


async def test_a_watcher_whose_client_goes_away_frees_its_slot_at_once() -> None:
    # Issue 14, finding 3: a watcher whose client reset its socket kept its slot (and its fd) until its
    # timeout. Now the watch notices the close while it waits.
    import socket
    import struct

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            node = (await InProcessCluster(1).start(nursery)).nodes[0]
            http_stats = node.server.http_stats
            for how in ("reset", "close"):
                sock = trio.socket.socket()
                await sock.connect(("127.0.0.1", node.port))
                await sock.send(f"GET {WATCH}?serviceName=gone&checksum=&timeoutMs=60000 HTTP/1.1\r\nHost: x\r\n\r\n"
                                .encode())
                await wait_for(lambda: node.watch.active == 1)
                assert http_stats.connections_open == 1
                if how == "reset":
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
                await wait_for(lambda: node.watch.active == 0 and http_stats.connections_open == 0, timeout_s=10)
                assert node.watch.answered_unchanged == 0  # it did not wait for its 60 s
            assert node.watch.client_gone == 2
            nursery.cancel_scope.cancel()
