"""scripts/chaos's SDK-like gRPC client (chaoslib.grpcclients) against real in-process nodes: it registers,
moves to the next node and registers again when its node goes away (or gives up, when fragile), and its
clean close removes its instance at once."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import trio

from distro.model import ServiceKey
from tests.grpc.test_server import Node, one_node
from tests.polling import wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from chaoslib.console import Console
from chaoslib.grpcclients import GrpcActor, GrpcInst
from chaoslib.state import GrpcBounds, Recorder

SVC = "chaos-client-test"
KEY = ServiceKey("public", "DEFAULT_GROUP", SVC)


def _bounds() -> GrpcBounds:
    args = argparse.Namespace(grpc_clients=1, grpc_services_per_client=1, services=1, grpc_keepalive_ms=300,
                              grpc_present_bound_ms=None, grpc_gone_bound_ms=None)
    timing = {"heartbeat_timeout_ms": 3_000, "instance_expire_ms": 6_000, "peer_timeout_ms": 1_000,
              "grpc_probe_after_idle_ms": 2_000, "grpc_give_up_after_ms": 1_000, "grpc_check_interval_ms": 1_000}
    return GrpcBounds.from_settings(args, timing)


def _listed(node: Node, ip: str) -> bool:
    return ip in node.ips(KEY)


async def _node_until(stop: trio.Event, task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED) -> None:
    """A node that runs until ``stop`` is set (then it goes away with its connections)."""
    async with one_node() as node:
        task_status.started(node)
        await stop.wait()


async def test_client_registers_moves_on_loss_and_closes_cleanly() -> None:
    rec = Recorder(Console(quiet=True))
    stop_n1 = trio.Event()
    async with one_node() as n2, trio.open_nursery() as nursery:
        n1 = await nursery.start(_node_until, stop_n1)
        ports = {"node1": n1.port, "node2": n2.port}
        actor = GrpcActor(0, [GrpcInst(SVC, "10.1.0.1", 7070)], ports, "node1", False, rec, _bounds())
        fragile = GrpcActor(1, [GrpcInst(SVC, "10.1.0.2", 7070)], ports, "node1", True, rec, _bounds())
        nursery.start_soon(actor.run)
        nursery.start_soon(fragile.run)
        await wait_for(lambda: actor.connected and fragile.connected)
        assert actor.node == "node1" and _listed(n1, "10.1.0.1") and _listed(n1, "10.1.0.2")

        stop_n1.set()  # node1 goes away, with its connections
        await wait_for(lambda: actor.connected and actor.node == "node2" and fragile.state == "abandoned")
        assert _listed(n2, "10.1.0.1") and not _listed(n2, "10.1.0.2")
        assert len(actor.reconnect_s) == 1 and actor.disconnected_since is None
        assert fragile.ended_at is not None
        assert rec.stats["grpc_reregistered"] == 1 and rec.stats["grpc_abandoned"] == 1

        actor.ask("close")
        await wait_for(lambda: actor.state == "closed")
        await wait_for(lambda: not _listed(n2, "10.1.0.1"))  # deregistered with its connection
        assert actor.ended_at is not None


async def test_frozen_client_keeps_its_socket_and_stops_answering() -> None:
    rec = Recorder(Console(quiet=True))
    async with one_node() as n1:
        actor = GrpcActor(0, [GrpcInst(SVC, "10.1.0.3", 7070)], {"node1": n1.port}, "node1", False, rec, _bounds())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(actor.run)
            await wait_for(lambda: actor.connected)
            actor.ask("freeze")
            await wait_for(lambda: actor.state == "frozen")
            # frozen, not closed: the node still holds the connection and lists the instance
            assert len(n1.runtime.node.connections) == 1 and _listed(n1, "10.1.0.3")
            await actor.aclose()
            await wait_for(lambda: not _listed(n1, "10.1.0.3"))


async def test_client_follows_a_connect_reset_and_a_fragile_one_ignores_it() -> None:
    rec = Recorder(Console(quiet=True))
    async with one_node() as n1, one_node() as n2, trio.open_nursery() as nursery:
        ports = {"node1": n1.port, "node2": n2.port}
        actor = GrpcActor(0, [GrpcInst(SVC, "10.1.0.4", 7070)], ports, "node1", False, rec, _bounds())
        fragile = GrpcActor(1, [GrpcInst(SVC, "10.1.0.5", 7070)], ports, "node1", True, rec, _bounds())
        nursery.start_soon(actor.run)
        nursery.start_soon(fragile.run)
        await wait_for(lambda: actor.connected and fragile.connected)
        nursery.start_soon(n1.server.drain, 60)  # node1 stops gracefully: its clients are asked to move
        await wait_for(lambda: actor.connected and actor.node == "node2")
        assert _listed(n2, "10.1.0.4") and rec.stats["grpc_resets_followed"] == 1
        assert fragile.connected and fragile.node == "node1"  # as nacos-sdk-python: it stays
        nursery.cancel_scope.cancel()
