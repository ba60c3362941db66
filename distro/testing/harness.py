"""A hand-driven harness for a few :class:`~distro.node.DistroNode` instances (like h11's ConnectionPair).

Nothing happens behind the test's back: messages a node sends wait on :attr:`Harness.wire` until the test
delivers, drops or fails them, and time only moves in :meth:`Harness.advance`. Unit tests use it to walk
one protocol exchange at a time; :meth:`Harness.advance` with ``deliver=True`` runs a fault-free cluster
forward (every message delivered at once) when the exchange itself is not what is being tested.

Each node has a simulated disk (:attr:`Harness.disks`) that survives :meth:`Harness.crash`. With
``auto_persist`` (the default) every ``Persist`` a node emits is written and acknowledged at once; without
it they wait in :attr:`Outputs.persists` until the test calls :meth:`Harness.persist`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from distro.config import DistroConfig
from distro.effects import (
    ClientReply,
    Effect,
    ForgetDeletion,
    LifecycleEvent,
    Persist,
    Send,
    ServiceChanged,
    SettingChanged,
)
from distro.messages import Message
from distro.node import DistroNode
from distro.requests import ClientRequest, Result
from distro.testing.disk import SimDisk

__all__ = ["START_MS", "Harness", "Outputs", "Wire"]

START_MS = 1_000_000


@dataclass(frozen=True, slots=True)
class Wire:
    """A message sent and not yet delivered."""

    source: str
    target: str
    message: Message


@dataclass(slots=True)
class Outputs:
    """Everything but sends that one node emitted, in order."""

    replies: list[ClientReply] = field(default_factory=list)
    changes: list[ServiceChanged] = field(default_factory=list)
    events: list[LifecycleEvent] = field(default_factory=list)
    persists: list[Persist] = field(default_factory=list)  # emitted, not yet written (auto_persist off)
    forgotten: list[ForgetDeletion] = field(default_factory=list)  # deletions dropped, not yet off the disk
    settings: list[SettingChanged] = field(default_factory=list)


class Harness:
    """Some nodes, a wire of undelivered messages, and a clock the test moves."""

    def __init__(
        self,
        node_ids: Iterable[str] = ("n1", "n2", "n3"),
        config: DistroConfig | None = None,
        now_ms: int = START_MS,
        *,
        auto_persist: bool = True,
    ) -> None:
        self.node_ids = list(node_ids)
        self.config = config or DistroConfig(cluster_size=len(self.node_ids))
        self.now_ms = now_ms
        self.nodes: dict[str, DistroNode] = {}
        self.outputs: dict[str, Outputs] = {}
        self.wire: list[Wire] = []
        self.cut: set[tuple[str, str]] = set()
        self.auto_persist = auto_persist
        self.disks: dict[str, SimDisk] = {}
        self._request_id = 0
        for node_id in self.node_ids:
            self.boot(node_id)

    # -- nodes -----------------------------------------------------------------------------------
    def boot(self, node_id: str) -> DistroNode:
        """Create (or re-create) a node with what its disk holds; it is not ready until it loads a snapshot."""
        peers = [n for n in self.node_ids if n != node_id]
        node = DistroNode(node_id, self.config, self.now_ms, peers=peers)
        disk = self.disks.setdefault(node_id, SimDisk())
        if len(disk):
            node.load_persisted(disk.items(), self.now_ms)
        self.nodes[node_id] = node
        self.outputs[node_id] = Outputs()
        self.collect(node_id)
        return node

    def crash(self, node_id: str) -> None:
        """Remove a node: messages to it fail (the sender is told) when they are delivered."""
        del self.nodes[node_id]

    def __getitem__(self, node_id: str) -> DistroNode:
        return self.nodes[node_id]

    def start(self) -> None:
        """Tick every node and deliver until all are ready and see each other."""
        for node_id in list(self.nodes):
            self.tick(node_id)
        self.deliver_all()
        self.advance(0)
        if not all(node.ready for node in self.nodes.values()):
            raise AssertionError("nodes did not become ready")

    # -- effects ---------------------------------------------------------------------------------
    def collect(self, node_id: str) -> list[Effect]:
        """Drain a node's effects: sends go on the wire, the rest into :attr:`outputs`."""
        node = self.nodes.get(node_id)
        if node is None:
            return []
        effects = node.take_effects()
        out = self.outputs[node_id]
        for effect in effects:
            if isinstance(effect, Send):
                self.wire.append(Wire(node_id, effect.target, effect.message))
            elif isinstance(effect, ClientReply):
                out.replies.append(effect)
            elif isinstance(effect, ServiceChanged):
                out.changes.append(effect)
            elif isinstance(effect, Persist):
                out.persists.append(effect)
            elif isinstance(effect, ForgetDeletion):
                out.forgotten.append(effect)
            elif isinstance(effect, SettingChanged):
                out.settings.append(effect)
            else:
                out.events.append(effect)
        if (out.persists or out.forgotten) and self.auto_persist:
            effects += self.persist(node_id)
        return effects

    def persist(self, node_id: str) -> list[Effect]:
        """Write a node's pending ``Persist`` effects to its disk and tell the node (what that releases is
        collected and returned)."""
        node = self.nodes[node_id]
        out = self.outputs[node_id]
        pending, out.persists = out.persists, []
        forgotten, out.forgotten = out.forgotten, []
        disk = self.disks.setdefault(node_id, SimDisk())
        for effect in pending:
            disk.write(effect)
        for forget in forgotten:  # after the writes, as the runtime's one transaction does
            disk.forget(forget)
        if not pending:
            return []
        node.persisted(pending[-1].seq, self.now_ms)
        return self.collect(node_id)

    def client(self, node_id: str, request: ClientRequest) -> tuple[int, Result | None]:
        """Send a client request to a node: ``(request id, immediate result or None if forwarded)``."""
        self._request_id += 1
        result = self.nodes[node_id].handle_client(self._request_id, request, self.now_ms)
        self.collect(node_id)
        return self._request_id, result

    def tick(self, node_id: str) -> None:
        """Tick one node at the current time."""
        self.nodes[node_id].tick(self.now_ms)
        self.collect(node_id)

    # -- the wire --------------------------------------------------------------------------------
    def pending(
        self, kind: type | None = None, *, source: str | None = None, target: str | None = None
    ) -> list[Wire]:
        """Undelivered messages matching every given filter, oldest first."""
        return [
            w
            for w in self.wire
            if (kind is None or isinstance(w.message, kind))
            and (source is None or w.source == source)
            and (target is None or w.target == target)
        ]

    def _take(self, kind: type | None, source: str | None, target: str | None) -> list[Wire]:
        chosen = self.pending(kind, source=source, target=target)
        ids = {id(w) for w in chosen}
        self.wire = [w for w in self.wire if id(w) not in ids]
        return chosen

    def deliver(self, kind: type | None = None, *, source: str | None = None, target: str | None = None) -> int:
        """Deliver the matching messages now (one round: what they cause stays on the wire)."""
        chosen = self._take(kind, source, target)
        for w in chosen:
            self._deliver(w)
        return len(chosen)

    def _deliver(self, w: Wire) -> None:
        node = self.nodes.get(w.target)
        if node is None:
            self._fail(w)
        elif (w.source, w.target) not in self.cut:
            node.handle_peer(w.source, w.message, self.now_ms)
            self.collect(w.target)

    def _fail(self, w: Wire) -> None:
        sender = self.nodes.get(w.source)
        if sender is not None:
            sender.handle_send_failed(w.target, w.message, self.now_ms)
            self.collect(w.source)

    def drop(self, kind: type | None = None, *, source: str | None = None, target: str | None = None) -> int:
        """Lose the matching messages silently."""
        return len(self._take(kind, source, target))

    def fail(self, kind: type | None = None, *, source: str | None = None, target: str | None = None) -> int:
        """Fail the matching messages: each sender gets ``handle_send_failed``."""
        chosen = self._take(kind, source, target)
        for w in chosen:
            self._fail(w)
        return len(chosen)

    def deliver_all(self, max_rounds: int = 1_000) -> None:
        """Deliver until the wire is empty."""
        for _ in range(max_rounds):
            if not self.wire:
                return
            self.deliver()
        raise AssertionError(f"the wire did not drain in {max_rounds} rounds: {self.wire[:5]}")

    def isolate(self, node_id: str) -> None:
        """Cut a node off, both ways (messages on cut links are lost when delivered)."""
        for other in self.node_ids:
            if other != node_id:
                self.cut.add((node_id, other))
                self.cut.add((other, node_id))

    # -- time ------------------------------------------------------------------------------------
    def step(self) -> int:
        """Move time to the earliest deadline of any node and tick the nodes that are due, delivering
        nothing. Returns the new time."""
        self.now_ms = max(self.now_ms, min(node.next_deadline_ms() for node in self.nodes.values()))
        for node_id, node in list(self.nodes.items()):
            if node.next_deadline_ms() <= self.now_ms:
                self.tick(node_id)
        return self.now_ms

    def advance(self, duration_ms: int, *, deliver: bool = True) -> None:
        """Move time forward, ticking every node at each of its deadlines. With ``deliver`` every message
        is delivered as soon as it is sent; otherwise they pile up on the wire."""
        end = self.now_ms + duration_ms
        while True:
            if deliver:
                self.deliver_all()
            next_ms = min((node.next_deadline_ms() for node in self.nodes.values()), default=end + 1)
            if next_ms > end:
                break
            self.now_ms = max(self.now_ms, next_ms)
            for node_id, node in list(self.nodes.items()):
                if node.next_deadline_ms() <= self.now_ms:
                    self.tick(node_id)
        self.now_ms = end
