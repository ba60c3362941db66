"""DistroNode: one registry node's replication state machine. Pure: no IO, no clock, no randomness.

Rules of this module (h11 style):

1. Everything that decides who owns a key, what a node stores, what must be sent and when an instance
   expires lives here or in the small modules it imports. The runtime (``cluster/``) only feeds inputs in
   and carries effects out.
2. Time arrives as ``now_ms`` on every input. Outputs are effects, drained with :meth:`take_effects`.
3. Every queue has a bound, and :meth:`statistics` reports the counters.

This module keeps the inputs (``handle_client``, ``handle_peer``, ``peer_connected``, ``handle_send_failed``,
``tick``), the outputs (``take_effects``, ``next_deadline_ms``, the views, ``statistics`` and the other
queries) and the rules that tie the parts together; each part keeps its own state in its own module:

    distro/node.py          DistroNode: inputs, outputs, forwarding, the write path, the rules below
     ├── membership.py      Membership: peers, who is up, what /operator/servers shows
     ├── ownership.py       OwnershipMap: rendezvous hashing over the live set
     ├── writes.py          ClientWrites: what each client request means (Nacos's checks and texts)
     ├── replication.py     Replication: per-peer dirty sets, SyncBatch flushes, anti-entropy digests
     ├── snapshot.py        StartupSnapshot: loading the start-up snapshot, and serving ours
     ├── health.py          HeartbeatClocks: the owner's beat clocks and the health check
     ├── beats.py           BeatReceipts: beats answered from the replica, renewed on their owners in batches
     ├── notifier.py        Notifier: changed keys and the read views swapped in for them
     ├── connections.py     ConnectionTable: gRPC connections held here and the instances bound to them
     ├── clusterwrites.py   ClusterDataWrites: cluster settings and namespaces (cluster data)
     ├── durability.py      Durability: what goes to disk, and answers that wait until it is there
     ├── cleaner.py         EmptyServiceCleaner: services a registration created, removed once empty
     └── readiness.py       the "not ready" rule and Nacos's STARTINGnow text

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

*Anti-entropy.* Every ``verify_interval_ms`` the owner sends each up peer digests of the keys it owns, a
chunk (``digest_chunk_keys``, ``digest_chunk_entries`` at most) per tick. The receiver answers with its own entries for keys that differ (or that it holds and believes the sender
owns, but the digest lacks) and asks for the sender's. Merging keeps the higher version per entry, so
both sides converge.

*Start.* A node starts not ready and owns nothing. It asks its peers for a snapshot and becomes ready
when one ready peer has sent every chunk, when every expected peer has answered that it has none (or is
unreachable), or, when no peer is up at all, after ``snapshot_timeout_ms``.

*Health.* The owner marks an instance unhealthy ``heartbeat_timeout_ms`` after its last beat and
deletes it (a tombstone) after ``instance_expire_ms``; both are replicated writes. The check runs every
``health_check_interval_ms`` but scans the owned instances only once the earliest possible deadline has
passed (a lower bound that every write starting or shortening a clock pulls in), so a large registry
whose clients beat on time costs almost nothing between deadlines; a scan then goes on a slice of
``health_scan_instances`` at every tick until done. With
``self_preservation`` a node that sees less than half of the cluster expires nothing: it cannot hear the
beats that reach the other side.

*Beats answered here.* A node that does not own a key answers a beat for an instance its replica holds
healthy (and not bound to a connection) itself, and sends the owner the beats it answered every
``beat_receipt_interval_ms`` as ``Renew`` items without a connection, one message per owner computed at
sending time; the owner restarts those clocks and answers receipts of instances it deleted with their
tombstones. An instance the replica lacks or holds unhealthy is forwarded as before (:mod:`distro.beats`).

*Connections.* An instance registered over gRPC lives as long as its connection. The node holding the
connection binds the instance in its :class:`~distro.connections.ConnectionTable` and registers it on the
owner as an ordinary entry marked with the connection id; every ``heartbeat_timeout_ms / 3`` it renews its
connections' instances with one ``Renew`` per owner (computed anew each time, so ownership changes are
followed), and the owner restarts their heartbeat clocks. The owner answers only what is off: instances
it lacks are registered again; instances now held by another connection stay bound (registered again if
that entry goes away while the connection is open). A closed or
given-up connection deregisters its instances at once (conditionally on the connection); a crashed
holder stops renewing, so its instances expire like silent heartbeat clients unless their clients
reconnect elsewhere and register again (docs/protocol.md, "gRPC connections").

*Cluster data.* Namespaces, service settings and cluster settings are entries like instances (the
namespaces under a reserved key, owned by hashing like any key): written by the owner, replicated, merged
per entry, covered by digests and snapshots (:mod:`distro.clusterdata`). With ``durable_writes`` (a node
with a data folder) each applied cluster-data change, local or replicated, is also a ``Persist`` effect,
and the answer to a cluster-data request waits until the runtime reports it on disk
(:mod:`distro.durability`). What the node loaded from disk at start (:meth:`DistroNode.load_persisted`)
merges with what its peers hold by version, like any entry. A service a registration created outlives its
last instance until the owner's empty-service cleaner removes it (:mod:`distro.cleaner`).

*Notifier.* Every applied change, local or replicated, queues its key (coalesced). Draining the queue
swaps in a new immutable :class:`~distro.views.ServiceView` per key and emits ``ServiceChanged``; the
view builds its sorted instances on first read, so a burst of writes to a big service costs no rebuilds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from operator import attrgetter

from distro.beats import BeatReceipts, answer_from_replica
from distro.cleaner import EmptyServiceCleaner
from distro.clusterdata import SETTINGS_KEY, NamespaceInfo, SettingText
from distro.clusterwrites import ClusterDataWrites, namespaces, settings
from distro.config import DistroConfig
from distro.connections import (
    ConnectionTable,
    ConnectionTimings,
    held_by,
    holder_tag,
    judge_renewal,
    made_at_ms,
    node_tag,
)
from distro.datum import IMPLICIT_ENTRY_ID, Datum, Entry, EntryValue
from distro.durability import Durability
from distro.effects import ClientReply, Effect, LifecycleEvent, LifecycleKind, Outbox, Send, SettingChanged
from distro.health import HeartbeatClocks
from distro.membership import MemberInfo, Membership, PeerState
from distro.messages import (
    Digest,
    Forward,
    ForwardReply,
    Item,
    Items,
    Message,
    Ping,
    Renew,
    RenewItem,
    RenewReply,
    Repair,
    SnapshotChunk,
    SnapshotRequest,
    SyncBatch,
    TakenItem,
)
from distro.model import Instance, ServiceKey
from distro.notifier import Notifier
from distro.ownership import MemberScores, OwnershipMap
from distro.readiness import NOT_READY, NOT_READY_TEXT
from distro.replication import Replication
from distro.requests import (
    CLUSTER_DATA_REQUESTS,
    Beat,
    ClientRequest,
    CreateNamespace,
    DeleteNamespace,
    PutSetting,
    Result,
    UpdateCluster,
    UpdateNamespace,
)
from distro.snapshot import StartupSnapshot
from distro.store import DatumStore, MergeOutcome
from distro.versions import MAX_COUNTER, HybridClock
from distro.views import ServiceView
from distro.writes import ClientWrites

__all__ = ["INTERNAL_REQUEST_IDS", "NOT_READY_TEXT", "DistroNode", "MemberInfo", "NodeStatistics"]

INTERNAL_REQUEST_IDS = 2**62
"""Writes the core makes itself (registering a renewed instance again) use request ids from here up; their
:class:`ClientReply`, when forwarded, answers nobody."""
RENEW_BATCH_ITEMS = 5_000
_STAMP = attrgetter("ms", "counter")  # what HybridClock.observe compares


@dataclass(slots=True)
class _PendingForward:
    """A client write forwarded to the owner ``target``, waiting for its answer until ``deadline_ms``."""

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
    entry_floors: int
    key_floors: int
    deletion_records_dropped: int
    pending_forwards: int
    notifier_depth: int
    dirty_entries: int
    ownership_cache_bytes: int
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
    digests_corrected: int
    snapshot_chunks_sent: int
    notifications: int
    instances_marked_unhealthy: int
    instances_expired: int
    stale_entries_refused: int
    future_entries_refused: int
    dirty_overflows: int
    notifier_overflows: int
    connections: int
    connection_instances: int
    renewals_sent: int
    renewals_received: int
    renewed_missing: int
    renewed_taken: int
    instances_orphaned: int
    beats_answered_here: int
    beat_receipts_sent: int
    beat_receipts_stale: int
    beat_receipt_bytes: int
    entries_persisted: int
    persist_backlog: int
    answers_awaiting_disk: int
    empty_services_removed: int


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
        self.store = DatumStore(config.max_deletion_records)
        self.ready = False
        self._now = now_ms
        # Silence is judged (peer timeouts, the health check) only from this time on: a node that did not
        # run for longer than its ping interval reads what reached it meanwhile first (see _advance).
        self._judge_from_ms = now_ms
        self._outbox = Outbox()
        self._membership = Membership(node_id, config.peer_timeout_ms, peers)
        self._started_ms = now_ms
        # The last health check saw at least half the cluster (False at first: the first check that does
        # marks the orphans this node knows of, which it could not while it was starting alone).
        self._had_quorum = False
        self._scores = MemberScores()  # members' scores for keys, kept across ownership maps
        self._ownership = OwnershipMap((), scores=self._scores)
        self._previous_map = self._ownership  # the map before the last change: used again if its members return
        self._replication = Replication(node_id, config, self.store, self._outbox)
        self._snapshot = StartupSnapshot(config, self.store, self._outbox, now_ms)
        self._health = HeartbeatClocks(config, self.store)
        self._notifier = Notifier(self.store, config.max_notifier_keys)
        self._writes = ClientWrites(config, self.store, self._write, self._touch, self._owner_share)
        self._owned_count: tuple[OwnershipMap, int] | None = None  # see _owned_key_count
        self.connections = ConnectionTable(ConnectionTimings.of(config))
        self._renew_interval_ms = max(100, config.heartbeat_timeout_ms // 3)
        self._receipts = BeatReceipts(config.beat_receipt_interval_ms, config.max_beat_receipt_bytes)
        self._next_renew_ms = now_ms + self._renew_interval_ms
        self._internal_seq = INTERNAL_REQUEST_IDS
        self._cluster_writes = ClusterDataWrites(config, self.store, self._write)
        self._durability = Durability(config.durable_writes, self._outbox)
        self._cleaner = EmptyServiceCleaner(config, self.store, now_ms)
        self._pending: dict[int, _PendingForward] = {}  # by request id, oldest deadline first
        # timers
        self._next_ping_ms = now_ms
        self._next_verify_ms = now_ms + config.verify_interval_ms
        self._next_health_ms = now_ms + config.health_check_interval_ms
        self._next_gc_ms = now_ms + config.gc_interval_ms
        self._forgetting = False  # the last collection pass forgot deletion records (see _collect_tombstones)
        # counters of this module (the parts keep their own; statistics() gathers them)
        self._c: dict[str, int] = dict.fromkeys(
            (
                "requests_applied forwards_sent forwards_received forward_fallbacks sync_batches_received "
                "entries_applied instances_marked_unhealthy instances_expired stale_entries_refused "
                "future_entries_refused renewals_sent renewals_received renewed_missing renewed_taken "
                "instances_orphaned beat_receipts_stale"
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
        owner = self._ownership.owner_of_key(request.key)
        if owner is None:  # not ready, and no ready peer is up
            return NOT_READY
        if owner != self.node_id and isinstance(request, Beat) and self.ready:
            answer = self._answer_beat_here(request, now_ms)
            if answer is not None:
                return answer
        if owner != self.node_id and len(self._pending) >= self.config.max_pending_forwards:
            self._c["forward_fallbacks"] += 1
            owner = self.node_id
        if owner == self.node_id:
            result = self._apply_local(request, now_ms)
            if self._must_wait_for_disk(request):
                self._durability.hold(ClientReply(request_id, result))
                return None
            return result
        self._pending[request_id] = _PendingForward(owner, request, now_ms + self.config.forward_timeout_ms)
        self._c["forwards_sent"] += 1
        self._outbox.send(owner, Forward(request_id, request))
        return None

    def beat_now(self, beat: Beat, now_ms: int) -> Result | None:
        """A beat answered at once when this node can answer it without its owner: it owns the key, or its
        replica answers (:mod:`distro.beats`), or no owner is known. None, with nothing done: it must go
        to the owner (:meth:`handle_client` forwards it). The HTTP server answers such beats inline."""
        self._advance(now_ms)
        owner = self._ownership.owner_of_key(beat.key)
        if owner is None:
            return NOT_READY
        if owner == self.node_id:
            return self._apply_local(beat, now_ms)
        if self.ready:
            return self._answer_beat_here(beat, now_ms)
        return None

    def handle_peer(self, sender: str, message: Message, now_ms: int) -> None:
        """A message from a peer."""
        self._advance(now_ms)
        if sender == self.node_id:
            return
        peer = self._membership.heard_from(sender, now_ms)
        if isinstance(message, Ping):
            self._on_ping(peer, message, now_ms)
        if peer.up != peer.ready:
            self._refresh_membership(now_ms)
        if not isinstance(message, Ping):
            self._on_message(sender, message, now_ms)

    def peer_connected(self, node_id: str, address: str, now_ms: int) -> None:
        """The runtime opened a link to a peer: learn it and greet it at once."""
        self._advance(now_ms)
        if node_id == self.node_id:
            return
        self._membership.connected(node_id, address)
        self._snapshot.link_up(node_id)
        self._outbox.send(node_id, Ping(self.ready, self.address, self._started_ms))
        if self._snapshot.owes(node_id):
            # It asked while our link to it was down (it restarted before we redialled): answer now.
            self._snapshot.serve(node_id, self.ready, now_ms)
        if not self.ready:
            self._snapshot.ask(now_ms, self._membership.peers)

    def load_persisted(self, items: Items, now_ms: int) -> None:
        """Entries read from this node's data folder at start, before it is ready: merged by version like
        replicated entries, but neither persisted again nor sent anywhere (anti-entropy and the snapshot
        it serves carry them to peers)."""
        self._advance(now_ms)
        for key, entry_id, entry in items:
            self.clock.observe(entry)
            new_key = key not in self.store
            if self.store.merge(key, entry_id, entry) is MergeOutcome.APPLIED:
                if new_key:
                    self._key_added(key)
                self._after_change(key, entry_id, entry, now_ms)

    def persisted(self, seq: int, now_ms: int) -> None:
        """The runtime wrote every ``Persist`` up to ``seq`` to disk: answers waiting for it go out."""
        self._advance(now_ms)
        self._durability.persisted(seq)

    def handle_send_failed(self, target: str, message: Message, now_ms: int) -> None:
        """The runtime could not deliver ``message``: the peer is down for now."""
        self._advance(now_ms)
        if self._membership.unreachable(target):
            self._refresh_membership(now_ms)
        if isinstance(message, Forward):
            pending = self._pending.pop(message.request_id, None)
            if pending is not None:
                self._c["forward_fallbacks"] += 1
                result = self._apply_local(pending.request, now_ms)
                self._answer(pending.request, ClientReply(message.request_id, result))
        elif isinstance(message, SnapshotChunk):
            if self._snapshot.chunk_failed(target, message.snapshot_id):
                self._snapshot.serve(target, self.ready, now_ms)
        elif isinstance(message, SnapshotRequest) and not self.ready:
            self._no_snapshot_from(target, now_ms)

    def tick(self, now_ms: int) -> None:
        """Run whatever is due: pings, peer timeouts, flushes, verify, health checks, GC, forward timeouts."""
        self._advance(now_ms)
        cfg = self.config
        judging = now_ms >= self._judge_from_ms
        if judging and self._membership.any_timed_out(now_ms):
            self._refresh_membership(now_ms)
        if now_ms >= self._next_ping_ms:
            self._next_ping_ms = now_ms + cfg.ping_interval_ms
            self._ping_all()
        if not self.ready:
            self._snapshot.retry(now_ms, self._membership.peers)
            self._check_snapshot_done(now_ms)
        self._replication.flush_due(now_ms)
        self._snapshot.serve_due(now_ms)
        if self._pending:
            self._expire_forwards(now_ms)
        if self._replication.digesting:  # a chunk per tick of the rounds in progress (none when not ready)
            self._replication.continue_digests(self._membership.up_peers if self.ready else (), self._ownership)
        if self.ready and now_ms >= self._next_verify_ms:
            self._next_verify_ms = now_ms + cfg.verify_interval_ms
            for peer_id in self._membership.up_peers:
                self._replication.send_digests(peer_id, self._ownership)
        if self._health.filling:
            self._health.fill(cfg.clock_fill_instances)
        if self.ready and judging and (now_ms >= self._next_health_ms or self._health.scanning):
            if now_ms >= self._next_health_ms:
                self._next_health_ms = now_ms + cfg.health_check_interval_ms
            self._check_health(now_ms)  # a pass in progress goes on at every tick, a slice at a time
        receipts_due = self._receipts.next_send_ms()
        if receipts_due is not None and now_ms >= receipts_due:
            self._send_beat_receipts(now_ms)
        if self.ready and now_ms >= self._next_renew_ms:
            self._next_renew_ms = now_ms + self._renew_interval_ms
            self._renew(now_ms)
        if self.ready and self._cleaner.due(now_ms):
            for key in self._cleaner.doomed(now_ms, self.is_owner):
                self._write(key, IMPLICIT_ENTRY_ID, None, now_ms)
        if now_ms >= self._next_gc_ms:
            self._next_gc_ms = now_ms + cfg.gc_interval_ms
            self._collect_tombstones(now_ms)

    def _collect_tombstones(self, now_ms: int) -> None:
        """Collect tombstones past their TTL; deletion records the store forgot over its budget leave the
        disk too, and the first pass of a run that forgets any says so (a warning in the log)."""
        cfg = self.config
        if self.store.collect_tombstones(now_ms - max(cfg.tombstone_ttl_ms, 2 * cfg.instance_expire_ms)):
            self._replication.keys_changed()
            self._owned_count = None
        forgotten = self.store.forgotten
        for version, key, entry_id in forgotten:
            self._durability.forget(key, entry_id, version)
        if forgotten and not self._forgetting:
            self._outbox.append(LifecycleEvent(
                LifecycleKind.DELETIONS_FORGOTTEN,
                f"{len(forgotten)} deletion records over max_deletion_records={cfg.max_deletion_records} "
                f"forgotten, oldest first (the newest of them from {forgotten[-1][0].ms} ms); "
                "distro_deletion_records_dropped_total counts the rest of this run",
            ))
        self._forgetting = bool(forgotten)

    # ============================================================================================
    # Outputs and queries
    # ============================================================================================
    def take_effects(self) -> list[Effect]:
        """Drain the notifier (building read views) and return every pending effect, in order."""
        if self._notifier.pending:
            self._notifier.drain(self._now, self._outbox)
        return self._outbox.take()

    def snapshot_targets(self) -> tuple[str, ...]:
        """The peers this node is sending its snapshot to (a slice every ``snapshot_slice_interval_ms``)."""
        return self._snapshot.targets()

    def hold_snapshot(self, peer_id: str, held: bool) -> None:
        """Pause (``held``) or resume the snapshot slices to ``peer_id``, whose send queue is long (the runtime
        knows it; the core does not)."""
        self._snapshot.hold(peer_id, held)

    def next_deadline_ms(self) -> int:
        """When :meth:`tick` next has something to do."""
        deadline = min(self._next_ping_ms, self._next_gc_ms)
        if self._snapshot.next_slice_ms is not None:
            deadline = min(deadline, self._snapshot.next_slice_ms)
        if self.ready:
            health_ms = max(self._next_health_ms, self._judge_from_ms)
            deadline = min(deadline, self._next_verify_ms, health_ms, self._cleaner.next_run_ms)
            if len(self.connections):
                deadline = min(deadline, self._next_renew_ms)
        else:
            deadline = min(deadline, self._snapshot.next_deadline_ms())
        deadline = self._replication.next_flush_ms(deadline)
        receipts_due = self._receipts.next_send_ms()
        if receipts_due is not None:
            deadline = min(deadline, receipts_due)
        if self._pending:
            deadline = min(deadline, next(iter(self._pending.values())).deadline_ms)
        deadline = min(deadline, max(self._membership.next_timeout_ms(deadline), self._judge_from_ms))
        if len(self._notifier) or len(self._outbox) or self._health.filling or self._replication.digesting:
            deadline = min(deadline, self._now)
        if self.ready and self._health.scanning:
            deadline = min(deadline, max(self._now, self._judge_from_ms))
        return deadline

    def view(self, key: ServiceKey) -> ServiceView | None:
        """The read view of a service, or None when it does not exist here."""
        return self._notifier.view(key)

    def views(self) -> Iterator[ServiceView]:
        """Every existing service's view."""
        return self._notifier.views()

    def namespaces(self) -> list[tuple[str, NamespaceInfo]]:
        """Every namespace created through the namespaces API, oldest first: ``(id, info)``."""
        return namespaces(self.store)

    def settings(self) -> dict[str, str]:
        """Every registry-wide setting (``PutSetting``), by name."""
        return settings(self.store)

    def owner_of(self, key: ServiceKey) -> str | None:
        """The node id that owns ``key`` in this node's current view."""
        return self._ownership.owner_of_key(key)

    def address_of(self, node_id: str) -> str:
        """A member's advertised address."""
        if node_id == self.node_id:
            return self.address
        return self._membership.address_of(node_id)

    def is_owner(self, key: ServiceKey) -> bool:
        """True when this node owns ``key``."""
        return self._ownership.owner_of_key(key) == self.node_id

    def live_members(self) -> tuple[str, ...]:
        """The live set (sorted node ids) that ownership is computed over."""
        return self._ownership.members

    def members(self) -> list[MemberInfo]:
        """Every known member, self first."""
        return self._membership.members(MemberInfo(self.node_id, self.address, self.ready, self.ready, self._now, True))

    def last_beat_ms(self, key: ServiceKey, entry_id: str) -> int | None:
        """When the owner last heard a beat for an instance (None when not owned here)."""
        return self._health.last_beat_ms(key, entry_id)

    def has_quorum(self) -> bool:
        """True when this node sees at least half of the expected members (self included)."""
        return self._membership.has_quorum(self.config.cluster_size)

    def statistics(self) -> NodeStatistics:
        """Counters and queue depths."""
        store = self.store.statistics()
        owned = self._owned_key_count()
        c = self._c
        replication = self._replication
        return NodeStatistics(
            ready=self.ready,
            peers_up=len(self._membership.up_peers),
            peers_known=len(self._membership.peers),
            keys=store.keys,
            owned_keys=owned,
            live_instances=store.live_instances,
            tombstones=store.tombstones,
            entry_floors=store.entry_floors,
            key_floors=store.key_floors,
            deletion_records_dropped=store.deletion_records_dropped,
            pending_forwards=len(self._pending),
            notifier_depth=len(self._notifier),
            dirty_entries=replication.dirty_entries,
            ownership_cache_bytes=self._ownership.cache_bytes,
            requests_applied=c["requests_applied"],
            forwards_sent=c["forwards_sent"],
            forwards_received=c["forwards_received"],
            forward_fallbacks=c["forward_fallbacks"],
            sync_batches_sent=replication.sync_batches_sent,
            sync_entries_sent=replication.sync_entries_sent,
            sync_batches_received=c["sync_batches_received"],
            entries_applied=c["entries_applied"],
            digests_sent=replication.digests_sent,
            repairs_sent=replication.repairs_sent,
            digests_corrected=self.store.digests_corrected,
            snapshot_chunks_sent=self._snapshot.chunks_sent,
            notifications=self._notifier.notifications,
            instances_marked_unhealthy=c["instances_marked_unhealthy"],
            instances_expired=c["instances_expired"],
            stale_entries_refused=c["stale_entries_refused"],
            future_entries_refused=c["future_entries_refused"],
            dirty_overflows=replication.dirty_overflows,
            notifier_overflows=self._notifier.overflows,
            connections=len(self.connections),
            connection_instances=self.connections.bound_count,
            renewals_sent=c["renewals_sent"],
            renewals_received=c["renewals_received"],
            renewed_missing=c["renewed_missing"],
            renewed_taken=c["renewed_taken"],
            instances_orphaned=c["instances_orphaned"],
            beats_answered_here=self._receipts.answered,
            beat_receipts_sent=self._receipts.sent_items,
            beat_receipts_stale=c["beat_receipts_stale"],
            beat_receipt_bytes=self._receipts.bytes,
            entries_persisted=self._durability.persisted_entries,
            persist_backlog=self._durability.latest_seq - self._durability.durable_seq,
            answers_awaiting_disk=len(self._durability),
            empty_services_removed=self._cleaner.removed,
        )

    # ============================================================================================
    # Messages
    # ============================================================================================
    def _on_ping(self, peer: PeerState, message: Ping, now_ms: int) -> None:
        starting = message.ready and not self.ready
        if starting:
            self._snapshot.peer_has_data(peer.node_id)  # it has data now: ask it again
        peer.ready = message.ready
        peer.started_ms = message.started_ms
        if message.address:
            peer.address = message.address
        if starting:
            self._snapshot.ask(now_ms, self._membership.peers)

    def _on_message(self, sender: str, message: Message, now_ms: int) -> None:
        """Any message but a ``Ping``, once its sender was heard."""
        if isinstance(message, SyncBatch):
            self._c["sync_batches_received"] += 1
            self._merge_items(message.items, now_ms)
        elif isinstance(message, Forward):
            self._c["forwards_received"] += 1
            result = self._apply_local(message.request, now_ms)
            self._answer(message.request, Send(sender, ForwardReply(message.request_id, result)))
        elif isinstance(message, ForwardReply):
            pending = self._pending.pop(message.request_id, None)
            if pending is not None:
                self._outbox.append(ClientReply(message.request_id, message.result))
        elif isinstance(message, Digest):
            self._replication.on_digest(sender, message, self._ownership)
        elif isinstance(message, Repair):
            self._merge_items(message.items, now_ms)
            if message.want:
                self._replication.answer_want(sender, message.want)
        elif isinstance(message, SnapshotRequest):
            self._snapshot.serve(sender, self.ready, now_ms)
        elif isinstance(message, SnapshotChunk):
            self._on_snapshot_chunk(sender, message, now_ms)
        elif isinstance(message, Renew):
            self._c["renewals_received"] += 1
            missing, taken, gone = self._judge_renewals(message.items, now_ms)
            if missing or taken:
                self._outbox.send(sender, RenewReply(missing, taken))
            if gone:
                # Beat receipts for instances deleted here: the sender's replica is behind; send it the
                # tombstones so that it stops answering their beats (distro/beats.py).
                self._replication.send_items(sender, gone)
        elif isinstance(message, RenewReply):
            self._after_renewal(message.missing, message.taken, now_ms)

    def _ping_all(self) -> None:
        ping = Ping(self.ready, self.address, self._started_ms)
        for peer_id in self._membership.peers:
            self._outbox.send(peer_id, ping)

    def _expire_forwards(self, now_ms: int) -> None:
        """Forwards whose owner did not answer in ``forward_timeout_ms`` are applied here instead."""
        for request_id, pending in list(self._pending.items()):
            if pending.deadline_ms > now_ms:
                break
            del self._pending[request_id]
            self._c["forward_fallbacks"] += 1
            self._answer(pending.request, ClientReply(request_id, self._apply_local(pending.request, now_ms)))

    # ============================================================================================
    # gRPC connections: the holder renews, the owner judges
    # ============================================================================================
    def _renew(self, now_ms: int) -> None:
        """Renew every bound instance on its owner: one ``Renew`` per owner (in bounded batches)."""
        self._send_renewals(self.connections.renewals(self.owner_of), now_ms)

    def _send_renewals(self, by_owner: dict[str, list[RenewItem]], now_ms: int, *, receipts: bool = False) -> None:
        """One ``Renew`` per owner (in batches of ``RENEW_BATCH_ITEMS``); this node judges its own."""
        for owner, items in by_owner.items():
            if owner == self.node_id:
                missing, taken, _ = self._judge_renewals(tuple(items), now_ms)
                self._after_renewal(missing, taken, now_ms)
                continue
            for start in range(0, len(items), RENEW_BATCH_ITEMS):
                if not receipts:
                    self._c["renewals_sent"] += 1
                self._outbox.send(owner, Renew(tuple(items[start : start + RENEW_BATCH_ITEMS])))

    def _answer_beat_here(self, beat: Beat, now_ms: int) -> Result | None:
        """A beat for a key owned elsewhere: answered from the replica when :mod:`distro.beats` allows it
        (a receipt then waits for the owner), else None (forward it)."""
        entry_id = beat.entry_id
        answer = answer_from_replica(beat, self.store.live_instance(beat.key, entry_id), self.config)
        if answer is not None:
            self._receipts.add(beat.key, entry_id, now_ms)
            if self._receipts.full:
                self._send_beat_receipts(now_ms)
        return answer

    def _send_beat_receipts(self, now_ms: int) -> None:
        """The beats answered here go to the owners of their keys now: ``Renew`` items with no connection."""
        by_owner: dict[str, list[RenewItem]] = {}
        for key, entry_id in self._receipts.take():
            owner = self.owner_of(key)
            if owner is not None:
                by_owner.setdefault(owner, []).append((key, entry_id, ""))
        self._send_renewals(by_owner, now_ms, receipts=True)

    def _judge_renewals(
        self, items: tuple[RenewItem, ...], now_ms: int
    ) -> tuple[tuple[RenewItem, ...], tuple[TakenItem, ...], list[Item]]:
        """As the owner: restart the clocks of the instances still bound to their connection, or living by
        heartbeats for a beat receipt (empty connection id), healthy again if they were not. Returns the
        connections' instances missing here and those taken by someone else, and the tombstones of the
        receipts' instances deleted here (a receipt never registers anything)."""
        missing: list[RenewItem] = []
        taken: list[TakenItem] = []
        gone: list[Item] = []
        for item in items:
            key, entry_id, connection = item
            live = self.store.live_instance(key, entry_id)
            verdict = judge_renewal(item, self.is_owner(key), live)
            if verdict == "touch" and live is not None:
                self._touch(key, entry_id, now_ms)
                if not live.healthy:
                    self._write(key, entry_id, live.with_health(True), now_ms)
            elif not connection:  # a beat receipt for an instance deleted here, or now bound to a connection
                if verdict == "missing":
                    self._c["beat_receipts_stale"] += 1
                    entry = self.store.entry(key, entry_id)
                    if entry is not None:
                        gone.append((key, entry_id, entry))
            elif verdict == "missing":
                missing.append(item)
            elif verdict == "taken":
                entry = self.store.entry(key, entry_id)
                taken.append((*item, 0 if entry is None else entry.ms))
        return tuple(missing), tuple(taken), gone

    def _after_renewal(self, missing: tuple[RenewItem, ...], taken: tuple[TakenItem, ...], now_ms: int) -> None:
        """As the holder: register again what the owner lacks and is still bound here (what another writer
        holds stays bound: see ConnectionTable.on_renew_reply)."""
        self._c["renewed_missing"] += len(missing)
        self._c["renewed_taken"] += len(taken)
        for write in self.connections.on_renew_reply(missing, taken, now_ms):
            self._internal_seq += 1
            self.handle_client(self._internal_seq, write, now_ms)

    # ============================================================================================
    # Writes: every change, local or replicated, goes through here
    # ============================================================================================
    def _apply_local(self, request: ClientRequest, now_ms: int) -> Result:
        self._c["requests_applied"] += 1
        if isinstance(request, UpdateCluster | CreateNamespace | UpdateNamespace | DeleteNamespace | PutSetting):
            return self._cluster_writes.apply(request, now_ms)
        return self._writes.apply(request, now_ms)

    def _key_added(self, key: ServiceKey) -> None:
        self._replication.key_added(key)
        self._scores.warm(key, self.node_id)
        cached = self._owned_count
        if cached is not None and cached[0] is self._ownership and self.is_owner(key):
            self._owned_count = (cached[0], cached[1] + 1)

    def _owned_key_count(self) -> int:
        """How many stored keys this node owns: counted once per ownership map, then kept up to date as
        keys are added (:meth:`_key_added`) and counted again after tombstone collection."""
        cached = self._owned_count
        if cached is None or cached[0] is not self._ownership:
            cached = (self._ownership, self._ownership.owners_of_keys(list(self.store.keys())).count(self.node_id))
            self._owned_count = cached
        return cached[1]

    def _owner_share(self) -> tuple[int, Callable[[], int]]:
        """For :class:`ClientWrites`' bound on services: the live members, and how to count this node's keys."""
        return len(self._ownership.members), self._owned_key_count

    def _must_wait_for_disk(self, request: ClientRequest) -> bool:
        """A cluster-data answer waits until every cluster-data write applied so far is on disk."""
        return self._durability.behind and isinstance(request, CLUSTER_DATA_REQUESTS)

    def _answer(self, request: ClientRequest, answer: ClientReply | Send) -> None:
        """Send an answer now, or once the disk has caught up (see :meth:`_must_wait_for_disk`)."""
        if self._must_wait_for_disk(request):
            self._durability.hold(answer)
        else:
            self._outbox.append(answer)

    def _touch(self, key: ServiceKey, entry_id: str, now_ms: int) -> None:
        if not self._health.beat(key, entry_id, now_ms) and self.is_owner(key):
            self._health.start(key, entry_id, now_ms)

    def _write(self, key: ServiceKey, entry_id: str, value: EntryValue, now_ms: int) -> None:
        """Store a new local version of an entry, persist (cluster data), replicate it and notify."""
        entry = Entry(self.clock.next(now_ms), value)
        new_key = key not in self.store
        outcome = self.store.merge(key, entry_id, entry)
        assert outcome is MergeOutcome.APPLIED, outcome
        if new_key:
            self._key_added(key)
        self._durability.record(key, entry_id, entry)
        self._after_change(key, entry_id, entry, now_ms)
        self._replication.mark_dirty(self._membership.up_peers, key, entry_id, now_ms, self._ownership)

    def _merge_items(self, items: Items, now_ms: int) -> None:
        refused: list[tuple[ServiceKey, str]] = []
        horizon_ms = now_ms + self.config.max_clock_skew_ms
        for key, entry_id, entry in items:
            if entry.ms > horizon_ms:
                # From beyond the wall clock plus the allowed skew: a peer's clock is wrong (or a frame is
                # forged). Taking it would drag this node's clock (and every write after it) along.
                self._c["future_entries_refused"] += 1
                continue
            self.clock.observe(entry)
            new_key = key not in self.store
            outcome = self.store.merge(key, entry_id, entry)
            if outcome is MergeOutcome.APPLIED:
                if new_key:
                    self._key_added(key)
                self._durability.record(key, entry_id, entry)
                self._after_change(key, entry_id, entry, now_ms)
            elif outcome is MergeOutcome.BELOW_FLOOR:
                refused.append((key, entry_id))
        for key, entry_id in refused:
            # A stale copy of something deleted and collected here: answer with a fresh tombstone.
            self._c["stale_entries_refused"] += 1
            self._write(key, entry_id, None, now_ms)

    def _merge_block(self, key: ServiceKey, entries: Datum, digest: int | None, now_ms: int) -> None:
        """A snapshot's live instances of one key, merged in bulk: what :meth:`_merge_items` does with each
        (an instance is never cluster data, so nothing is persisted; a node loading its snapshot owns
        nothing, so no clock starts), at a fraction of its cost per entry. ``digest`` is the sender's XOR of
        the entries' hashes (:meth:`DatumStore.merge_instances` uses it instead of hashing them)."""
        if not entries:
            return
        newest = max(entries.values(), key=_STAMP)
        if newest.ms > now_ms + self.config.max_clock_skew_ms or newest.counter > MAX_COUNTER:  # one by one
            self._merge_items(tuple((key, entry_id, entry) for entry_id, entry in entries.items()), now_ms)
            return
        self.clock.observe(newest)
        new_key = key not in self.store
        applied = self.store.merge_instances(key, entries, digest)
        if not applied:
            return
        if new_key:
            self._key_added(key)
        self._c["entries_applied"] += len(applied)
        self._notifier.queue(key)
        if self.is_owner(key):
            for entry_id, entry in applied.items():
                self._health.instance_changed(key, entry_id, entry.value, now_ms)  # type: ignore[arg-type]

    def _after_change(self, key: ServiceKey, entry_id: str, entry: Entry, now_ms: int) -> None:
        self._c["entries_applied"] += 1
        self._notifier.queue(key)
        value = entry.value
        if key == SETTINGS_KEY:
            self._outbox.append(SettingChanged(entry_id, value.text if isinstance(value, SettingText) else None))
        if isinstance(value, Instance):
            if self.is_owner(key):
                self._health.instance_changed(key, entry_id, value, now_ms)
        elif value is None:
            self._health.forget(key, entry_id)

    # ============================================================================================
    # Start: when the snapshot makes this node ready
    # ============================================================================================
    def _on_snapshot_chunk(self, sender: str, message: SnapshotChunk, now_ms: int) -> None:
        if message.items:
            self._merge_items(message.items, now_ms)
        for key, entries, digest in message.blocks:
            self._merge_block(key, entries, digest, now_ms)
        if self.ready:
            return
        if not message.ready:
            self._no_snapshot_from(sender, now_ms)
        elif self._snapshot.chunk_arrived(sender, message, now_ms):
            self._become_ready(now_ms, f"snapshot loaded from {sender}: {self.store.statistics().entries} entries")

    def _no_snapshot_from(self, peer_id: str, now_ms: int) -> None:
        """``peer_id`` has no snapshot to give (or cannot be asked): perhaps done, else ask the next."""
        self._snapshot.peer_has_none(peer_id)
        self._check_snapshot_done(now_ms)
        if not self.ready:
            self._snapshot.ask(now_ms, self._membership.peers)

    def _check_snapshot_done(self, now_ms: int) -> None:
        if self.ready:
            return
        membership = self._membership
        reason = self._snapshot.done_reason(now_ms, len(membership.peers), membership.up_peers)
        if reason is not None:
            self._become_ready(now_ms, reason)

    def _become_ready(self, now_ms: int, reason: str) -> None:
        self.ready = True
        self._snapshot.finish()
        self._outbox.append(LifecycleEvent(LifecycleKind.READY, reason))
        self._refresh_membership(now_ms)
        self._ping_all()
        self._next_verify_ms = min(self._next_verify_ms, now_ms)

    # ============================================================================================
    # Membership and ownership
    # ============================================================================================
    def _refresh_membership(self, now_ms: int) -> None:
        came_up, went_down = self._membership.refresh(now_ms)
        for peer_id in went_down:
            self._replication.drop(peer_id)
            # Instances of the gRPC connections it held: their clients are reconnecting elsewhere; each
            # has a whole expiry from now to register again, and no more (distro/health.py).
            self._mark_orphans(self._health.orphan_candidates(partial(held_by, node_id=peer_id)), now_ms, now_ms)
            self._outbox.append(LifecycleEvent(LifecycleKind.PEER_DOWN, f"{peer_id} ({self.address_of(peer_id)})"))
        for peer_id in came_up:
            self._outbox.append(LifecycleEvent(LifecycleKind.PEER_UP, f"{peer_id} ({self.address_of(peer_id)})"))
        members = set(self._membership.up_peers)
        if self.ready:
            members.add(self.node_id)
        if tuple(sorted(members)) != self._ownership.members:
            self._change_ownership(self._map_of(members), now_ms)
        if self.ready:
            for peer_id in came_up:
                self._replication.send_digests(peer_id, self._ownership)

    def _map_of(self, members: set[str]) -> OwnershipMap:
        """The ownership map of ``members``: the previous map when they are its members (a peer went and came
        back: its cache holds every owner it looked up, and owners never change for a member set), else a
        new one (over the kept scores). A peer's restart then walks cached maps both ways (at 10,000 keys, a
        new map's walk was ~10 ms of CPU of a step that saw the peer go or come back)."""
        if tuple(sorted(members)) == self._previous_map.members:
            return self._previous_map
        return OwnershipMap(members, scores=self._scores)

    def _change_ownership(self, new_map: OwnershipMap, now_ms: int) -> None:
        old_map, self._ownership = self._ownership, new_map
        self._previous_map = old_map
        self._owned_count = None  # counted again under new_map (a map used again may hold an old count)
        gained, lost = self._health.reassign(self.node_id, old_map, new_map, now_ms)
        self._outbox.append(
            LifecycleEvent(
                LifecycleKind.OWNERSHIP_CHANGED,
                f"members={','.join(new_map.members) or '-'} gained={len(gained)} lost={lost}",
            )
        )
        if gained:
            self._mark_known_orphans(gained, now_ms)

    def _mark_known_orphans(self, keys: list[ServiceKey], now_ms: int) -> None:
        """Gained keys (or, when quorum is back, owned ones) may hold gRPC-bound instances of a dead holder, not marked (their owner died too, or its
        mark was lost with it). Of a holder this node sees down: marked as of now (not as of when this node
        saw the holder go: a holder cut off from this node alone, not seen up again yet, is alive; its next
        renewal takes the mark off, and meanwhile the instance stays listed). Of an earlier life of a holder
        (made before its current life started, as its pings say; this node's own: not in its table): dead
        for sure, marked as of when that life started (or now, if earlier)."""
        if not self.store.bound_instances:  # none bound to a connection: nothing to mark, no walk
            return
        own_tag = node_tag(self.node_id)
        peers = {node_tag(peer_id): peer for peer_id, peer in self._membership.peers.items()}
        found: dict[int, list[tuple[ServiceKey, str, Instance]]] = {}
        for key in keys:
            for entry_id, entry in self.store.items(key):
                inst = entry.value
                if not isinstance(inst, Instance) or not inst.connection or inst.orphaned_ms:
                    continue
                tag = holder_tag(inst.connection)
                peer = peers.get(tag)
                if tag == own_tag:
                    since = None if inst.connection in self.connections else self._started_ms
                elif peer is None:
                    since = None
                elif not peer.up:
                    since = now_ms
                else:
                    made_ms = made_at_ms(inst.connection)
                    earlier_life = made_ms is not None and made_ms < peer.started_ms
                    since = min(now_ms, peer.started_ms) if earlier_life else None
                if since is not None:
                    found.setdefault(since, []).append((key, entry_id, inst))
        for since, instances in found.items():
            self._mark_orphans(instances, since, now_ms)

    def _mark_orphans(self, found: list[tuple[ServiceKey, str, Instance]], orphaned_ms: int, now_ms: int) -> None:
        """Mark owned gRPC-bound instances orphans as of ``orphaned_ms`` (a replicated write; their clocks
        start there on every owner, distro/health.py). Not while this node sees less than half the cluster:
        then it cannot tell a dead holder from its own isolation, and its writes of stale entries would
        race the other side's (as for expiry, self-preservation)."""
        if self.config.self_preservation and not self.has_quorum():
            return
        for key, entry_id, inst in found:
            self._c["instances_orphaned"] += 1
            self._write(key, entry_id, inst.replace(orphaned_ms=max(1, orphaned_ms)), now_ms)

    # ============================================================================================
    # Health and time
    # ============================================================================================
    def _check_health(self, now_ms: int) -> None:
        quorum = not self.config.self_preservation or self.has_quorum()
        if quorum and not self._had_quorum:
            # Holders that died while this node saw less than half the cluster were not marked then.
            self._mark_known_orphans([key for key in self.store.keys() if self.is_owner(key)], now_ms)
        self._had_quorum = quorum
        for key, entry_id, value in self._health.check(now_ms, quorum):
            if value is None:
                self._c["instances_expired"] += 1
            elif value.orphaned_ms:
                self._c["instances_orphaned"] += 1
            else:
                self._c["instances_marked_unhealthy"] += 1
            self._write(key, entry_id, value, now_ms)

    def _advance(self, now_ms: int) -> None:
        if now_ms > self._now:
            if now_ms - self._now > self.config.ping_interval_ms:
                # This node did not run for longer than its own ping timer allows (its process was starved
                # of CPU, say): frames from its peers and receipts may be waiting unread, and its late timer
                # may come first. Judge silence only once they had a chance to be read (from the next
                # millisecond on): a peer declared down on our own backlog moved ownership for a moment,
                # and the beat receipts sent meanwhile went to nodes that do not own their keys.
                self._judge_from_ms = now_ms + 1
            if now_ms - self._now > self.config.peer_timeout_ms:
                # This node did not run for a while (paused, suspended, starved): whatever beat through
                # the other nodes meanwhile, it did not hear. Its heartbeat clocks restart now, as when it
                # gains a key, instead of expiring instances on silence it did not observe.
                self._health.restart(now_ms)
            self._now = now_ms
