"""The console's files and its own endpoints on a real three-node cluster, without a browser: headers and
traversal on the wire, the change feed's long poll, the cluster view (link states, versions, uptimes,
services owned) and the last beats that only the owner knows."""

from __future__ import annotations

import socket
import threading
from typing import Any

import httpx
import pytest

from cluster.console.endpoints import package_version
from tests.console.conftest import CONSOLE, NS, Registry, unique, wait_until

pytestmark = pytest.mark.slow


def raw_get(address: str, target: str) -> tuple[int, bytes]:
    """Send ``GET target`` exactly as written (no client normalises the path); the status and body."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_a_node_serves_the_console_with_its_headers(console_cluster: Registry) -> None:
    node = console_cluster.nodes[1]
    with httpx.Client(trust_env=False) as http:
        page = http.get(f"{node.url}/nacos/")
        assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff"
        module = http.get(f"{node.url}/nacos/js/app.js")
        assert module.headers["content-type"] == "text/javascript; charset=utf-8"
        again = http.get(f"{node.url}/nacos/js/app.js", headers={"If-None-Match": module.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        head = http.head(f"{node.url}/nacos/index.html")
        assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == str(len(page.content))
        moved = http.get(f"{node.url}/nacos")
        assert moved.status_code == 302 and moved.headers["location"] == "/nacos/"


@pytest.mark.parametrize("target", [
    "/nacos/../pyproject.toml", "/nacos/js/../../console/assets.py", "/nacos/%2e%2e/assets.py",
    "/nacos/js/%2e%2e%2fapp.js", "/nacos/..%2fassets.py", "/nacos/./index.html", "/nacos/static/index.html",
])
def test_no_path_leaves_the_console_files(console_cluster: Registry, target: str) -> None:
    status, body = raw_get(console_cluster.nodes[0].address, target)
    assert status in (400, 404, 501), (target, status)
    assert b"import" not in body and b"<html" not in body


def test_the_change_feed_wakes_on_a_replicated_registration(console_cluster: Registry) -> None:
    registry = console_cluster
    node = registry.nodes[2]
    first = registry.call(node, "GET", f"{CONSOLE}/changes").json()
    assert first["complete"] is False
    name = unique("feed")
    answers: list[dict[str, Any]] = []

    def poll() -> None:
        with httpx.Client(trust_env=False, timeout=30) as http:
            answers.append(http.get(f"{node.url}{CONSOLE}/changes", params={
                "feed": first["feed"], "revision": first["revision"], "timeoutMs": 25000}).json())

    waiter = threading.Thread(target=poll)
    waiter.start()
    try:
        registry.register(registry.nodes[0], name, "10.10.0.1", 80)
    finally:
        waiter.join(30)
    answer = answers[0]
    assert answer["feed"] == first["feed"] and answer["revision"] > first["revision"]
    changed = {c["serviceName"] for c in answer["changes"]}
    wait_until(lambda: name in changed or name in {
        c["serviceName"] for c in registry.call(node, "GET", f"{CONSOLE}/changes", feed=first["feed"],
                                                revision=first["revision"], timeoutMs=0).json()["changes"]},
        "the service in the feed")


def test_the_cluster_view_shows_every_member(console_cluster: Registry) -> None:
    registry = console_cluster
    names = [unique("owned") for _ in range(6)]
    for name in names:
        registry.register(registry.nodes[0], name, "10.11.0.1", 80)
    for name in names:  # each has its own owner: one replicated says nothing of the others
        registry.everywhere(name, 1)
    services = registry.call(registry.nodes[1], "GET", f"{NS}/catalog/services", pageSize=1).json()["count"]

    def view() -> dict[str, Any] | None:
        body: dict[str, Any] = registry.call(registry.nodes[1], "GET", f"{CONSOLE}/cluster").json()
        members = body["members"]
        linked = all(m["self"] or (m["link"]["outbound"] and m["link"]["inbound"]) for m in members)
        return body if linked and all(m["reachable"] for m in members) else None

    body = wait_until(view, "every member reachable and linked both ways")
    members = body["members"]
    assert body["self"] == registry.nodes[1].address
    assert members[0]["address"] == registry.nodes[1].address and members[0]["self"]
    assert sorted(m["address"] for m in members) == sorted(n.address for n in registry.nodes)
    assert sorted(m["nodeId"] for m in members) == ["n1", "n2", "n3"]
    for member in members:
        assert member["state"] == "UP" and member["ready"] is True
        assert member["version"] == package_version()
        assert member["uptimeMs"] > 0 and member["startedMs"] > 1_600_000_000_000
    assert sum(m["servicesOwned"] for m in members) >= services  # other modules' services too, all of them owned


def test_last_beats_are_asked_of_the_owner(console_cluster: Registry) -> None:
    registry = console_cluster
    name = unique("beats")
    registry.register(registry.nodes[0], name, "10.12.0.1", 8080)
    registry.everywhere(name, 1)
    owner = registry.call(registry.nodes[0], "GET", f"{NS}/operator/distro/server", serviceName=name).json()
    beat = registry.call(registry.nodes[0], "PUT", f"{NS}/instance/beat", serviceName=name, ip="10.12.0.1", port=8080)
    assert beat.status_code == 200
    for node in registry.nodes:
        body = registry.call(node, "GET", f"{CONSOLE}/beats", serviceName=name).json()
        assert body["owner"] == owner["responsibleServer"]
        last = body["beats"]["DEFAULT/10.12.0.1:8080"]
        assert 0 <= body["nowMs"] - last < 60_000, body
    unknown = registry.call(registry.nodes[1], "GET", f"{CONSOLE}/beats", serviceName=unique("nobody")).json()
    assert unknown["beats"] == {}
    bad = registry.call(registry.nodes[1], "GET", f"{CONSOLE}/beats", serviceName="a b")
    assert bad.status_code == 400
