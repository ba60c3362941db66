"""Hostile gRPC clients against a real ``distro-node`` process: it never crashes and keeps serving.

Deterministic inputs (tests/grpc/fuzzcases.py, fixed seeds): garbage instead of HTTP/2, a valid preface
followed by random frames, gRPC messages with bad length prefixes, bad protobuf and compressed flags,
Payloads with unknown types, invalid JSON, nesting deeper than the interpreter allows and wrong types for
every field, an oversized (10 MB + 1) message, connections that never set up, and a subscriber that stops
reading while the service it watches changes. Every unary call is answered (gRPC status 0 with a Nacos
error code, or a gRPC error status); afterwards the process is alive, ``/healthz`` answers, a well-behaved
client registers and lists, and the hostile connections are gone.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

from cluster.grpc.wire import MAX_MESSAGE_BYTES, Payload, encode_payload, frame_message
from cluster.tools.launcher import GRPC_PORT_OFFSET, LocalNode, free_ports
from tests.grpc import fuzzcases
from tests.grpc.h2client import GrpcTestClient

pytestmark = pytest.mark.slow
NS = "/nacos/v1/ns"


def metric(node: LocalNode, name: str) -> float:
    for line in httpx.get(f"{node.url}/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)


async def wait_until(predicate, what: str, timeout_s: float = 30) -> None:  # type: ignore[no-untyped-def]
    with trio.fail_after(timeout_s):
        while True:
            try:
                if await trio.to_thread.run_sync(predicate):
                    return
            except httpx.HTTPError:
                pass
            await trio.sleep(0.05)


@asynccontextmanager
async def session(port: int) -> AsyncIterator[GrpcTestClient]:
    client = await GrpcTestClient.connect(port)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.pump)
        await client.setup()
        yield client
        await client.aclose()
        nursery.cancel_scope.cancel()


async def answered(client: GrpcTestClient, stream_id: int) -> dict[str, str]:
    with trio.fail_after(10):
        await client.ended[stream_id].wait()
    return client.trailers.get(stream_id, {})


async def test_a_real_node_survives_hostile_grpc_clients(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    node = LocalNode("f1", port, [f"127.0.0.1:{port}"], os.urandom(16).hex(), log_path=tmp_path / "f1.log",
                     hermetic_env=True, node_args=("--grpc-stall-timeout-ms", "1500", "--snapshot-timeout-ms", "300"))
    node.start()
    try:
        await wait_until(lambda: node.is_ready(httpx.Client(timeout=2)), "the node to be ready")
        grpc_port = port + GRPC_PORT_OFFSET
        await garbage_connections(grpc_port)
        async with session(grpc_port) as client:
            for data in fuzzcases.grpc_messages(2, 200):
                assert (await answered(client, await client.call_raw(data))).get("grpc-status") is not None
            for payload in fuzzcases.payloads(3, 600):
                stream_id = await client.call_raw(frame_message(encode_payload(payload)))
                assert (await answered(client, stream_id)).get("grpc-status") == "0", payload.type
                assert client.messages[stream_id], payload.type  # an answer: a response or an ErrorResponse
            oversized = frame_message(encode_payload(Payload("InstanceRequest", b" " * MAX_MESSAGE_BYTES)))
            assert (await answered(client, await client.call_raw(oversized))).get("grpc-status") == "8"
            assert (await client.call("HealthCheckRequest"))["success"]
        await a_subscriber_that_stops_reading(node, grpc_port)
        assert node.running(), node.log_tail()
        assert httpx.get(f"{node.url}/healthz", timeout=5).status_code == 200
        async with session(grpc_port) as client:
            body = {"serviceName": "fuzz-ok", "type": "registerInstance", "instance": {"ip": "10.9.0.1", "port": 80}}
            assert (await client.call("InstanceRequest", body))["success"]
            hosts = httpx.get(f"{node.url}{NS}/instance/list", params={"serviceName": "fuzz-ok"}, timeout=5)
            assert [h["ip"] for h in hosts.json()["hosts"]] == ["10.9.0.1"]
        await wait_until(lambda: metric(node, "distro_grpc_connections_open") == 0, "hostile connections to close")
        assert node.running() and "Traceback" not in node.log_text(), node.log_tail(80)
    finally:
        node.stop()


async def garbage_connections(grpc_port: int) -> None:
    """Raw bytes that are not HTTP/2 (or not for long); and connections that never set up."""
    for data in fuzzcases.h2_garbage(1, 120):
        stream = await trio.open_tcp_stream("127.0.0.1", grpc_port)
        try:
            await stream.send_all(data)
            with trio.move_on_after(0.3):  # the node closes at once, or waits for the rest of a frame
                while await stream.receive_some(65536):
                    pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        await stream.aclose()
    idle = [await trio.open_tcp_stream("127.0.0.1", grpc_port) for _ in range(20)]  # the node closes them
    for stream in idle:
        await stream.aclose()


async def a_subscriber_that_stops_reading(node: LocalNode, grpc_port: int) -> None:
    """It subscribes, then never reads again while its service changes: the node disconnects it."""
    with httpx.Client(timeout=5) as http:
        for i in range(200):
            http.post(f"{node.url}{NS}/instance", params={"serviceName": "fuzz-big", "ip": f"10.7.{i // 250}.{i % 250}",
                                                         "port": 80, "metadata": '{"pad":"' + "x" * 200 + '"}'})
        slow = await GrpcTestClient.connect(grpc_port)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow.pump)
            await slow.setup()
            await slow.call("SubscribeServiceRequest", {"serviceName": "fuzz-big", "subscribe": True})
            nursery.cancel_scope.cancel()  # nobody reads its socket from now on
        before = metric(node, "distro_grpc_connections_open")
        for i in range(100):
            http.put(f"{node.url}{NS}/instance", params={"serviceName": "fuzz-big", "ip": "10.7.0.1", "port": 80,
                                                        "weight": str(1 + i % 5)})
        await wait_until(lambda: metric(node, "distro_grpc_connections_open") < before, "the slow reader to go")
        await slow.stream.aclose()
