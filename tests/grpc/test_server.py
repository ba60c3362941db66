"""The gRPC front door on real sockets, one in-process node, driven by a small h2 client (tests/grpc/h2client.py):
connection states and Nacos's error codes, register/query/subscribe/push, deregistration on close and on
failed detection, bounds (oversized messages, slow readers) and token checks."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from cluster.api.auth import TokenStatus
from cluster.api.render import ListQuery, ListRenderer
from cluster.grpc.client import GrpcClientError
from cluster.grpc.connection import GrpcLimits
from cluster.grpc.server import GrpcServer
from cluster.grpc.wire import Payload, encode_payload, frame_message
from cluster.node.pump import NodeRuntime
from distro.config import DistroConfig
from distro.model import ServiceKey, make_instance
from distro.requests import Register
from tests.grpc.h2client import GrpcTestClient
from tests.polling import wait_for

KEY = ServiceKey("public", "DEFAULT_GROUP", "orders")
INSTANCE = {"ip": "10.0.0.1", "port": 8080, "weight": 1.0, "healthy": True, "enabled": True, "ephemeral": True,
            "clusterName": "DEFAULT", "metadata": {"v": "1"}}


@dataclass
class Node:
    runtime: NodeRuntime
    server: GrpcServer
    port: int

    def ips(self, key: ServiceKey = KEY) -> list[str]:
        view = self.runtime.node.view(key)
        return [] if view is None else [inst.ip for inst in view.instances]


@asynccontextmanager
async def one_node(config: DistroConfig | None = None, runtime: NodeRuntime | None = None,
                   **server_args: object) -> AsyncIterator[Node]:
    config = config or DistroConfig(cluster_size=1, snapshot_timeout_ms=50)
    runtime = runtime or NodeRuntime("n1", config, address="127.0.0.1:1")
    server = GrpcServer(runtime, **server_args)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(runtime.run)
        with trio.fail_after(10):
            await runtime.ready_event.wait()
        port = await nursery.start(server.serve, "127.0.0.1", 0)
        yield Node(runtime, server, port)
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def client(node: Node, *, setup: bool = True, pump: bool = True) -> AsyncIterator[GrpcTestClient]:
    c = await GrpcTestClient.connect(node.port)
    async with trio.open_nursery() as nursery:
        if pump:
            nursery.start_soon(c.pump)
        if setup:
            await c.setup()
        yield c
        await c.aclose()
        nursery.cancel_scope.cancel()


def register_body(**instance: object) -> dict[str, object]:
    return {"namespace": "public", "serviceName": "orders", "groupName": "DEFAULT_GROUP", "type": "registerInstance",
            "instance": {**INSTANCE, **instance}}


async def test_error_codes_follow_the_connection_state() -> None:
    async with one_node() as node, client(node, setup=False) as c:
        assert (await c.call("NoSuchRequest"))["errorCode"] == 302
        answer = await c.call("InstanceRequest", register_body())
        assert answer["_type"] == "ErrorResponse" and answer["errorCode"] == 301
        assert answer["message"] == "Connection is unregistered." and answer["resultCode"] == 500
        check = await c.call("ServerCheckRequest")
        assert check["_type"] == "ServerCheckResponse" and check["connectionId"] in node.server.connections
        assert check["supportAbilityNegotiation"] is False and "message" in check and None not in check.values()
        await c.setup()
        assert (await c.call("HealthCheckRequest"))["success"]
        answer = await c.call("PersistentInstanceRequest", register_body())
        assert answer["errorCode"] == 400 and "persistent instances are not supported" in answer["message"]
        assert (await c.call("InstanceRequest", register_body(ip="999.1.1.1")))["errorCode"] == 400


async def test_register_query_subscribe_push_and_close() -> None:
    async with one_node() as node:
        async with client(node) as c:
            answer = await c.call("InstanceRequest", register_body())
            assert answer == {**answer, "success": True, "type": "registerInstance", "_type": "InstanceResponse"}
            assert node.ips() == ["10.0.0.1"]
            [inst] = node.runtime.node.view(KEY).instances  # type: ignore[union-attr]
            assert inst.connection in node.server.connections
            query = await c.call("ServiceQueryRequest", {"serviceName": "orders", "healthOnly": False, "cluster": ""})
            info = query["serviceInfo"]
            assert info["name"] == "orders" and info["groupName"] == "DEFAULT_GROUP" and info["clusters"] == ""
            assert [(h["ip"], h["serviceName"], h["metadata"]) for h in info["hosts"]] == [
                ("10.0.0.1", "DEFAULT_GROUP@@orders", {"v": "1"})]
            sub = await c.call("SubscribeServiceRequest", {"serviceName": "orders", "subscribe": True, "clusters": ""})
            assert sub["_type"] == "SubscribeServiceResponse" and len(sub["serviceInfo"]["hosts"]) == 1
            # a write that did not come over gRPC (as a v1 HTTP registration) is pushed
            await node.runtime.submit(Register(KEY, make_instance("10.0.0.2", 80)))
            push = await c.next_push()
            assert push["serviceName"] == "orders" and push["groupName"] == "DEFAULT_GROUP"
            assert sorted(h["ip"] for h in push["serviceInfo"]["hosts"]) == ["10.0.0.1", "10.0.0.2"]
            assert push["serviceInfo"]["lastRefTime"] > sub["serviceInfo"]["lastRefTime"]
            await wait_for(lambda: node.server.subscriptions.stats.pushes_acked == 1)
            names = await c.call("ServiceListRequest", {"namespace": "public", "pageNo": 1, "pageSize": 10})
            assert names["count"] == 1 and names["serviceNames"] == ["orders"]
        await wait_for(lambda: node.ips() == ["10.0.0.2"])  # the closed connection's instance is gone
        assert node.server.stats.deregistrations == 1 and node.server.subscriptions.count() == 0


async def test_one_instance_per_service_per_connection_and_batches() -> None:
    async with one_node() as node, client(node) as c:
        await c.call("InstanceRequest", register_body(ip="10.0.0.1"))
        await c.call("InstanceRequest", register_body(ip="10.0.0.3"))
        await wait_for(lambda: node.ips() == ["10.0.0.3"])
        batch = {"serviceName": "orders", "type": "batchRegisterInstance",
                 "instances": [{**INSTANCE, "ip": "10.0.0.4"}, {**INSTANCE, "ip": "10.0.0.5"}]}
        assert (await c.call("BatchInstanceRequest", batch))["_type"] == "BatchInstanceResponse"
        await wait_for(lambda: node.ips() == ["10.0.0.4", "10.0.0.5"])
        dereg = {**register_body(ip="10.0.0.4"), "type": "deregisterInstance"}
        assert (await c.call("InstanceRequest", dereg))["type"] == "deregisterInstance"
        await wait_for(lambda: node.ips() == ["10.0.0.5"])


async def test_silent_connection_is_probed_then_closed_and_its_instances_removed() -> None:
    config = DistroConfig(cluster_size=1, snapshot_timeout_ms=50, connection_probe_after_idle_ms=300,
                          connection_give_up_after_ms=300, connection_check_interval_ms=50)
    async with one_node(config) as node, client(node) as answering, client(node) as silent:
        silent.auto_ack = False
        await answering.call("InstanceRequest", register_body(ip="10.0.0.1"))
        await silent.call("InstanceRequest", {**register_body(ip="10.0.0.2"), "serviceName": "other"})
        other = ServiceKey("public", "DEFAULT_GROUP", "other")
        await silent.next_push("ClientDetectionRequest")
        await wait_for(lambda: node.ips(other) == [])
        assert node.server.stats.closed.get("detection") == 1
        await silent.closed.wait()
        assert node.ips() == ["10.0.0.1"] and not answering.closed.is_set()


async def test_oversized_and_malformed_messages_fail_the_call_not_the_connection() -> None:
    limits = GrpcLimits(max_message_bytes=4096)
    async with one_node(limits=limits) as node, client(node) as c:
        big = frame_message(encode_payload(Payload("InstanceRequest", b"{" + b" " * 5000 + b"}")))
        stream_id = await c.call_raw(big)
        await c.ended[stream_id].wait()
        assert c.trailers[stream_id]["grpc-status"] == "8"
        stream_id = await c.call_raw(frame_message(b"\x12\x05ab"))
        await c.ended[stream_id].wait()
        assert c.trailers[stream_id]["grpc-status"] == "3"
        stream_id = await c.call_raw(frame_message(b""), path="/No/such")
        await c.ended[stream_id].wait()
        assert c.trailers[stream_id]["grpc-status"] == "12"
        answer = await c.call("InstanceRequest", {**register_body(), "instance": "{"})
        assert answer["errorCode"] == 400
        bad_json = Payload("InstanceRequest", b"{not json")
        stream_id = await c.call_raw(frame_message(encode_payload(bad_json)))
        await c.ended[stream_id].wait()
        assert json.loads(c.messages[stream_id][0].body)["errorCode"] == 400
        assert (await c.call("HealthCheckRequest"))["success"]


async def test_a_client_that_never_reads_is_disconnected() -> None:
    limits = GrpcLimits(max_outbound_bytes=256 * 1024, stall_timeout_ms=500)
    async with one_node(limits=limits) as node:
        for i in range(300):
            await node.runtime.submit(Register(KEY, make_instance(f"10.1.{i // 250}.{i % 250}", 80, metadata={"m": "x" * 100})))
        # a client subscribes and then stops reading
        c2 = await GrpcTestClient.connect(node.port)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(c2.pump)
            await c2.setup()
            await c2.call("SubscribeServiceRequest", {"serviceName": "orders", "subscribe": True})
            nursery.cancel_scope.cancel()  # from now on nobody reads c2's socket
        for i in range(50):
            await node.runtime.submit(Register(KEY, make_instance("10.2.0.1", 80, metadata={"n": str(i)})))
            await trio.sleep(0.02)
        await wait_for(lambda: node.server.stats.closed.get("slow_reader", 0) >= 1)
        await c2.stream.aclose()


async def test_tokens_are_checked_on_naming_requests() -> None:
    def check(token: str) -> TokenStatus:
        return {"good": TokenStatus.VALID, "old": TokenStatus.EXPIRED}.get(token, TokenStatus.INVALID)

    async with one_node(check_token=check) as node, client(node) as c:
        assert (await c.call("HealthCheckRequest"))["success"]  # not a naming request
        refused = await c.call("InstanceRequest", register_body())
        assert refused["_type"] == "InstanceResponse" and refused["errorCode"] == 403
        assert refused["message"] == "user not found!"
        assert (await c.call("InstanceRequest", register_body(), {"accessToken": "old"}))["message"] == "token expired!"
        assert (await c.call("InstanceRequest", register_body(), {"accessToken": "bad"}))["message"] == "token invalid!"
        assert (await c.call("InstanceRequest", register_body(), {"accessToken": "good"}))["success"]
        assert node.ips() == ["10.0.0.1"] and node.server.front.stats.auth_refused == 3


async def test_a_connection_that_never_sets_up_is_closed() -> None:
    async with one_node(limits=GrpcLimits(setup_timeout_ms=200)) as node:
        silent = await trio.open_tcp_stream("127.0.0.1", node.port)  # sends nothing at all
        async with client(node, setup=False) as checked_only:
            await checked_only.call("ServerCheckRequest")  # a server check alone does not set up
            with trio.fail_after(10):
                while await silent.receive_some(65536):  # the server's SETTINGS, then EOF
                    pass
                await checked_only.closed.wait()
        await silent.aclose()
        assert node.server.stats.closed.get("no_setup") == 2


async def test_a_request_arriving_with_goaway_closes_the_connection_not_the_node() -> None:
    """Found by scripts/chaos: a client whose health check timed out on a paused node closed its connection;
    on thaw the node read the request and the GOAWAY in one chunk, and answering the request (h2 refuses to
    send after a GOAWAY) raised out of the connection and stopped the node."""
    async with one_node() as node:
        async with client(node) as c:
            assert (await c.call("InstanceRequest", register_body()))["success"]
            assert node.ips() == ["10.0.0.1"]
            payload = Payload("HealthCheckRequest", json.dumps({"requestId": "9", "module": "internal"}).encode())
            stream_id = c.h2.get_next_available_stream_id()
            c.h2.send_headers(stream_id, c._headers("/Request/request"))
            c.h2.send_data(stream_id, frame_message(encode_payload(payload)), end_stream=True)
            c.h2.close_connection()
            await c.flush()  # the request and the GOAWAY in one write
            await wait_for(lambda: node.server.stats.closed.get("client", 0) == 1)
        # the node serves on, and the closed connection's instance is gone
        await wait_for(lambda: node.ips() == [])
        async with client(node) as c2:
            assert (await c2.call("HealthCheckRequest"))["success"]


class _PushBreaksRenderer(ListRenderer):
    """Renders the subscription's first answer, then fails: a stand-in for a bug on the push path."""

    def __init__(self, runtime: NodeRuntime) -> None:
        super().__init__(runtime)
        self.calls = 0

    def service_info(self, query: ListQuery) -> bytes:
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("a bug while building a push")
        return super().service_info(query)


async def test_an_unexpected_error_in_one_connection_ends_that_connection_only() -> None:
    config = DistroConfig(cluster_size=1, snapshot_timeout_ms=50)
    runtime = NodeRuntime("n1", config, address="127.0.0.1:1")
    async with one_node(runtime=runtime, renderer=_PushBreaksRenderer(runtime)) as node:
        async with client(node) as c:
            await c.call("SubscribeServiceRequest", {"serviceName": "orders", "subscribe": True})
            await node.runtime.submit(Register(KEY, make_instance("10.3.0.1", 80)))  # a push: its rendering fails
            with trio.fail_after(10):
                await c.closed.wait()
        await wait_for(lambda: node.server.stats.closed.get("internal", 0) == 1)
        async with client(node) as c2:  # the node serves on
            assert (await c2.call("HealthCheckRequest"))["success"]


async def test_a_burst_of_registrations_is_served_in_one_batch_and_each_answered() -> None:
    """Plain-TCP connections are read by the server's lane (cluster/http/lane.py), each step inside
    ``NodeRuntime.batch``: the core takes every registration of a burst with its effects held back (one dispatch
    and one deadline check for the burst), and every call still gets its own answer."""
    async with one_node() as node, client(node) as c:
        handle = node.runtime.node.handle_client
        in_batch: list[bool] = []

        def watched(request_id: int, request: object, now_ms: int) -> object:
            in_batch.append(node.runtime._batching)
            return handle(request_id, request, now_ms)  # type: ignore[arg-type]

        node.runtime.node.handle_client = watched  # type: ignore[method-assign]
        streams = []
        for n in range(8):  # eight calls in one write
            body = {"requestId": str(n), "module": "naming", **register_body(ip=f"10.0.0.{n + 1}")}
            body["serviceName"] = f"orders{n}"
            payload = Payload("InstanceRequest", json.dumps(body).encode())
            stream_id = c.h2.get_next_available_stream_id()
            c.ended[stream_id] = trio.Event()
            c.h2.send_headers(stream_id, c._headers("/Request/request"))
            c.h2.send_data(stream_id, frame_message(encode_payload(payload)), end_stream=True)
            streams.append(stream_id)
        await c.flush()
        with trio.fail_after(10):
            for stream_id in streams:
                await c.ended[stream_id].wait()
        answers = [json.loads(c.messages[s][0].body) for s in streams]
        assert [a["requestId"] for a in answers] == [str(n) for n in range(8)]
        assert all(a["success"] for a in answers)
        assert in_batch == [True] * 8
        for n in range(8):
            assert node.ips(ServiceKey("public", "DEFAULT_GROUP", f"orders{n}")) == [f"10.0.0.{n + 1}"]


async def test_an_unexpected_error_while_the_lane_serves_a_read_ends_that_connection_only() -> None:
    """The lane reads and serves every plain-TCP connection in one task: a bug while serving one read must end
    that connection (reason ``internal``, as from its own reader), never the lane or the node; it is counted
    as a lane error (``distro_grpc_lane_errors_total``) like one as a step ends."""
    async with one_node() as node:
        async with client(node) as c:
            (conn,) = node.server.connections.values()

            def breaks(data: bytes | bytearray) -> bool:
                raise RuntimeError("a bug while serving a read")

            conn._received = breaks  # type: ignore[method-assign]
            with trio.fail_after(10):
                with contextlib.suppress(GrpcClientError):
                    await c.call("ServerCheckRequest")
                await c.closed.wait()
        await wait_for(lambda: node.server.stats.closed.get("internal", 0) == 1)
        assert node.server.stats.lane_errors_total == 1
        assert "distro_grpc_lane_errors_total 1" in node.server.render_metrics()
        async with client(node) as c2:  # the node and its lane serve on
            assert (await c2.call("HealthCheckRequest"))["success"]


class _BatchBreaks(NodeRuntime):
    """A runtime whose next batch, once armed, fails as it ends (as a bug in carrying out its effects would)."""

    armed = False

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        with super().batch():
            yield
        if self.armed:
            self.armed = False
            raise RuntimeError("a bug in the batch's dispatch")


async def test_a_lane_step_that_fails_as_it_ends_is_counted_and_the_server_serves_on() -> None:
    """The lane's step is one ``NodeRuntime.batch``: an unexpected error as it ends is logged and counted, and
    neither the lane nor the server ends (it used to end the server's nursery, so every connection)."""
    runtime = _BatchBreaks("n1", DistroConfig(cluster_size=1, snapshot_timeout_ms=50), address="127.0.0.1:1")
    async with one_node(runtime=runtime) as node, client(node) as c:
        runtime.armed = True
        answer = await c.call("InstanceRequest", register_body())  # answered before the step ended
        assert answer["success"] and node.ips() == ["10.0.0.1"]
        assert node.server.stats.lane_errors_total == 1 and not runtime.armed
        assert "distro_grpc_lane_errors_total 1" in node.server.render_metrics()
        async with client(node) as c2:  # the server and its lane serve on, the first connection too
            assert (await c2.call("HealthCheckRequest"))["success"]
            assert (await c.call("HealthCheckRequest"))["success"]
        await wait_for(lambda: node.server.stats.closed == {"client": 1})  # c2, by its client
