"""A deterministic simulator: N DistroNodes, a simulated clock, a faulty network and heartbeating clients.

Everything is driven by one seed. The network delays, drops, duplicates and reorders messages and can cut
links in one or both directions; nodes crash (losing all memory, but not what their simulated disks
hold: ``Persist`` effects reach the disk a few ms after they are emitted, and a crash loses the ones not
there yet) and restart from their disk; clients register, beat through random nodes, re-register on 20404
and deregister; gRPC clients (``distro.testing.grpcsim``) live by their connection and register again
elsewhere when their node crashes; an operator creates and deletes namespaces and configures services and
clusters (:mod:`distro.testing.datawork`). Checkers (``distro.testing.checkers``) look at
the cluster from outside and return readable violations.

Two ways to drive it: :meth:`Simulator.run_schedule` plays a random fault schedule (``scripts/simulate``),
and the fine-grained methods (``send_client_request``, ``deliver``, ``drop``, ``partition``, ``crash``,
``advance``...) let a Hypothesis state machine choose every step.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from distro.clusterdata import NAMESPACES_KEY
from distro.config import DistroConfig
from distro.effects import ClientReply, ForgetDeletion, LifecycleEvent, LifecycleKind, Persist, Send
from distro.messages import Message
from distro.model import Instance, ServiceKey, instance_entry_id, make_instance
from distro.node import DistroNode
from distro.requests import (
    CODE_RESOURCE_NOT_FOUND,
    Beat,
    ClientRequest,
    DeleteNamespace,
    Deregister,
    Register,
    Result,
)
from distro.testing.beatlog import BeatLog, HealthEvent
from distro.testing.datawork import ClusterDataWorkload
from distro.testing.disk import SimDisk
from distro.testing.grpcsim import GrpcClients

__all__ = ["ClientState", "FaultOptions", "InFlight", "SimClient", "Simulator", "sim_config"]


@dataclass(frozen=True, slots=True)
class FaultOptions:
    """Knobs of the simulated network and of the random fault schedule."""

    delay_min_ms: int = 1
    delay_max_ms: int = 30
    drop_probability: float = 0.02
    duplicate_probability: float = 0.02
    # Per step of run_schedule: probabilities of each fault action.
    partition_probability: float = 0.02
    one_way_partition_probability: float = 0.01
    heal_probability: float = 0.03
    crash_probability: float = 0.01
    restart_probability: float = 0.05
    max_step_ms: int = 1500
    # Cluster-data requests (namespaces, settings) per step, and how late a Persist reaches the disk.
    data_request_probability: float = 0.04
    disk_delay_max_ms: int = 20
    # Per step: a gRPC client connects, closes or dies (distro/testing/grpcsim.py). Off by default so that the
    # schedules of the heartbeat-only seeds stay as they were; scripts/simulate --grpc-rate turns it on.
    grpc_probability: float = 0.0


def _entry_id(client: SimClient) -> str:
    return instance_entry_id("DEFAULT", client.ip, client.port)


def sim_config(nodes: int) -> DistroConfig:
    """The core configuration the simulator uses by default (Nacos timings, fast replication, a data folder).

    ``max_deletion_records`` stays at its default (100,000), far above the deletions a schedule makes: no
    deletion is ever forgotten, so the checkers may demand that none is undone. A budget below a schedule's
    deletions would break that by design (docs/security.md, "Forgotten deletions"); the safety checker
    still checks the budget holds."""
    return DistroConfig(cluster_size=nodes, max_pending_forwards=1000, durable_writes=True)


@dataclass(order=True, slots=True)
class InFlight:
    """A message on the simulated wire."""

    deliver_at_ms: int
    seq: int
    source: str = field(compare=False)
    target: str = field(compare=False)
    message: Message = field(compare=False)


ClientState = Literal["new", "alive", "deregistered", "dead"]


@dataclass(slots=True)
class SimClient:
    """A heartbeating service instance, as the Java client behaves (light beats, re-register on 20404)."""

    client_id: int
    key: ServiceKey
    ip: str
    port: int
    state: ClientState = "new"
    next_beat_ms: int = 0
    last_stopped_ms: int | None = None  # when it deregistered or died

    @property
    def beating(self) -> bool:
        """True while the client keeps its instance alive."""
        return self.state == "alive"


class Simulator:
    """A simulated cluster. All randomness comes from ``seed``."""

    def __init__(
        self,
        seed: int,
        node_count: int = 3,
        *,
        config: DistroConfig | None = None,
        faults: FaultOptions | None = None,
        services: int = 3,
        beat_interval_ms: int = 5_000,
        trace: Callable[[str], None] | None = None,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.now_ms = 1_000_000
        self.config = config or sim_config(node_count)
        self.faults = faults or FaultOptions()
        self.node_ids = [f"n{i + 1}" for i in range(node_count)]
        self.nodes: dict[str, DistroNode | None] = {}
        self.incarnations: dict[str, int] = dict.fromkeys(self.node_ids, 0)
        self.blocked: set[tuple[str, str]] = set()
        self.in_flight: list[InFlight] = []
        self._seq = 0
        self.clients: list[SimClient] = []
        self.services = [ServiceKey("public", "DEFAULT_GROUP", f"svc-{i}") for i in range(services)]
        self.beat_interval_ms = beat_interval_ms
        self._request_seq = 0
        self._beats: list[tuple[int, int]] = []  # heap of (next beat ms, client id)
        self._requests: dict[tuple[str, int], tuple[int, str]] = {}  # (node, request id) -> (client, kind)
        self.trace = trace
        self.max_in_flight = 200_000
        self.delivered = 0
        self.dropped = 0
        self.disks: dict[str, SimDisk] = {node_id: SimDisk() for node_id in self.node_ids}
        self._unflushed: dict[str, list[tuple[int, Persist | ForgetDeletion]]] = {n: [] for n in self.node_ids}
        self.data = ClusterDataWorkload()
        self._data_requests: dict[tuple[str, int], ClientRequest] = {}  # (node, request id) -> request
        self.grpc = GrpcClients(self)
        # What the heartbeat checker needs (distro/testing/beatlog.py): faults, beats, health events.
        self.beat_log = BeatLog(horizon_ms=2 * self.config.instance_expire_ms + 60_000)
        for node_id in self.node_ids:
            self._boot(node_id)

    # ---------------------------------------------------------------------------------------------
    # Nodes
    # ---------------------------------------------------------------------------------------------
    def _boot(self, node_id: str) -> None:
        peers = [n for n in self.node_ids if n != node_id]
        node = DistroNode(node_id, self.config, self.now_ms, peers=peers)
        disk = self.disks[node_id]
        if len(disk):
            node.load_persisted(disk.items(), self.now_ms)
        self.nodes[node_id] = node
        self._drain(node_id)

    def live_nodes(self) -> list[tuple[str, DistroNode]]:
        """Running nodes, in id order."""
        return [(nid, node) for nid, node in self.nodes.items() if node is not None]

    def crash(self, node_id: str) -> None:
        """Kill a node: its memory is lost and messages to it fail."""
        if self.nodes.get(node_id) is None:
            return
        self.nodes[node_id] = None
        self.beat_log.fault(self.now_ms)
        self._unflushed[node_id].clear()  # written but not on disk yet: lost with the process
        self._log(f"crash {node_id}")
        self.grpc.node_crashed(node_id)

    def restart(self, node_id: str) -> None:
        """Start a crashed node again with what its disk holds; it loads a snapshot from its peers."""
        if self.nodes.get(node_id) is not None:
            return
        self.now_ms += 1  # a restart never happens in the same millisecond as the crash
        self.incarnations[node_id] += 1
        self.beat_log.fault(self.now_ms)
        self._boot(node_id)
        self._log(f"restart {node_id}")

    def partition(self, source: str, target: str, both_ways: bool = True) -> None:
        """Cut the link ``source -> target`` (and back, unless one-way)."""
        self.blocked.add((source, target))
        self.beat_log.fault(self.now_ms)
        if both_ways:
            self.blocked.add((target, source))
        self._log(f"partition {source}{'<' if both_ways else ''}->{target}")

    def isolate(self, node_id: str) -> None:
        """Cut one node off from all others, both ways."""
        for other in self.node_ids:
            if other != node_id:
                self.partition(node_id, other)

    def heal(self) -> None:
        """Remove every partition."""
        self.blocked.clear()
        self.beat_log.fault(self.now_ms)
        self._log("heal")

    # ---------------------------------------------------------------------------------------------
    # Network
    # ---------------------------------------------------------------------------------------------
    def _send(self, source: str, target: str, message: Message) -> None:
        node = self.nodes.get(target)
        if node is None:
            # Connection refused: the sender learns at once.
            sender = self.nodes.get(source)
            if sender is not None:
                sender.handle_send_failed(target, message, self.now_ms)
            return
        if (source, target) in self.blocked:
            self._lost()
            return
        faults = self.faults
        if self.rng.random() < faults.drop_probability:
            self._lost()
            return
        copies = 2 if self.rng.random() < faults.duplicate_probability else 1
        for _ in range(copies):
            if len(self.in_flight) >= self.max_in_flight:
                self._lost()
                return
            delay = self.rng.randint(faults.delay_min_ms, max(faults.delay_min_ms, faults.delay_max_ms))
            self._seq += 1
            heapq.heappush(self.in_flight, InFlight(self.now_ms + delay, self._seq, source, target, message))

    def deliver(self, index: int) -> None:
        """Deliver one in-flight message now, whatever its scheduled time (reordering)."""
        if not self.in_flight:
            return
        item = self.in_flight.pop(index % len(self.in_flight))
        heapq.heapify(self.in_flight)
        self._deliver(item)

    def drop(self, index: int) -> None:
        """Lose one in-flight message."""
        if self.in_flight:
            self.in_flight.pop(index % len(self.in_flight))
            heapq.heapify(self.in_flight)
            self._lost()

    def _lost(self) -> None:
        self.dropped += 1
        self.beat_log.fault(self.now_ms)

    def _deliver(self, item: InFlight) -> None:
        node = self.nodes.get(item.target)
        if node is None or (item.source, item.target) in self.blocked:
            self._lost()
            return
        self.delivered += 1
        node.handle_peer(item.source, item.message, self.now_ms)
        self._drain(item.target)

    # ---------------------------------------------------------------------------------------------
    # Effects
    # ---------------------------------------------------------------------------------------------
    def _drain(self, node_id: str) -> None:
        node = self.nodes.get(node_id)
        while node is not None:
            effects = node.take_effects()
            if not effects:
                return
            for effect in effects:
                if isinstance(effect, Send):
                    self._send(node_id, effect.target, effect.message)
                elif isinstance(effect, ClientReply):
                    self._client_result(node_id, effect.request_id, effect.result)
                elif isinstance(effect, LifecycleEvent):
                    self._lifecycle(node_id, effect)
                elif isinstance(effect, (Persist, ForgetDeletion)):
                    # Written in order: never before the write emitted ahead of it.
                    pending = self._unflushed[node_id]
                    due = self.now_ms + self.rng.randint(0, self.faults.disk_delay_max_ms)
                    pending.append((max(due, pending[-1][0]) if pending else due, effect))
            node = self.nodes.get(node_id)

    def _lifecycle(self, node_id: str, event: LifecycleEvent) -> None:
        """A node's lifecycle event (ready, peer up or down, ownership changed...): traced, and ownership
        changes recorded for the checkers."""
        if event.kind is LifecycleKind.OWNERSHIP_CHANGED:
            self.beat_log.view_changed(self.now_ms)
        self._log(f"{node_id} {event.kind}: {event.detail}")

    def _log(self, text: str) -> None:
        if self.trace is not None:
            self.trace(f"[{self.now_ms}] {text}")

    def log(self, text: str) -> None:
        """A line for the trace (the gRPC clients write theirs here)."""
        self._log(text)

    def submit(self, node_id: str, request: ClientRequest) -> None:
        """A client write whose answer nobody waits for (a gRPC connection's registration or deregistration)."""
        node = self.nodes.get(node_id)
        if node is None:
            return
        self._request_seq += 1
        node.handle_client(self._request_seq, request, self.now_ms)
        self._drain(node_id)

    # ---------------------------------------------------------------------------------------------
    # Clients
    # ---------------------------------------------------------------------------------------------
    def add_client(self, service_index: int | None = None) -> SimClient:
        """A new client instance (not yet registered)."""
        cid = len(self.clients)
        if service_index is None:
            service_index = self.rng.randrange(len(self.services))
        key = self.services[service_index % len(self.services)]
        client = SimClient(cid, key, f"10.0.{cid // 250}.{cid % 250 + 1}", 8000 + cid % 7)
        self.clients.append(client)
        return client

    def send_client_request(self, client: SimClient, node_id: str, kind: str) -> None:
        """Send ``register``, ``beat`` or ``deregister`` for ``client`` to ``node_id``."""
        node = self.nodes.get(node_id)
        if node is None:
            return  # the client's connection is refused; it tries again on its next beat
        request: ClientRequest
        if kind == "register":
            request = Register(client.key, make_instance(client.ip, client.port))
        elif kind == "beat":
            request = Beat(client.key, "DEFAULT", client.ip, client.port)
        else:
            request = Deregister(client.key, "DEFAULT", client.ip, client.port)
        self.beat_log.request(client.client_id, self.now_ms, self.calm(), renews=kind != "deregister")
        self._handle_client_request(client, node_id, kind, request)

    def _handle_client_request(self, client: SimClient, node_id: str, kind: str, request: ClientRequest) -> None:
        """The node reads a client's request (when it arrives, unless a subclass makes the node late)."""
        node = self.nodes.get(node_id)
        if node is None:
            return
        self._request_seq += 1
        request_id = self._request_seq
        result = node.handle_client(request_id, request, self.now_ms)
        if result is None:
            if len(self._requests) < 100_000:
                self._requests[(node_id, request_id)] = (client.client_id, kind)
        else:
            self._on_client_result(client, kind, result, node_id)
        self._drain(node_id)

    def send_data_request(self, node_id: str, request: ClientRequest | None = None) -> None:
        """Send a cluster-data request (a random one from the workload when none is given) to ``node_id``."""
        node = self.nodes.get(node_id)
        if node is None:
            return
        if request is None:
            request = self.data.issue(self.rng, self.now_ms)
        self._request_seq += 1
        request_id = self._request_seq
        result = node.handle_client(request_id, request, self.now_ms)
        if result is None:
            if len(self._data_requests) < 100_000:
                self._data_requests[(node_id, request_id)] = request
        else:
            self._data_answered(request, result)
        self._drain(node_id)

    def _data_answered(self, request: ClientRequest, result: Result) -> None:
        deleted = isinstance(request, DeleteNamespace) and any(
            (entry := node.store.entry(NAMESPACES_KEY, request.namespace_id)) is not None and entry.is_tombstone
            for _, node in self.live_nodes()
        )
        self.data.answered(request, result, self.now_ms, deleted=deleted)

    def _client_result(self, node_id: str, request_id: int, result: Result) -> None:
        data_request = self._data_requests.pop((node_id, request_id), None)
        if data_request is not None:
            self._data_answered(data_request, result)
            return
        origin = self._requests.pop((node_id, request_id), None)
        if origin is not None:
            self._on_client_result(self.clients[origin[0]], origin[1], result, node_id)

    def _on_client_result(self, client: SimClient, kind: str, result: Result, node_id: str) -> None:
        if (
            kind == "beat"
            and client.beating
            and isinstance(result.body, dict)
            and result.body.get("code") == CODE_RESOURCE_NOT_FOUND
        ):
            self.send_client_request(client, node_id, "register")

    def start_client(self, client: SimClient, node_id: str) -> None:
        """Register the client and start its heartbeats."""
        client.state = "alive"
        client.next_beat_ms = self.now_ms + self.beat_interval_ms
        heapq.heappush(self._beats, (client.next_beat_ms, client.client_id))
        self.send_client_request(client, node_id, "register")

    def deregister_client(self, client: SimClient, node_id: str) -> None:
        """Deregister and stop beating."""
        if client.state != "alive":
            return
        client.state = "deregistered"
        client.last_stopped_ms = self.now_ms
        self.send_client_request(client, node_id, "deregister")

    def kill_client(self, client: SimClient) -> None:
        """The client dies silently: no more beats, no deregistration."""
        if client.state == "alive":
            client.state = "dead"
            client.last_stopped_ms = self.now_ms

    def _random_node_id(self) -> str:
        return self.rng.choice(self.node_ids)

    # ---------------------------------------------------------------------------------------------
    # Time
    # ---------------------------------------------------------------------------------------------
    def advance(self, duration_ms: int) -> None:
        """Let ``duration_ms`` of simulated time pass, processing every event in time order."""
        end = self.now_ms + duration_ms
        while True:
            next_ms = end + 1
            if self.in_flight:
                next_ms = min(next_ms, self.in_flight[0].deliver_at_ms)
            for node_id, node in self.live_nodes():
                next_ms = min(next_ms, self._due_ms(node_id, node))
            while self._beats and not self.clients[self._beats[0][1]].beating:
                heapq.heappop(self._beats)
            if self._beats:
                next_ms = min(next_ms, self._beats[0][0])
            for pending in self._unflushed.values():
                if pending:
                    next_ms = min(next_ms, pending[0][0])
            next_ms = min(next_ms, self.grpc.next_event_ms())
            if next_ms > end:
                break
            self.now_ms = max(self.now_ms, next_ms)
            self._flush_disks()
            while self.in_flight and self.in_flight[0].deliver_at_ms <= self.now_ms:
                self._deliver(heapq.heappop(self.in_flight))
            for node_id, node in self.live_nodes():
                if self._due_ms(node_id, node) <= self.now_ms:
                    self._tick(node_id, node)
            while self._beats and self._beats[0][0] <= self.now_ms:
                _, client_id = heapq.heappop(self._beats)
                client = self.clients[client_id]
                if not client.beating:
                    continue
                client.next_beat_ms = self.now_ms + self.beat_interval_ms
                heapq.heappush(self._beats, (client.next_beat_ms, client_id))
                self.send_client_request(client, self._random_node_id(), "beat")
            self.grpc.run_due()
        self.now_ms = end

    def _due_ms(self, node_id: str, node: DistroNode) -> int:
        """When the simulator next runs ``node_id`` (its core's next deadline; a subclass that models a node
        not running for a while, as :mod:`distro.testing.starve`, answers later)."""
        return node.next_deadline_ms()

    def _tick(self, node_id: str, node: DistroNode) -> None:
        """Tick a node, recording what its health check did to heartbeating clients' instances."""
        alive = [c for c in self.clients if c.beating]
        before = [node.store.live_instance(c.key, _entry_id(c)) for c in alive]
        node.tick(self.now_ms)
        for client, was in zip(alive, before, strict=True):
            if was is None:
                continue
            entry = node.store.entry(client.key, _entry_id(client))
            if entry is None or entry.version.node != node_id:
                continue
            if entry.value is None:
                self.beat_log.health(HealthEvent(self.now_ms, node_id, client.client_id, "expired"))
            elif isinstance(entry.value, Instance) and was.healthy and not entry.value.healthy:
                self.beat_log.health(HealthEvent(self.now_ms, node_id, client.client_id, "unhealthy"))
        self._drain(node_id)

    def calm(self) -> bool:
        """Every node running and ready, no link cut, and every node's live set the full membership."""
        if self.blocked:
            return False
        members = tuple(sorted(self.node_ids))
        return all(node is not None and node.ready and node.live_members() == members for node in self.nodes.values())

    def _flush_disks(self) -> None:
        """Write what is due to each node's disk, in order, and tell the node how far it got."""
        for node_id, pending in self._unflushed.items():
            node = self.nodes.get(node_id)
            written = 0
            while pending and pending[0][0] <= self.now_ms:
                _, effect = pending.pop(0)
                if isinstance(effect, ForgetDeletion):
                    self.disks[node_id].forget(effect)
                    continue
                self.disks[node_id].write(effect)
                written = effect.seq
            if written and node is not None:
                node.persisted(written, self.now_ms)
                self._drain(node_id)

    # ---------------------------------------------------------------------------------------------
    # Whole schedules
    # ---------------------------------------------------------------------------------------------
    def random_step(self) -> None:
        """One step of a random schedule: a client action or a fault, then some time passes."""
        rng, f = self.rng, self.faults
        if f.grpc_probability and rng.random() < f.grpc_probability:
            self.grpc.random_action()
        roll = rng.random()
        live = [nid for nid, node in self.nodes.items() if node is not None]
        crashed = [nid for nid, node in self.nodes.items() if node is None]
        if roll < f.crash_probability and len(live) > 1:
            self.crash(rng.choice(live))
        elif (roll := roll - f.crash_probability) < f.restart_probability and crashed:
            self.restart(rng.choice(crashed))
        elif (roll := roll - f.restart_probability) < f.partition_probability:
            self.isolate(rng.choice(self.node_ids))
        elif (roll := roll - f.partition_probability) < f.one_way_partition_probability:
            a, b = rng.sample(self.node_ids, 2)
            self.partition(a, b, both_ways=False)
        elif (roll := roll - f.one_way_partition_probability) < f.heal_probability:
            self.heal()
        else:
            action = rng.random()
            alive = [c for c in self.clients if c.state == "alive"]
            if action < 0.15 or not alive:
                self.start_client(self.add_client(), self._random_node_id())
            elif action < 0.20:
                self.deregister_client(rng.choice(alive), self._random_node_id())
            elif action < 0.23:
                self.kill_client(rng.choice(alive))
            elif action < 0.23 + f.data_request_probability:
                self.send_data_request(self._random_node_id())
        self.advance(rng.randint(1, f.max_step_ms))

    def settle_ms(self) -> int:
        """How long a healed, fault-free cluster gets to converge before the liveness check.

        Long enough for the last instance to expire, and then for the empty-service cleaner to remove the
        service it leaves (grace plus one check interval) and for that removal to reach every node: the
        cleaner's tombstone is the last change a quiet cluster makes.
        """
        cfg = self.config
        return (
            cfg.instance_expire_ms
            + 3 * cfg.verify_interval_ms
            + 2 * self.beat_interval_ms
            + cfg.peer_timeout_ms
            + cfg.snapshot_timeout_ms
            + 2 * cfg.health_check_interval_ms
            + cfg.empty_service_grace_ms
            + cfg.empty_service_clean_interval_ms
        )

    def stop_faults(self) -> None:
        """Heal every partition, restart every crashed node, and make the network reliable."""
        self.heal()
        for node_id, node in list(self.nodes.items()):
            if node is None:
                self.restart(node_id)
        self.faults = FaultOptions(
            delay_min_ms=self.faults.delay_min_ms,
            delay_max_ms=self.faults.delay_max_ms,
            drop_probability=0.0,
            duplicate_probability=0.0,
        )

    def run_schedule(self, steps: int) -> None:
        """Play ``steps`` random steps with faults, then stop faults and let the cluster settle."""
        for _ in range(steps):
            self.random_step()
        self.stop_faults()
        self.advance(self.settle_ms())
