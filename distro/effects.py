"""Effects: what the core asks its runtime to do. The core never performs IO itself.

The node's parts queue them in one :class:`Outbox`, in the order they happen; the runtime drains it with
:meth:`~distro.node.DistroNode.take_effects`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from distro.datum import Entry
from distro.messages import Message
from distro.model import ServiceKey
from distro.requests import Result
from distro.versions import Version
from distro.views import ServiceView

__all__ = [
    "ClientReply",
    "Effect",
    "ForgetDeletion",
    "LifecycleEvent",
    "LifecycleKind",
    "Outbox",
    "Persist",
    "Send",
    "ServiceChanged",
    "SettingChanged",
]


@dataclass(frozen=True, slots=True)
class Send:
    """Deliver ``message`` to peer ``target``. A failure must come back as ``handle_send_failed``."""

    target: str
    message: Message


@dataclass(frozen=True, slots=True)
class ClientReply:
    """Answer the client request ``request_id`` that the core had left pending (it was forwarded)."""

    request_id: int
    result: Result


@dataclass(frozen=True, slots=True)
class ServiceChanged:
    """The read view of ``key`` changed: push it to subscribers and wake watchers."""

    key: ServiceKey
    view: ServiceView


@dataclass(frozen=True, slots=True)
class Persist:
    """Write one cluster-data entry to disk (``entry.value is None``: a tombstone), in ``seq`` order.

    Only a node configured with ``durable_writes`` emits these. The runtime reports back with
    :meth:`~distro.node.DistroNode.persisted` once everything up to ``seq`` is on disk; answers that wait
    for the disk are released then. Writing only a later version of the same entry is enough: an entry's
    versions only grow.
    """

    seq: int
    key: ServiceKey
    entry_id: str
    entry: Entry


@dataclass(frozen=True, slots=True)
class ForgetDeletion:
    """Drop the tombstone row of one cluster-data entry from disk, if the row is still that tombstone (or an
    older one): the node no longer remembers the deletion at ``version`` (more than ``max_deletion_records``
    newer ones; :mod:`distro.store`). A newer row, live or tombstone, stays. Nothing waits for it, so it has
    no ``seq``; only a node configured with ``durable_writes`` emits these."""

    key: ServiceKey
    entry_id: str
    version: Version


@dataclass(frozen=True, slots=True)
class SettingChanged:
    """A registry-wide setting changed here (written, replicated or loaded from disk): ``text`` is its new
    value, ``None`` when it was removed. The runtime hands it to whoever applies that setting."""

    name: str
    text: str | None


class LifecycleKind(StrEnum):
    """What a :class:`LifecycleEvent` reports. A ``str``: the value is what logs and traces print."""

    READY = "ready"
    """The node loaded its snapshot (or found no peer with data) and now serves and owns keys."""
    PEER_UP = "peer_up"
    """A peer is heard from and ready: it joins the live set."""
    PEER_DOWN = "peer_down"
    """A peer went silent, failed a send or is not ready: it leaves the live set."""
    OWNERSHIP_CHANGED = "ownership_changed"
    """The live set changed, and with it which keys this node owns."""
    DELETIONS_FORGOTTEN = "deletions_forgotten"
    """A tombstone collection pass forgot deletion records over ``max_deletion_records`` (the first pass of
    a run of such passes says so; ``deletion_records_dropped`` counts every one). An operator warning."""


@dataclass(frozen=True, slots=True)
class LifecycleEvent:
    """Something an operator wants in the log: what happened (``kind``) and a line saying to what."""

    kind: LifecycleKind
    detail: str


Effect = Send | ClientReply | ServiceChanged | LifecycleEvent | Persist | ForgetDeletion | SettingChanged


class Outbox:
    """The effects a node has queued for its runtime, in order. Its parts append; :meth:`take` drains."""

    __slots__ = ("_effects",)

    def __init__(self) -> None:
        self._effects: list[Effect] = []

    def append(self, effect: Effect) -> None:
        """Queue one effect."""
        self._effects.append(effect)

    def send(self, target: str, message: Message) -> None:
        """Queue a :class:`Send` of ``message`` to peer ``target``."""
        self._effects.append(Send(target, message))

    def take(self) -> list[Effect]:
        """Every queued effect, oldest first; the outbox is empty afterwards."""
        effects, self._effects = self._effects, []
        return effects

    def __len__(self) -> int:
        return len(self._effects)
