"""The gRPC side of the workload: SDK-like clients (chaoslib.grpcclients) spread over the three nodes, some
closed, frozen or moved every round, and fresh ones placed on the node the next fault hits, so that every
fault hits a node holding gRPC connections."""

from __future__ import annotations

import argparse
import random
import statistics
from typing import Any

import trio

from chaoslib.grpcclients import ENDED, GrpcActor, GrpcInst
from chaoslib.state import GrpcBounds, Recorder

GRPC_INSTANCE_PORT = 7070  # the HTTP workload's instances use 8080: the two never share an ip:port


class GrpcWorkload:
    """The gRPC clients of a run and what happened to them."""

    def __init__(self, args: argparse.Namespace, rec: Recorder, grpc_ports: dict[str, int], bounds: GrpcBounds,
                 services: list[str], rng: random.Random) -> None:
        self.args = args
        self.rec = rec
        self.grpc_ports = grpc_ports
        self.bounds = bounds
        self.services = services
        self.rng = rng
        self.actors: list[GrpcActor] = []
        self.by_service: dict[str, list[tuple[GrpcActor, GrpcInst]]] = {}
        self._next_instance = 0
        self._nursery: trio.Nursery | None = None

    # -- clients -----------------------------------------------------------------------------------
    def spawn(self, node: str, fragile: bool) -> GrpcActor:
        """A new client whose first connection goes to ``node``; it starts at once."""
        assert self._nursery is not None
        idx = [self.services.index(s) for s in self.rng.sample(self.services, self.bounds.services_per_client)]
        instances = []
        for svc_idx in idx:
            k = self._next_instance
            self._next_instance += 1
            instances.append(GrpcInst(self.services[svc_idx], f"10.{100 + svc_idx}.{k // 250 % 256}.{k % 250 + 1}",
                                      GRPC_INSTANCE_PORT))
        actor = GrpcActor(len(self.actors), instances, self.grpc_ports, node, fragile, self.rec, self.bounds)
        actor.on_reconnect = self._on_reconnect
        self.actors.append(actor)
        for inst in instances:
            self.by_service.setdefault(inst.service, []).append((actor, inst))
        self._nursery.start_soon(actor.run)
        return actor

    def _on_reconnect(self, actor: GrpcActor, gap_s: float) -> None:
        if self.rec.current is not None:
            rec = self.rec.current.record
            rec["grpc_max_reconnect_ms"] = max(rec.get("grpc_max_reconnect_ms", 0), int(gap_s * 1000))

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start --grpc-clients clients round-robin over the nodes (every third one fragile); run them."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nodes = list(self.grpc_ports)
            for i in range(self.bounds.clients):
                self.spawn(nodes[i % len(nodes)], fragile=i % 3 == 2)
            task_status.started()
            await trio.sleep_forever()

    async def wait_live(self, actors: list[GrpcActor], bound_s: float) -> bool:
        """Wait until every one of ``actors`` has registered its instances (at most ``bound_s``)."""
        with trio.move_on_after(bound_s):
            while any(a.state == "new" for a in actors):
                await trio.sleep(0.1)
            return True
        return False

    def held_by(self, node: str) -> int:
        """Connected clients whose connection ``node`` holds."""
        return sum(1 for a in self.actors if a.connected and a.node == node)

    # -- rounds ------------------------------------------------------------------------------------
    async def prepare_round(self, node: str) -> None:
        """Before a fault on ``node``: a fresh client and a fresh fragile one start there, and one connected
        client elsewhere moves there (as a client told to reconnect would)."""
        if not self.bounds.clients:
            return
        fresh = [self.spawn(node, fragile=False), self.spawn(node, fragile=True)]
        elsewhere = [a for a in self.actors if a.connected and a.node != node and not a.fragile]
        if elsewhere:
            mover = self.rng.choice(elsewhere)
            mover.ask("move", node)
            fresh.append(mover)
        if not await self.wait_live(fresh, 10.0):
            self.rec.warning("grpc-slow-start", node=node, detail="fresh gRPC clients not registered within 10 s")
        with trio.move_on_after(5.0):
            while any(a.connected and a.node != node for a in fresh[2:]):
                await trio.sleep(0.1)

    def churn(self) -> None:
        """During a fault: one connected client closes cleanly, another stops answering (frozen)."""
        candidates = [a for a in self.actors if a.connected]
        self.rng.shuffle(candidates)
        for actor, what in zip(candidates, ("close", "freeze"), strict=False):
            actor.ask(what)

    async def aclose(self) -> None:
        """The end of the run: every client closes (its instances are deregistered by its node)."""
        for actor in self.actors:
            if actor.state not in ENDED:
                actor.ask("close")
        with trio.move_on_after(2 * self.bounds.keepalive_s + 2):
            while any(a.state == "live" and a.connected for a in self.actors):
                await trio.sleep(0.1)
        for actor in self.actors:
            await actor.aclose()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    # -- the report ----------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """The report's ``grpc``: clients by state, reconnections, and how long ended clients stayed listed."""
        states: dict[str, int] = {}
        for a in self.actors:
            states[a.state] = states.get(a.state, 0) + 1
        reconnects = [s for a in self.actors for s in a.reconnect_s]
        vanish: dict[str, list[float]] = {}
        for a in self.actors:
            if a.state in ENDED and a.ended_at is not None:
                last = a.last_listed_after_end
                vanish.setdefault(a.state, []).append(0.0 if last is None else max(0.0, last - a.ended_at))
        return {
            "clients": len(self.actors),
            "fragile": sum(1 for a in self.actors if a.fragile),
            "states": states,
            "reconnects": len(reconnects),
            "reconnect_ms": _spread(reconnects),
            "last_listed_after_end_ms": {k: _spread(v) for k, v in sorted(vanish.items())},
            "ended": [
                {"client": a.name, "how": a.state, "at": self.rec.wall(a.ended_at),
                 "listed_after_ms": None if a.last_listed_after_end is None
                 else int((a.last_listed_after_end - a.ended_at) * 1000),
                 "history": self.rec.history(a)[-6:]}
                for a in self.actors if a.state in ENDED and a.ended_at is not None
            ],
        }


def _spread(values: list[float]) -> dict[str, int] | None:
    if not values:
        return None
    return {"n": len(values), "median": int(statistics.median(values) * 1000), "max": int(max(values) * 1000)}
