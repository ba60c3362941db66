"""Peer messages: what nodes send each other. docs/protocol.md describes each one.

All are immutable values. ``Items`` is the unit of data transfer: ``(service key, entry id, entry)``
triples, merged by the receiver entry by entry.
"""

from __future__ import annotations

from dataclasses import dataclass

from distro.datum import Datum, Entry
from distro.model import ServiceKey
from distro.requests import ClientRequest, Result

__all__ = [
    "ConsoleQuery",
    "ConsoleReply",
    "Digest",
    "Forward",
    "ForwardReply",
    "InstanceBlock",
    "Item",
    "Items",
    "Message",
    "Ping",
    "Repair",
    "SnapshotChunk",
    "SnapshotRequest",
    "SubscriberRow",
    "SubscribersQuery",
    "SubscribersReply",
    "SyncBatch",
]

Item = tuple[ServiceKey, str, Entry]
Items = tuple[Item, ...]
InstanceBlock = tuple[ServiceKey, Datum, int | None]
"""Live instance entries of one service key, by entry id, and the XOR of their entry hashes (None when the
sender did not say): a snapshot chunk carries its instances so. The codec sends them as columns, and a
starting node installs them in bulk (:meth:`DatumStore.merge_instances`), adding the sender's digest to its
own instead of hashing each entry when it applied all of them and replaced none."""


@dataclass(frozen=True, slots=True)
class Ping:
    """Liveness, every ``ping_interval_ms`` to every known peer. Carries readiness, the sender's address and
    when this life of the sender started (its clock): the gRPC connections it made before are dead."""

    ready: bool
    address: str
    started_ms: int = 0


@dataclass(frozen=True, slots=True)
class Forward:
    """A client write for a key the sender does not own, sent to the owner (one hop, never re-forwarded)."""

    request_id: int
    request: ClientRequest


@dataclass(frozen=True, slots=True)
class ForwardReply:
    """The owner's answer to a :class:`Forward`."""

    request_id: int
    result: Result


@dataclass(frozen=True, slots=True)
class SyncBatch:
    """Changed entries, coalesced per peer and flushed ``sync_delay_ms`` after the first change."""

    items: Items


@dataclass(frozen=True, slots=True)
class Digest:
    """Anti-entropy: digests of the keys the sender owns, for the sorted key range ``(low, high]``.

    ``low``/``high`` are key strings; ``None`` means unbounded. The receiver compares, and also
    reports keys it holds in that range which it believes the sender owns but the digest lacks.
    """

    digests: tuple[tuple[ServiceKey, int], ...]
    low: str | None
    high: str | None


@dataclass(frozen=True, slots=True)
class Repair:
    """Answer to a :class:`Digest`: the receiver's entries for differing keys, and the keys it wants."""

    items: Items
    want: tuple[ServiceKey, ...]


@dataclass(frozen=True, slots=True)
class SnapshotRequest:
    """Sent by a starting node to its peers until one ready peer has sent a full snapshot."""


@dataclass(frozen=True, slots=True)
class SnapshotChunk:
    """Part ``seq`` of ``total`` of the sender's whole store; ``ready=False`` says the sender has none.

    Its live instances are in ``blocks`` (one per key, do not change their dicts: the receiver may keep
    them), everything else (tombstones, settings, cluster data) in ``items``."""

    ready: bool
    snapshot_id: int
    seq: int
    total: int
    items: Items
    blocks: tuple[InstanceBlock, ...] = ()

    @property
    def entry_count(self) -> int:
        """How many entries the chunk carries (items and block entries)."""
        return len(self.items) + sum(len(datum) for _, datum, _ in self.blocks)


SubscriberRow = tuple[str, str, str, str, int, str, str]
"""One subscriber of a service on some node: ``(addrStr, agent, app, ip, port, clusters, protocol)``."""


@dataclass(frozen=True, slots=True)
class SubscribersQuery:
    """Asks a peer for its own subscribers of one service (``service/subscribers`` across the cluster)."""

    query_id: int
    key: ServiceKey


@dataclass(frozen=True, slots=True)
class SubscribersReply:
    """The answer to a :class:`SubscribersQuery`: the peer's local subscribers (at most ``MAX_ITEMS``)."""

    query_id: int
    rows: tuple[SubscriberRow, ...]


@dataclass(frozen=True, slots=True)
class ConsoleQuery:
    """Asks a peer what the web console shows of it: its version and start time and, when ``key`` is given,
    when each instance of that service last beat (only the service's owner knows)."""

    query_id: int
    key: ServiceKey | None


@dataclass(frozen=True, slots=True)
class ConsoleReply:
    """The answer to a :class:`ConsoleQuery`. ``started_ms`` and ``now_ms`` are on the peer's clock; ``beats``
    holds ``(entry id, last beat ms)`` of the asked service's instances when the peer owns it, else nothing."""

    query_id: int
    version: str
    started_ms: int
    now_ms: int
    beats: tuple[tuple[str, int], ...]


RenewItem = tuple[ServiceKey, str, str]
"""``(service key, entry id, connection id)``: one instance bound to a gRPC connection, or, with an empty
connection id, a beat receipt: a heartbeating instance whose beat the sender answered from its replica."""
TakenItem = tuple[ServiceKey, str, str, int]
"""A :data:`RenewItem` whose entry holds another connection (or none), with that entry's version ms."""


@dataclass(frozen=True, slots=True)
class Renew:
    """The node holding gRPC connections renews their instances on the owner of their keys (every
    ``heartbeat_timeout_ms / 3``, one message per owner): the owner restarts their heartbeat clocks.

    Items with an empty connection id are beat receipts (:mod:`distro.beats`): beats the sender answered
    from its replica in the last ``beat_receipt_interval_ms``. The owner restarts the clocks of those it
    holds live and answers those it deleted with their tombstones (a ``SyncBatch``), never a ``RenewReply``."""

    items: tuple[RenewItem, ...]


@dataclass(frozen=True, slots=True)
class RenewReply:
    """The owner's answer to a :class:`Renew`, sent only when something is off: ``missing`` instances it
    does not hold (the holder registers them again) and ``taken`` ones whose entry holds another connection
    or client, with the entry's version time: the holder forgets them if that write came after its own
    registration, and registers again if it came before (its own registration has not landed yet)."""

    missing: tuple[RenewItem, ...]
    taken: tuple[TakenItem, ...]


Message = (
    Ping
    | Forward
    | ForwardReply
    | SyncBatch
    | Digest
    | Repair
    | SnapshotRequest
    | SnapshotChunk
    | SubscribersQuery
    | SubscribersReply
    | ConsoleQuery
    | ConsoleReply
    | Renew
    | RenewReply
)
