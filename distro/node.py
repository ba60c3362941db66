"""DistroNode: one registry node's replication state machine. Pure: no IO, no clock, no randomness.

Rules of this module (h11 style):

1. Everything that decides who owns a key, what a node stores, what must be sent and when an instance
   expires lives here or in the small modules it imports. The runtime (``cluster/``) only feeds inputs in
   and carries effects out.
2. Time arrives as ``now_ms`` on every input. Outputs are effects, drained with :meth:`take_effects`.
3. Every queue has a bound, and :meth:`statistics` reports the counters.

Theory of operation
-------------------
*Membership.* A peer is **up** while it has been heard from within ``peer_timeout_ms`` and its last
``Ping`` said it is ready. Any message counts as hearing from it; a failed send marks it down at once.
The up peers plus this node (once ready) are the **live set**.

*Ownership.* Each service key is owned by the live member with the highest rendezvous score. The owner
takes the writes (other nodes forward them, one hop), runs the heartbeat checks, and sends digests.
When a node gains a key, every instance's heartbeat clock starts at "now" (never a stale ``lastBeat``).

*Writes.* Applying a write stores a new entry whose version comes from this node's hybrid logical clock,
marks the entry dirty for every up peer, and queues a notification. Dirty sets are flushed as
``SyncBatch`` messages, in bounded batches: at the next tick when nothing was flushed to that peer for
``sync_delay_ms`` (an isolated change is not delayed), else ``sync_delay_ms`` after the first change (a
stream of changes is coalesced). Nothing is queued for a peer that is down; anti-entropy repairs it when
it returns.

*Anti-entropy.* Every ``verify_interval_ms`` the owner sends each up peer digests of the keys it owns.
The receiver answers with its own entries for keys that differ (or that it holds and believes the sender
owns, but the digest lacks) and asks for the sender's. Merging keeps the higher version per entry, so
both sides converge.

*Start.* A node starts not ready and owns nothing. It asks its peers for a snapshot and becomes ready
when one ready peer has sent every chunk, when every expected peer has answered that it has none (or is
unreachable), or, when no peer is up at all, after ``snapshot_timeout_ms``.

*Health.* The owner marks an instance unhealthy ``heartbeat_timeout_ms`` after its last beat and
deletes it (a tombstone) after ``instance_expire_ms``; both are replicated writes. The check runs every
``health_check_interval_ms`` but scans the owned instances only once the earliest possible deadline has
passed (a lower bound that every write starting or shortening a clock pulls in), so a large registry
whose clients beat on time costs almost nothing between deadlines. With
``self_preservation`` a node that sees less than half of the cluster expires nothing: it cannot hear the
beats that reach the other side.

*Notifier.* Every applied change, local or replicated, queues its key (coalesced). Draining the queue
swaps in a new immutable :class:`~distro.views.ServiceView` per key and emits ``ServiceChanged``; the
view builds its sorted instances on first read, so a burst of writes to a big service costs no rebuilds.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from distro.config import DistroConfig
from distro.datum import META_ENTRY_ID, Entry
from distro.effects import ClientReply, Effect, LifecycleEvent, LifecycleKind, Send, ServiceChanged
from distro.messages import (
    Digest,
    Forward,
    ForwardReply,
    Item,
    Items,
    Message,
    Ping,
    Repair,
    SnapshotChunk,
    SnapshotRequest,
    SyncBatch,
)
from distro.model import (
    Instance,
    ServiceKey,
    ServiceMeta,
    ValidationError,
    instance_entry_id,
    make_instance,
)
from distro.ownership import OwnershipMap
from distro.readiness import NOT_READY, NOT_READY_TEXT
from distro.requests import (
    CODE_OK,
    CODE_RESOURCE_NOT_FOUND,
    OK,
    Beat,
    ClientRequest,
    CreateService,
    DeleteService,
    Deregister,
    Register,
    Result,
    UpdateInstance,
    UpdateService,
)
from distro.store import DatumStore, MergeOutcome
from distro.versions import HybridClock
from distro.views import ServiceView, empty_view

__all__ = ["NOT_READY_TEXT", "DistroNode", "MemberInfo", "NodeStatistics"]

NEVER = -(2**62)


@dataclass(slots=True)
class PeerState:
    """What this node knows about one peer."""

    node_id: str
    address: str
    last_heard_ms: int = NEVER
    ready: bool = False
    up: bool = False


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """One member as ``/operator/servers`` shows it."""

    node_id: str
    address: str
    up: bool
    ready: bool
    last_heard_ms: int
    is_self: bool


@dataclass(slots=True)
class _PendingForward:
    target: str
    request: ClientRequest
    deadline_ms: int


@dataclass(frozen=True, slots=True)
class NodeStatistics:
    """A snapshot of a node's counters and queue depths."""

    ready: bool
    peers_up: int
    peers_known: int
    keys: int
    owned_keys: int
    live_instances: int
    tombstones: int
    pending_forwards: int
    notifier_depth: int
    dirty_entries: int
    requests_applied: int
    forwards_sent: int
    forwards_received: int
    forward_fallbacks: int
    sync_batches_sent: int
    sync_entries_sent: int
    sync_batches_received: int
    entries_applied: int
    digests_sent: int
    repairs_sent: int
    snapshot_chunks_sent: int
    notifications: int
    instances_marked_unhealthy: int
    instances_expired: int
    stale_entries_refused: int
    dirty_overflows: int
    notifier_overflows: int


class DistroNode:
    """The state machine of one node. Not thread-safe: exactly one owner drives it."""

    def __init__(
        self,
        node_id: str,
        config: DistroConfig,
        now_ms: int,
        *,
        address: str = "",
        peers: Iterable[str] = (),
    ) -> None:
        self.node_id = node_id
        self.address = address or node_id
        self.config = config
        self.clock = HybridClock(node_id, now_ms)
        self.store = DatumStore()
        self.ready = False
        self._now = now_ms
        self._peers: dict[str, PeerState] = {}
        for peer in peers:
            if peer != node_id:
                self._peers[peer] = PeerState(peer, peer)
        self._up_peers: tuple[str, ...] = ()
        self._ownership = OwnershipMap(())
        self._last_beat: dict[ServiceKey, dict[str, int]] = {}
        # No owned instance can turn unhealthy or expire before this (a lower bound; NEVER: scan at the next
        # check). Writes that start or shorten a clock lower it, so a check with nothing due is O(1).
        self._health_due_ms = NEVER
        self._preserving = False  # the last health check saw less than half the cluster (self-preservation)
        self._dirty: dict[str, dict[ServiceKey, dict[str, None]]] = {}
        self._dirty_count: dict[str, int] = {}
        self._dirty_since: dict[str, int] = {}  # peer -> when its pending batch counts as started
        self._last_flush_ms: dict[str, int] = {}
        self._notify: dict[ServiceKey, None] = {}
        self._notify_overflow = False
        self._views: dict[ServiceKey, ServiceView] = {}
        self._revision = 0
        self._pending: dict[int, _PendingForward] = {}
        self._effects: list[Effect] = []
        self._sorted_keys: list[str] | None = None
        # timers
        self._next_ping_ms = now_ms
        self._next_verify_ms = now_ms + config.verify_interval_ms
        self._next_health_ms = now_ms + config.health_check_interval_ms
        self._next_gc_ms = now_ms + config.gc_interval_ms
        self._next_snapshot_request_ms = now_ms
        self._snapshot_deadline_ms = now_ms + config.snapshot_timeout_ms
        self._snapshot_not_ready: set[str] = set()
        self._snapshot_parts: dict[tuple[str, int], set[int]] = {}
        self._snapshot_progress_ms = NEVER  # when the last chunk of a ready peer's snapshot arrived
        self._snapshot_asked: str | None = None  # the one peer asked for its snapshot
        self._snapshot_asked_ms = NEVER
        self._snapshot_owed: set[str] = set()  # peers whose snapshot could not be sent: resend on reconnect
        self._snapshot_counter = 0
        # counters
        self._c: dict[str, int] = dict.fromkeys(
            (
                "requests_applied forwards_sent forwards_received forward_fallbacks sync_batches_sent "
                "sync_entries_sent sync_batches_received entries_applied digests_sent repairs_sent "
                "snapshot_chunks_sent notifications instances_marked_unhealthy instances_expired "
                "stale_entries_refused dirty_overflows notifier_overflows"
            ).split(),
            0,
        )

    # ============================================================================================
    # Inputs
    # ============================================================================================
    def handle_client(self, request_id: int, request: ClientRequest, now_ms: int) -> Result | None:
        """A client write. Returns its result, or None when it was forwarded to the owner (the answer
        then comes later as a :class:`ClientReply` effect)."""
        self._advance(now_ms)
        owner = self._ownership.owner(str(request.key))
        if owner is None:  # not ready, and no ready peer is up
            return NOT_READY
        if owner == self.node_id:
            return self._apply_local(request, now_ms)
        if len(self._pending) >= self.config.max_pending_forwards:
            self._c["forward_fallbacks"] += 1
            return self._apply_local(request, now_ms)
        self._pending[request_id] = _PendingForward(owner, request, now_ms + self.config.forward_timeout_ms)
        self._c["forwards_sent"] += 1
        self._effects.append(Send(owner, Forward(request_id, request)))
        return None

    def handle_peer(self, sender: str, message: Message, now_ms: int) -> None:
        """A message from a peer."""
        self._advance(now_ms)
        if sender == self.node_id:
            return
        peer = self._peers.get(sender)
        if peer is None:
            peer = self._peers[sender] = PeerState(sender, sender)
        peer.last_heard_ms = now_ms
        if isinstance(message, Ping):
            if message.ready and not self.ready:
                self._snapshot_not_ready.discard(sender)  # it has data now: ask it again
            peer.ready = message.ready
            if message.address:
                peer.address = message.address
            if message.ready and not self.ready:
                self._ask_for_snapshot(now_ms)
        if peer.up != peer.ready:
            self._refresh_membership(now_ms)
        if isinstance(message, Ping):
            return
        if isinstance(message, SyncBatch):
            self._c["sync_batches_received"] += 1
            self._merge_items(message.items, now_ms)
        elif isinstance(message, Forward):
            self._c["forwards_received"] += 1
            result = self._apply_local(message.request, now_ms)
            self._effects.append(Send(sender, ForwardReply(message.request_id, result)))
        elif isinstance(message, ForwardReply):
            pending = self._pending.pop(message.request_id, None)
            if pending is not None:
                self._effects.append(ClientReply(message.request_id, message.result))
        elif isinstance(message, Digest):
            self._on_digest(sender, message, now_ms)
        elif isinstance(message, Repair):
            self._merge_items(message.items, now_ms)
            if message.want:
                self._send_items(sender, self._items_for(message.want))
        elif isinstance(message, SnapshotRequest):
            self._on_snapshot_request(sender)
        elif isinstance(message, SnapshotChunk):
            self._on_snapshot_chunk(sender, message, now_ms)

    def peer_connected(self, node_id: str, address: str, now_ms: int) -> None:
        """The runtime opened a link to a peer: learn it and greet it at once."""
        self._advance(now_ms)
        if node_id == self.node_id:
            return
        peer = self._peers.get(node_id)
        if peer is None:
            peer = self._peers[node_id] = PeerState(node_id, address)
        elif address:
            peer.address = address
        self._effects.append(Send(node_id, Ping(self.ready, self.address)))
        if node_id in self._snapshot_owed:
            # It asked while our link to it was down (it restarted before we redialled): answer now.
            self._on_snapshot_request(node_id)
        if not self.ready:
            self._ask_for_snapshot(now_ms)

    def handle_send_failed(self, target: str, message: Message, now_ms: int) -> None:
        """The runtime could not deliver ``message``: the peer is down for now."""
        self._advance(now_ms)
        peer = self._peers.get(target)
        if peer is not None:
            peer.last_heard_ms = NEVER
            if peer.up:
                self._refresh_membership(now_ms)
        if isinstance(message, Forward):
            pending = self._pending.pop(message.request_id, None)
            if pending is not None:
                self._c["forward_fallbacks"] += 1
                result = self._apply_local(pending.request, now_ms)
                self._effects.append(ClientReply(message.request_id, result))
        elif isinstance(message, SnapshotChunk):
            self._snapshot_owed.add(target)
        elif isinstance(message, SnapshotRequest) and not self.ready:
            self._snapshot_not_ready.add(target)
            self._check_snapshot_done(now_ms)
            if not self.ready:
                self._ask_for_snapshot(now_ms)

    def tick(self, now_ms: int) -> None:
        """Run whatever is due: pings, peer timeouts, flushes, verify, health checks, GC, forward timeouts."""
        self._advance(now_ms)
        cfg = self.config
        if any(p.up and now_ms - p.last_heard_ms > cfg.peer_timeout_ms for p in self._peers.values()):
            self._refresh_membership(now_ms)
        if now_ms >= self._next_ping_ms:
            self._next_ping_ms = now_ms + cfg.ping_interval_ms
            ping = Ping(self.ready, self.address)
            for peer_id in self._peers:
                self._effects.append(Send(peer_id, ping))
        if not self.ready:
            if now_ms >= self._next_snapshot_request_ms:
                self._next_snapshot_request_ms = now_ms + cfg.snapshot_retry_ms
                # While a snapshot is arriving, asking again would only make a peer send it again (and
                # a big one then never finishes): hand over to the next peer when the one asked has sent
                # nothing for a whole interval.
                last = max(self._snapshot_progress_ms, self._snapshot_asked_ms)
                if now_ms - last >= cfg.snapshot_retry_ms:
                    self._ask_for_snapshot(now_ms, rotate=True)
            self._check_snapshot_done(now_ms)
        for peer_id, since in list(self._dirty_since.items()):
            if now_ms >= since + cfg.sync_delay_ms:
                self._flush(peer_id, now_ms)
        if self._pending:
            for request_id, pending in list(self._pending.items()):
                if pending.deadline_ms > now_ms:
                    break
                del self._pending[request_id]
                self._c["forward_fallbacks"] += 1
                self._effects.append(ClientReply(request_id, self._apply_local(pending.request, now_ms)))
        if self.ready and now_ms >= self._next_verify_ms:
            self._next_verify_ms = now_ms + cfg.verify_interval_ms
            for peer_id in self._up_peers:
                self._send_digests(peer_id)
        if self.ready and now_ms >= self._next_health_ms:
            self._next_health_ms = now_ms + cfg.health_check_interval_ms
            self._check_health(now_ms)
        if now_ms >= self._next_gc_ms:
            self._next_gc_ms = now_ms + cfg.gc_interval_ms
            ttl = max(cfg.tombstone_ttl_ms, 2 * cfg.instance_expire_ms)
            if self.store.collect_tombstones(now_ms - ttl):
                self._sorted_keys = None

    # ============================================================================================
    # Outputs and queries
    # ============================================================================================
    def take_effects(self) -> list[Effect]:
        """Drain the notifier (building read views) and return every pending effect, in order."""
        if self._notify or self._notify_overflow:
            self._drain_notifier()
        effects, self._effects = self._effects, []
        return effects

    def next_deadline_ms(self) -> int:
        """When :meth:`tick` next has something to do."""
        cfg = self.config
        deadline = min(self._next_ping_ms, self._next_gc_ms)
        if self.ready:
            deadline = min(deadline, self._next_verify_ms, self._next_health_ms)
        else:
            deadline = min(deadline, self._next_snapshot_request_ms, self._snapshot_deadline_ms)
        for since in self._dirty_since.values():
            deadline = min(deadline, since + cfg.sync_delay_ms)
        if self._pending:
            deadline = min(deadline, next(iter(self._pending.values())).deadline_ms)
        for peer in self._peers.values():
            if peer.up:
                deadline = min(deadline, peer.last_heard_ms + cfg.peer_timeout_ms + 1)
        if self._notify or self._effects:
            deadline = min(deadline, self._now)
        return deadline

    def view(self, key: ServiceKey) -> ServiceView | None:
        """The read view of a service, or None when it does not exist here."""
        return self._views.get(key)

    def views(self) -> Iterator[ServiceView]:
        """Every existing service's view."""
        return iter(self._views.values())

    def owner_of(self, key: ServiceKey) -> str | None:
        """The node id that owns ``key`` in this node's current view."""
        return self._ownership.owner(str(key))

    def address_of(self, node_id: str) -> str:
        """A member's advertised address."""
        if node_id == self.node_id:
            return self.address
        peer = self._peers.get(node_id)
        return node_id if peer is None else peer.address

    def is_owner(self, key: ServiceKey) -> bool:
        """True when this node owns ``key``."""
        return self._ownership.owner(str(key)) == self.node_id

    def live_members(self) -> tuple[str, ...]:
        """The live set (sorted node ids) that ownership is computed over."""
        return self._ownership.members

    def members(self) -> list[MemberInfo]:
        """Every known member, self first."""
        result = [MemberInfo(self.node_id, self.address, self.ready, self.ready, self._now, True)]
        for peer in sorted(self._peers.values(), key=lambda p: p.node_id):
            result.append(MemberInfo(peer.node_id, peer.address, peer.up, peer.ready, peer.last_heard_ms, False))
        return result

    def last_beat_ms(self, key: ServiceKey, entry_id: str) -> int | None:
        """When the owner last heard a beat for an instance (None when not owned here)."""
        beats = self._last_beat.get(key)
        return None if beats is None else beats.get(entry_id)

    def has_quorum(self) -> bool:
        """True when this node sees at least half of the expected members (self included)."""
        expected = max(self.config.cluster_size, 1 + len(self._peers))
        return 2 * (1 + len(self._up_peers)) >= expected

    def statistics(self) -> NodeStatistics:
        """Counters and queue depths."""
        store = self.store.statistics()
        owned = sum(1 for key in self.store.keys() if self.is_owner(key))
        c = self._c
        return NodeStatistics(
            ready=self.ready,
            peers_up=len(self._up_peers),
            peers_known=len(self._peers),
            keys=store.keys,
            owned_keys=owned,
            live_instances=store.live_instances,
            tombstones=store.tombstones,
            pending_forwards=len(self._pending),
            notifier_depth=len(self._notify),
            dirty_entries=sum(self._dirty_count.values()),
            **c,
        )

    # ============================================================================================
    # Local writes
    # ============================================================================================
    def _apply_local(self, request: ClientRequest, now_ms: int) -> Result:
        self._c["requests_applied"] += 1
        try:
            return self._apply(request, now_ms)
        except ValidationError as exc:
            return Result(exc.status, exc.message)

    def _apply(self, request: ClientRequest, now_ms: int) -> Result:
        key = request.key
        if isinstance(request, Register):
            return self._register(key, request.instance, now_ms)
        if isinstance(request, Deregister):
            entry_id = instance_entry_id(request.cluster, request.ip, request.port)
            if self.store.live_instance(key, entry_id) is not None:
                self._write(key, entry_id, None, now_ms)
            return OK
        if isinstance(request, Beat):
            return self._beat(request, now_ms)
        if isinstance(request, UpdateInstance):
            return self._update(request, now_ms)
        if isinstance(request, CreateService):
            if self.store.service_exists(key):
                raise ValidationError(f"specified service already exists, serviceName : {key.grouped_name}")
            self._check_service_room(key)
            self._write(key, META_ENTRY_ID, request.meta, now_ms)
            return OK
        if isinstance(request, UpdateService):
            if not self.store.service_exists(key):
                raise ValidationError(f"service {key.grouped_name} not found!")
            self._write(key, META_ENTRY_ID, request.meta, now_ms)
            return OK
        if isinstance(request, DeleteService):
            if not self.store.service_exists(key):
                raise ValidationError(f"specified service not exist, serviceName : {key.grouped_name}")
            if self.store.live_instance_count(key):
                raise ValidationError(
                    f"Service {key.grouped_name} is not empty, can't be delete. Please unregister instance first"
                )
            if self.store.meta(key) is not None:
                self._write(key, META_ENTRY_ID, None, now_ms)
            return OK
        raise ValidationError(f"unsupported request {type(request).__name__}")  # pragma: no cover

    def _register(self, key: ServiceKey, instance: Instance, now_ms: int) -> Result:
        entry_id = instance.entry_id
        existing = self.store.live_instance(key, entry_id)
        if existing is None:
            limit = self.config.max_instances_per_service
            datum = self.store.datum(key)
            self._check_service_room(key)
            # len(datum) bounds the live count from above: count (O(n)) only when it might be at the limit
            if datum is not None and len(datum) >= limit and self.store.live_instance_count(key) >= limit:
                raise ValidationError(
                    f"service {key.grouped_name} already has {limit} "
                    "instances, the most one service may hold"
                )
            self._write(key, entry_id, instance, now_ms)
        elif existing != instance:
            self._write(key, entry_id, instance, now_ms)
        self._touch(key, entry_id, now_ms)
        return OK

    def _check_service_room(self, key: ServiceKey) -> None:
        """Refuse a client write that would add a service beyond ``max_services`` (replication never is)."""
        limit = self.config.max_services
        if key not in self.store and len(self.store) >= limit:
            raise ValidationError(
                f"cannot create service {key.grouped_name}: this registry already holds {limit} services, "
                "the most it may hold (max_services)"
            )

    def _update(self, request: UpdateInstance, now_ms: int) -> Result:
        key = request.key
        entry_id = instance_entry_id(request.cluster, request.ip, request.port)
        existing = self.store.live_instance(key, entry_id)
        if existing is None:
            if request.must_exist:
                raise ValidationError(
                    f"instance not exist: {request.ip}:{request.port}:unknown:{request.cluster}"
                )
            base = make_instance(request.ip, request.port, cluster=request.cluster)
        else:
            base = existing
        changes: dict[str, Any] = dict(request.changes)
        updated = replace(base, **changes)
        return self._register(key, updated, now_ms)

    def _beat(self, request: Beat, now_ms: int) -> Result:
        key = request.key
        cluster, ip, port = request.cluster, request.ip, request.port
        if request.instance is not None:
            cluster, ip, port = request.instance.cluster, request.instance.ip, request.instance.port
        entry_id = instance_entry_id(cluster, ip, port)
        existing = self.store.live_instance(key, entry_id)
        interval = self.config.client_beat_interval_ms
        if existing is None:
            if request.instance is None:
                return Result(200, {"clientBeatInterval": interval, "code": CODE_RESOURCE_NOT_FOUND})
            self._register(key, request.instance.with_health(True), now_ms)
            existing = self.store.live_instance(key, entry_id)
            assert existing is not None
        else:
            self._touch(key, entry_id, now_ms)
            if not existing.healthy:
                self._write(key, entry_id, existing.with_health(True), now_ms)
        return Result(
            200,
            {
                "clientBeatInterval": existing.beat_interval_ms(interval),
                "code": CODE_OK,
                "lightBeatEnabled": True,
            },
        )

    def _touch(self, key: ServiceKey, entry_id: str, now_ms: int) -> None:
        beats = self._last_beat.get(key)
        if beats is not None:
            beats[entry_id] = now_ms
        elif self.is_owner(key):
            self._last_beat[key] = {entry_id: now_ms}
            inst = self.store.live_instance(key, entry_id)
            if inst is not None:
                self._lower_health_due(inst, now_ms)

    def _write(self, key: ServiceKey, entry_id: str, value: Instance | ServiceMeta | None, now_ms: int) -> None:
        """Store a new local version of an entry, replicate it and notify."""
        entry = Entry(self.clock.next(now_ms), value)
        new_key = key not in self.store
        outcome = self.store.merge(key, entry_id, entry)
        assert outcome is MergeOutcome.APPLIED, outcome
        if new_key:
            self._sorted_keys = None
        self._after_change(key, entry_id, entry, now_ms)
        for peer_id in self._up_peers:
            self._mark_dirty(peer_id, key, entry_id, now_ms)

    def _after_change(self, key: ServiceKey, entry_id: str, entry: Entry, now_ms: int) -> None:
        self._c["entries_applied"] += 1
        if key not in self._notify:
            if len(self._notify) < self.config.max_notifier_keys:
                self._notify[key] = None
            else:
                self._notify_overflow = True
                self._c["notifier_overflows"] += 1
        if isinstance(entry.value, Instance):
            if self.is_owner(key):
                last = self._last_beat.setdefault(key, {}).setdefault(entry_id, now_ms)
                self._lower_health_due(entry.value, last)
        elif entry.value is None:
            beats = self._last_beat.get(key)
            if beats is not None:
                beats.pop(entry_id, None)

    # ============================================================================================
    # Replication
    # ============================================================================================
    def _mark_dirty(self, peer_id: str, key: ServiceKey, entry_id: str, now_ms: int) -> None:
        dirty = self._dirty.get(peer_id)
        if dirty is None:
            dirty = self._dirty[peer_id] = {}
            self._dirty_count[peer_id] = 0
        ids = dirty.get(key)
        if ids is None:
            ids = dirty[key] = {}
        if entry_id in ids:
            return
        ids[entry_id] = None
        self._dirty_count[peer_id] += 1
        if peer_id not in self._dirty_since:
            # Leading edge: after a quiet spell the first change goes out at the next tick; only changes
            # that follow a flush within sync_delay_ms wait for it (and coalesce).
            delay = self.config.sync_delay_ms
            quiet = now_ms - self._last_flush_ms.get(peer_id, NEVER) >= delay
            self._dirty_since[peer_id] = now_ms - delay if quiet else now_ms
        if self._dirty_count[peer_id] > self.config.max_dirty_entries_per_peer:
            # Too far behind to track entry by entry: drop the set; a digest round repairs the peer.
            self._c["dirty_overflows"] += 1
            self._drop_dirty(peer_id)
            self._send_digests(peer_id)

    def _drop_dirty(self, peer_id: str) -> None:
        self._dirty.pop(peer_id, None)
        self._dirty_count.pop(peer_id, None)
        self._dirty_since.pop(peer_id, None)

    def _flush(self, peer_id: str, now_ms: int) -> None:
        self._last_flush_ms[peer_id] = now_ms
        dirty = self._dirty.get(peer_id)
        self._drop_dirty(peer_id)
        if not dirty:
            return
        items: list[Item] = []
        for key, entry_ids in dirty.items():
            datum = self.store.datum(key)
            if datum is None:
                continue
            for entry_id in entry_ids:
                entry = datum.get(entry_id)
                if entry is not None:
                    items.append((key, entry_id, entry))
        batch = self.config.sync_batch_entries
        for start in range(0, len(items), batch):
            chunk = tuple(items[start : start + batch])
            self._c["sync_batches_sent"] += 1
            self._c["sync_entries_sent"] += len(chunk)
            self._effects.append(Send(peer_id, SyncBatch(chunk)))

    def _merge_items(self, items: Items, now_ms: int) -> None:
        refused: list[tuple[ServiceKey, str]] = []
        for key, entry_id, entry in items:
            self.clock.observe(entry.version)
            new_key = key not in self.store
            outcome = self.store.merge(key, entry_id, entry)
            if outcome is MergeOutcome.APPLIED:
                if new_key:
                    self._sorted_keys = None
                self._after_change(key, entry_id, entry, now_ms)
            elif outcome is MergeOutcome.BELOW_FLOOR:
                refused.append((key, entry_id))
        for key, entry_id in refused:
            # A stale copy of something deleted and collected here: answer with a fresh tombstone.
            self._c["stale_entries_refused"] += 1
            self._write(key, entry_id, None, now_ms)

    def _items_for(self, keys: Iterable[ServiceKey]) -> list[Item]:
        items: list[Item] = []
        for key in keys:
            datum = self.store.datum(key)
            if datum is not None:
                items.extend((key, entry_id, entry) for entry_id, entry in datum.items())
        return items

    def _send_items(self, peer_id: str, items: list[Item]) -> None:
        batch = self.config.sync_batch_entries
        for start in range(0, len(items), batch):
            chunk = tuple(items[start : start + batch])
            self._c["sync_batches_sent"] += 1
            self._c["sync_entries_sent"] += len(chunk)
            self._effects.append(Send(peer_id, SyncBatch(chunk)))

    # ============================================================================================
    # Anti-entropy
    # ============================================================================================
    def _key_strings(self) -> list[str]:
        if self._sorted_keys is None:
            self._sorted_keys = sorted(str(key) for key in self.store.keys())
        return self._sorted_keys

    def _send_digests(self, peer_id: str) -> None:
        owned = sorted((str(key), key) for key in self.store.keys() if self.is_owner(key))
        chunk_size = self.config.digest_chunk_keys
        low: str | None = None
        start = 0
        while True:
            chunk = owned[start : start + chunk_size]
            start += chunk_size
            last = start >= len(owned)
            high = None if last else chunk[-1][0]
            digests = tuple((key, self.store.digest(key)) for _, key in chunk)
            self._c["digests_sent"] += 1
            self._effects.append(Send(peer_id, Digest(digests, low, high)))
            if last:
                return
            low = high

    def _on_digest(self, sender: str, message: Digest, now_ms: int) -> None:
        want: list[ServiceKey] = []
        push: list[ServiceKey] = []
        mentioned: set[ServiceKey] = set()
        for key, digest in message.digests:
            mentioned.add(key)
            if self.store.digest(key) != digest:
                if digest != 0:
                    want.append(key)
                if key in self.store:
                    push.append(key)
        keys = self._key_strings()
        lo = 0 if message.low is None else bisect.bisect_right(keys, message.low)
        hi = len(keys) if message.high is None else bisect.bisect_right(keys, message.high)
        for text in keys[lo:hi]:
            key = ServiceKey.parse(text)
            if key not in mentioned and self._ownership.owner(text) == sender:
                push.append(key)
        if want or push:
            self._c["repairs_sent"] += 1
            items = self._items_for(push)
            batch = self.config.sync_batch_entries
            if len(items) <= batch:
                self._effects.append(Send(sender, Repair(tuple(items), tuple(want))))
            else:
                self._send_items(sender, items)
                self._effects.append(Send(sender, Repair((), tuple(want))))

    # ============================================================================================
    # Snapshot
    # ============================================================================================
    def _on_snapshot_request(self, sender: str) -> None:
        self._snapshot_owed.discard(sender)
        if not self.ready:
            self._effects.append(Send(sender, SnapshotChunk(False, 0, 0, 1, ())))
            return
        items: list[Item] = []
        for key in self.store.keys():
            datum = self.store.datum(key)
            assert datum is not None
            items.extend((key, entry_id, entry) for entry_id, entry in datum.items())
        self._snapshot_counter += 1
        size = self.config.snapshot_chunk_entries
        total = max(1, (len(items) + size - 1) // size)
        for seq in range(total):
            chunk = tuple(items[seq * size : (seq + 1) * size])
            self._c["snapshot_chunks_sent"] += 1
            self._effects.append(Send(sender, SnapshotChunk(True, self._snapshot_counter, seq, total, chunk)))

    def _on_snapshot_chunk(self, sender: str, message: SnapshotChunk, now_ms: int) -> None:
        if message.items:
            self._merge_items(message.items, now_ms)
        if self.ready:
            return
        if not message.ready:
            self._snapshot_not_ready.add(sender)
            self._check_snapshot_done(now_ms)
            if not self.ready:
                self._ask_for_snapshot(now_ms)
            return
        self._snapshot_not_ready.discard(sender)
        self._snapshot_progress_ms = now_ms
        self._snapshot_deadline_ms = max(self._snapshot_deadline_ms, now_ms + self.config.snapshot_timeout_ms)
        parts = self._snapshot_parts.setdefault((sender, message.snapshot_id), set())
        if 0 <= message.seq < message.total:
            parts.add(message.seq)
        if len(parts) >= message.total:
            self._become_ready(now_ms, f"snapshot loaded from {sender}: {self.store.statistics().entries} entries")

    def _ask_for_snapshot(self, now_ms: int, *, rotate: bool = False) -> None:
        """Ask one peer for its snapshot, unless one already asked may still answer (or ``rotate``).

        One at a time: two peers sending the whole registry at once only double the work of a node that
        must load it. Peers known ready come first, then the rest, in id order and in turn; one that
        answers "not ready", cannot be reached, or stalls for ``snapshot_retry_ms`` hands over to the next.
        """
        candidates = [p for p in sorted(self._peers) if p not in self._snapshot_not_ready]
        current = self._snapshot_asked
        if not candidates or (current in candidates and not rotate):
            return
        order = [p for p in candidates if self._peers[p].ready] + [p for p in candidates if not self._peers[p].ready]
        choice = order[(order.index(current) + 1) % len(order)] if current in order else order[0]
        self._snapshot_asked = choice
        self._snapshot_asked_ms = now_ms
        self._effects.append(Send(choice, SnapshotRequest()))

    def _check_snapshot_done(self, now_ms: int) -> None:
        if self.ready:
            return
        expected = max(self.config.cluster_size - 1, len(self._peers))
        if len(self._snapshot_not_ready) >= expected:
            self._become_ready(now_ms, "no peer has data (all answered not ready or unreachable)")
        elif now_ms >= self._snapshot_deadline_ms:
            if not self._up_peers:
                self._become_ready(now_ms, "no ready peer reachable before the snapshot timeout")
            else:  # a ready peer is up: keep asking it, and look again later
                self._snapshot_deadline_ms = now_ms + self.config.snapshot_timeout_ms
                self._snapshot_not_ready.difference_update(self._up_peers)

    def _become_ready(self, now_ms: int, reason: str) -> None:
        self.ready = True
        self._snapshot_parts.clear()
        self._snapshot_not_ready.clear()
        self._snapshot_asked = None
        self._effects.append(LifecycleEvent(LifecycleKind.READY, reason))
        self._refresh_membership(now_ms)
        ping = Ping(True, self.address)
        for peer_id in self._peers:
            self._effects.append(Send(peer_id, ping))
        self._next_verify_ms = min(self._next_verify_ms, now_ms)

    # ============================================================================================
    # Membership and ownership
    # ============================================================================================
    def _refresh_membership(self, now_ms: int) -> None:
        timeout = self.config.peer_timeout_ms
        came_up: list[str] = []
        went_down: list[str] = []
        for peer in self._peers.values():
            up = peer.ready and now_ms - peer.last_heard_ms <= timeout
            if up != peer.up:
                peer.up = up
                (came_up if up else went_down).append(peer.node_id)
        self._up_peers = tuple(sorted(p.node_id for p in self._peers.values() if p.up))
        for peer_id in went_down:
            self._drop_dirty(peer_id)
            self._effects.append(LifecycleEvent(LifecycleKind.PEER_DOWN, f"{peer_id} ({self.address_of(peer_id)})"))
        for peer_id in came_up:
            self._effects.append(LifecycleEvent(LifecycleKind.PEER_UP, f"{peer_id} ({self.address_of(peer_id)})"))
        members = set(self._up_peers)
        if self.ready:
            members.add(self.node_id)
        if tuple(sorted(members)) != self._ownership.members:
            self._change_ownership(OwnershipMap(members), now_ms)
        if self.ready:
            for peer_id in came_up:
                self._send_digests(peer_id)

    def _change_ownership(self, new_map: OwnershipMap, now_ms: int) -> None:
        old_map = self._ownership
        self._ownership = new_map
        gained = lost = 0
        for key in list(self.store.keys()):
            text = str(key)
            was = old_map.owner(text) == self.node_id
            now_owned = new_map.owner(text) == self.node_id
            if now_owned and not was:
                gained += 1
                self._health_due_ms = NEVER
                datum = self.store.datum(key) or {}
                self._last_beat[key] = {
                    entry_id: now_ms for entry_id, entry in datum.items() if isinstance(entry.value, Instance)
                }
            elif was and not now_owned:
                lost += 1
                self._last_beat.pop(key, None)
        self._effects.append(
            LifecycleEvent(
                LifecycleKind.OWNERSHIP_CHANGED,
                f"members={','.join(new_map.members) or '-'} gained={gained} lost={lost}",
            )
        )

    # ============================================================================================
    # Health
    # ============================================================================================
    def _health_deadline_ms(self, inst: Instance, last_ms: int) -> int:
        cfg = self.config
        expire = inst.expire_ms(cfg.instance_expire_ms)
        if not inst.healthy:
            return last_ms + expire
        return last_ms + min(expire, inst.heartbeat_timeout_ms(cfg.heartbeat_timeout_ms))

    def _lower_health_due(self, inst: Instance, last_ms: int) -> None:
        deadline = self._health_deadline_ms(inst, last_ms)
        if deadline < self._health_due_ms:
            self._health_due_ms = deadline

    def _restart_beat_clocks(self, now_ms: int) -> None:
        """Every owned instance's heartbeat clock starts again at ``now_ms``."""
        for beats in self._last_beat.values():
            for entry_id in beats:
                beats[entry_id] = now_ms
        self._health_due_ms = NEVER  # recompute the earliest deadline at the next check

    def _check_health(self, now_ms: int) -> None:
        if self.config.self_preservation and not self.has_quorum():
            self._preserving = True
            return
        if self._preserving:
            # Quorum is back. While we saw less than half the cluster, beats went to the other side and we
            # did not hear them: our clocks are stale, not the instances. Restart them, as on gaining a key.
            self._preserving = False
            self._restart_beat_clocks(now_ms)
        if now_ms <= self._health_due_ms:
            return  # nothing can be due yet: skip the O(owned instances) scan
        cfg = self.config
        due = -NEVER
        changes: list[tuple[ServiceKey, str, Instance | None]] = []
        for key, beats in self._last_beat.items():
            datum = self.store.datum(key)
            if datum is None:
                continue
            for entry_id, entry in datum.items():
                inst = entry.value
                if not isinstance(inst, Instance):
                    continue
                last = beats.get(entry_id)
                if last is None:
                    beats[entry_id] = last = now_ms
                silent = now_ms - last
                expire = inst.expire_ms(cfg.instance_expire_ms)
                if silent > expire:
                    changes.append((key, entry_id, None))
                    continue
                if inst.healthy:
                    timeout = min(expire, inst.heartbeat_timeout_ms(cfg.heartbeat_timeout_ms))
                    if silent > timeout:
                        changes.append((key, entry_id, inst.with_health(False)))
                        continue
                    deadline = last + timeout
                else:
                    deadline = last + expire
                if deadline < due:
                    due = deadline
        self._health_due_ms = due  # the writes below lower it again for what they change
        for key, entry_id, value in changes:
            if value is None:
                self._c["instances_expired"] += 1
            else:
                self._c["instances_marked_unhealthy"] += 1
            self._write(key, entry_id, value, now_ms)

    # ============================================================================================
    # Notifier
    # ============================================================================================
    def _drain_notifier(self) -> None:
        """Swap in a new (lazy) view per queued key and emit ``ServiceChanged``.

        O(1) per key for a service that still exists: the view only points at the key's entries and
        builds its sorted instance tuple when first read (see :class:`~distro.views.ServiceView`).
        """
        if self._notify_overflow:
            self._notify_overflow = False
            keys: list[ServiceKey] = list(self.store.keys()) + [k for k in self._views if k not in self.store]
            self._notify.clear()
        else:
            keys = list(self._notify)
            self._notify.clear()
        datum_of = self.store.datum
        for key in keys:
            self._revision += 1
            self._c["notifications"] += 1
            datum = datum_of(key)
            if datum is not None and any(entry.value is not None for entry in datum.values()):
                view = ServiceView.of_datum(key, datum, self._revision, self._now)
                self._views[key] = view
            else:
                if self._views.pop(key, None) is None:
                    continue
                view = empty_view(key, self._revision, self._now)
            self._effects.append(ServiceChanged(key, view))

    def _advance(self, now_ms: int) -> None:
        if now_ms > self._now:
            if now_ms - self._now > self.config.peer_timeout_ms:
                # This node did not run for a while (paused, suspended, starved): whatever beat through
                # the other nodes meanwhile, it did not hear. Its heartbeat clocks restart now, as when it
                # gains a key, instead of expiring instances on silence it did not observe.
                self._restart_beat_clocks(now_ms)
            self._now = now_ms
