"""A node that has not loaded its snapshot answers naming reads (and the namespaces list) with Nacos's 503,
not with an empty list.

Real HTTP on 127.0.0.1; the node is a runtime of a three-node cluster whose peers never answer, so it stays
unready until its snapshot deadline passes and then serves normally.
"""

from __future__ import annotations

import httpx
import trio

from cluster.api.namespaces import NAMESPACES_PATH
from cluster.api.push import PushService
from cluster.api.readiness import STARTING_TEXT, ReadinessGate
from cluster.api.render import ListRenderer
from cluster.api.routes import NamingApi
from cluster.api.watch import WatchService
from cluster.http import serve_http
from cluster.node.pump import NodeRuntime
from distro.config import DistroConfig

NS = "/nacos/v1/ns"


async def raw_status(port: int, method: str, target: str) -> int:
    """The status of one request sent as written (httpx would upper-case the method)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        head = b""
        while b"\r\n" not in head:
            chunk = await stream.receive_some(4096)
            assert chunk, head
            head += chunk
    return int(head.split(b" ", 2)[1])


async def test_naming_routes_answer_503_until_ready_then_serve() -> None:
    runtime = NodeRuntime("n1", DistroConfig(cluster_size=3, snapshot_timeout_ms=300), address="127.0.0.1:1")
    renderer = ListRenderer(runtime)
    api = NamingApi(runtime, renderer, readiness=ReadinessGate(runtime.node),
                    push=PushService(runtime, renderer), watch=WatchService(runtime, renderer))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_http, api, "127.0.0.1", 0)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert not runtime.node.ready
            gated = [
                ("GET", f"{NS}/instance/list", {"serviceName": "orders"}),
                ("GET", f"{NS}/instance", {"serviceName": "orders", "ip": "10.0.0.1", "port": "80"}),
                ("GET", f"{NS}/service", {"serviceName": "orders"}),
                ("GET", f"{NS}/service/list", {}),
                ("GET", f"{NS}/catalog/services", {}),
                ("GET", NAMESPACES_PATH, {}),  # cluster data a node with an empty folder does not hold yet
                ("GET", NAMESPACES_PATH, {"show": "all", "namespaceId": "dev"}),
            ]
            for method, path, params in gated:
                response = await http.request(method, path, params=params)
                assert (response.status_code, response.text) == (503, STARTING_TEXT), (method, path)
            # Issue 14, finding 5: methods are matched whatever their case, and HEAD is a read like GET.
            for method in ("get", "Get", "HEAD", "head"):
                assert await raw_status(port, method, f"{NS}/instance/list?serviceName=orders") == 503, method
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/readyz")).status_code == 503
            servers = await http.get(f"{NS}/operator/servers")  # operators can still look
            assert servers.status_code == 200, servers.text
            metrics = (await http.get("/metrics")).text.splitlines()
            assert f"distro_not_ready_refusals_total {len(gated) + 4}" in metrics

            await nursery.start(runtime.run)
            with trio.fail_after(10):
                await runtime.ready_event.wait()
            assert (await http.get("/readyz")).status_code == 200
            register = await http.post(f"{NS}/instance", params={"serviceName": "orders", "ip": "10.0.0.1", "port": "80"})
            assert (register.status_code, register.text) == (200, "ok")
            listed = await http.get(f"{NS}/instance/list", params={"serviceName": "orders"})
            assert [host["ip"] for host in listed.json()["hosts"]] == ["10.0.0.1"]
            namespaces = await http.get(NAMESPACES_PATH)
            assert namespaces.status_code == 200 and namespaces.json()["data"][0]["namespaceShowName"] == "public"
        nursery.cancel_scope.cancel()
