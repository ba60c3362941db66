"""A graceful stop of the gRPC front door (GrpcServer.drain), on real sockets with the h2 test client: clients are
sent ConnectResetRequest, the listeners close, the drain ends when the clients have gone or at its grace period,
and no instance is deregistered. The recommendation of other members is tested with real nodes
(tests/integration/test_grpc_drain.py)."""

from __future__ import annotations

import json

import pytest
import trio
import trio.testing

from tests.grpc.h2client import GrpcTestClient
from tests.grpc.test_server import Node, client, one_node, register_body
from tests.polling import wait_for


async def drained_within(node: Node, grace_s: float, done: trio.Event) -> None:
    await node.server.drain(grace_s)
    done.set()


async def test_clients_are_asked_to_move_and_the_drain_ends_when_they_have_gone() -> None:
    async with one_node() as node, trio.open_nursery() as nursery:
        async with client(node) as moving, client(node, setup=False) as unset:
            await unset.call("ServerCheckRequest")  # connected, never set up
            assert (await moving.call("InstanceRequest", register_body()))["success"]
            done = trio.Event()
            nursery.start_soon(drained_within, node, 60, done)
            reset = await moving.next_push("ConnectResetRequest")
            # a lone node has no other member to recommend: the client picks a server of its own list
            assert reset["module"] == "internal" and reset["requestId"] and "serverIp" not in reset
            with trio.fail_after(10):
                await unset.closed.wait()  # not set up: closed at once, nothing to move
            with pytest.raises(OSError):  # the listeners are closed: reconnects go elsewhere
                await trio.open_tcp_stream("127.0.0.1", node.port)
            await wait_for(lambda: node.server.front.stats.resets_acked == 1, what="the client's ConnectResetResponse")
            assert not done.is_set()  # the moving client is still connected
        with trio.fail_after(10):  # ... and once it has gone, the drain ends, long before its 60 s grace
            await done.wait()
        assert node.ips() == ["10.0.0.1"] and node.server.stats.deregistrations == 0
        assert node.server.stats.resets_sent == 1
        metrics = node.server.render_metrics()
        assert "distro_grpc_connect_resets_sent_total 1" in metrics
        assert "distro_grpc_connect_resets_acked_total 1" in metrics


async def test_a_client_that_ignores_the_reset_is_waited_for_until_the_grace_period(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with one_node() as node, client(node) as stays:
        stays.auto_ack = False  # as nacos-sdk-python 3.2.0: the request is not even answered
        assert (await stays.call("InstanceRequest", register_body()))["success"]
        start = trio.current_time()
        await node.server.drain(5)
        assert trio.current_time() - start == pytest.approx(5, abs=0.1)
        assert [p.type for p in stays.pushes] == ["ConnectResetRequest"]
        assert json.loads(stays.pushes[0].body)["module"] == "internal"
        assert not stays.closed.is_set() and len(node.server.connections) == 1  # closed when the node stops
        assert node.server.front.stats.resets_acked == 0
    # the connection ended with the drain on: its instance stays for the client to register elsewhere
    await wait_for(lambda: not node.server.connections, what="the connection gone")
    assert node.ips() == ["10.0.0.1"] and node.server.stats.deregistrations == 0


async def test_a_drain_without_clients_ends_at_once() -> None:
    async with one_node() as node:
        with trio.fail_after(5):
            await node.server.drain(60)
        with pytest.raises(OSError):
            await GrpcTestClient.connect(node.port)
        assert node.server.stats.resets_sent == 0
