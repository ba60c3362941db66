"""Simulated Nacos 2.x gRPC clients for the simulator: instances that live by their connection.

A :class:`SimGrpcClient` connects to a node (its *holder*), registers its instance over the connection
(the node's :class:`~distro.connections.ConnectionTable` binds it and the write goes to the owner as usual),
and then, as today's SDKs do:

* when its node crashes it notices, waits ``reconnect_delay`` (drawn up to ``redo_max_ms``: nacos-sdk-python
  3.x registers again up to 30 s after it reconnected) and registers again through another node it knows;
  a client that knew only the dead node keeps trying it until it comes back;
* it may close its connection cleanly (its instance is deregistered at once), or die silently (its holder's
  detection probes the idle connection, gives up and deregisters it).

Detection runs here on the holder's table every ``connection_check_interval_ms``: a live client answers a
probe, a dead one does not. :class:`GrpcClients` keeps the clients and is driven by the simulator (events in
time order, node crashes, random actions). Everything random comes from the simulator's RNG.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from distro.config import DistroConfig
from distro.connections import new_connection_id
from distro.model import ServiceKey, make_instance
from distro.node import DistroNode
from distro.requests import ClientRequest

GrpcState = Literal["connected", "reconnecting", "closed", "dead"]


@dataclass(slots=True)
class SimGrpcClient:
    """One gRPC client with one instance of one service."""

    client_id: int
    key: ServiceKey
    ip: str
    port: int
    knows: tuple[str, ...]  # the nodes in its server list
    state: GrpcState = "reconnecting"
    holder: str | None = None  # the node its connection is on (None while reconnecting)
    connection: str = ""
    retry_at_ms: int = 0
    stopped_ms: int | None = None  # when it closed or died
    orphaned_ms: int | None = None  # when it died while its holder was already down, or its holder died after

    @property
    def alive(self) -> bool:
        """Connected or reconnecting: its instance must stay (or come back)."""
        return self.state in ("connected", "reconnecting")


class SimHost(Protocol):
    """What the gRPC clients need from the simulator (:class:`distro.testing.sim.Simulator`)."""

    now_ms: int
    rng: random.Random
    config: DistroConfig
    node_ids: list[str]
    services: list[ServiceKey]

    @property
    def nodes(self) -> Mapping[str, DistroNode | None]:
        """Every node by id; None while crashed."""

    def live_nodes(self) -> Sequence[tuple[str, DistroNode]]:
        """Running nodes, in id order."""

    def submit(self, node_id: str, request: ClientRequest) -> None:
        """A client write whose answer nobody waits for."""

    def log(self, text: str) -> None:
        """A line for the trace."""


class GrpcClients:
    """The simulator's gRPC clients, their reconnections and their holders' detection."""

    def __init__(self, sim: SimHost, *, redo_max_ms: int = 20_000) -> None:
        self.sim = sim
        self.redo_max_ms = redo_max_ms
        self.clients: list[SimGrpcClient] = []
        self._timers: list[tuple[int, int]] = []  # (when, client id): reconnection attempts
        self._next_detect_ms = sim.now_ms + sim.config.connection_check_interval_ms

    # -- clients ----------------------------------------------------------------------------------
    def add(self, key: ServiceKey, via: str, *, knows: tuple[str, ...] | None = None) -> SimGrpcClient:
        """A new client that connects to ``via`` now (and knows ``knows``, all nodes by default)."""
        cid = len(self.clients)
        client = SimGrpcClient(cid, key, f"10.8.{cid // 250}.{cid % 250 + 1}", 9000 + cid % 5,
                               knows or tuple(self.sim.node_ids))
        self.clients.append(client)
        self._connect(client, via)
        return client

    def _connect(self, client: SimGrpcClient, node_id: str) -> None:
        sim = self.sim
        node = sim.nodes.get(node_id)
        if node is None or not node.ready:
            self._retry(client, 1_000)
            return
        client.connection = new_connection_id(node_id, sim.now_ms, client.ip, 40_000 + client.client_id)
        client.holder, client.state = node_id, "connected"
        node.connections.open(client.connection, sim.now_ms)
        instance = make_instance(client.ip, client.port)
        for write in node.connections.register(client.connection, client.key, (instance,), sim.now_ms):
            sim.submit(node_id, write)
        sim.log(f"grpc client {client.client_id} connected to {node_id} as {client.connection}")

    def _retry(self, client: SimGrpcClient, delay_ms: int) -> None:
        client.state, client.holder, client.retry_at_ms = "reconnecting", None, self.sim.now_ms + delay_ms
        heapq.heappush(self._timers, (client.retry_at_ms, client.client_id))

    def close(self, client: SimGrpcClient) -> None:
        """A clean close: the holder deregisters the instance at once."""
        if client.state != "connected" or client.holder is None:
            return
        node = self.sim.nodes.get(client.holder)
        client.state, client.stopped_ms = "closed", self.sim.now_ms
        if node is not None:
            for write in node.connections.close(client.connection):
                self.sim.submit(client.holder, write)
        self.sim.log(f"grpc client {client.client_id} closed")

    def kill(self, client: SimGrpcClient) -> None:
        """The client dies silently: only its holder's detection will notice."""
        if not client.alive:
            return
        if client.state == "reconnecting":
            client.orphaned_ms = self.sim.now_ms  # no live holder: its instance is an orphan already
        client.state, client.stopped_ms = "dead", self.sim.now_ms
        self.sim.log(f"grpc client {client.client_id} died")

    def node_crashed(self, node_id: str) -> None:
        """Every connection of the node is gone: live clients reconnect after their redo delay."""
        for client in self.clients:
            if client.holder == node_id and client.state == "connected":
                delay = self.sim.rng.randint(100, self.redo_max_ms)
                self._retry(client, delay)
                self.sim.log(f"grpc client {client.client_id} lost {node_id}, registers again in {delay} ms")
            elif client.holder == node_id and client.state == "dead" and client.orphaned_ms is None:
                client.orphaned_ms = self.sim.now_ms

    # -- time -------------------------------------------------------------------------------------
    def next_event_ms(self) -> int:
        """When :meth:`run_due` next has something to do."""
        deadline = self._next_detect_ms
        if self._timers:
            deadline = min(deadline, self._timers[0][0])
        return deadline

    def run_due(self) -> None:
        """Reconnections and detection rounds that are due now."""
        sim = self.sim
        while self._timers and self._timers[0][0] <= sim.now_ms:
            _, cid = heapq.heappop(self._timers)
            client = self.clients[cid]
            if client.state != "reconnecting" or client.retry_at_ms > sim.now_ms:
                continue
            live = [n for n in client.knows if sim.nodes.get(n) is not None]
            if live:
                self._connect(client, sim.rng.choice(live))
            else:
                self._retry(client, 1_000)
        if sim.now_ms >= self._next_detect_ms:
            self._next_detect_ms = sim.now_ms + sim.config.connection_check_interval_ms
            self._detect()

    def _detect(self) -> None:
        sim = self.sim
        by_connection = {c.connection: c for c in self.clients if c.connection}
        for node_id, node in sim.live_nodes():
            detection = node.connections.detect(sim.now_ms)
            for connection in detection.probe:
                client = by_connection.get(connection)
                if client is not None and client.state == "connected" and client.holder == node_id:
                    node.connections.touch(connection, sim.now_ms)  # it answers the probe
            for connection in detection.give_up:
                for write in node.connections.close(connection):
                    sim.submit(node_id, write)

    # -- random schedules -------------------------------------------------------------------------
    def random_action(self) -> None:
        """Start a client, close one or kill one (the simulator's RNG decides)."""
        sim = self.sim
        roll = sim.rng.random()
        alive = [c for c in self.clients if c.state == "connected"]
        if roll < 0.5 or not alive:
            knows = None if sim.rng.random() < 0.8 else (sim.rng.choice(sim.node_ids),)
            self.add(sim.rng.choice(sim.services), sim.rng.choice(knows or sim.node_ids), knows=knows)
        elif roll < 0.75:
            self.close(sim.rng.choice(alive))
        else:
            self.kill(sim.rng.choice(alive))


__all__ = ["GrpcClients", "GrpcState", "SimGrpcClient", "SimHost"]
