"""The start-up snapshot: how a starting node loads the registry from a peer, and how it serves its own.

A node starts not ready and owns nothing. It asks one peer at a time for a snapshot (peers known ready
first, then the rest, in node id order and in turn) and becomes ready when one ready peer has sent every
chunk, when every expected peer has answered that it has none (or is unreachable), or, when no peer is up
at all, after ``snapshot_timeout_ms``. One that answers "not ready", cannot be reached, or sends nothing
for ``snapshot_retry_ms`` hands over to the next. Becoming ready is the node's rule (:mod:`distro.node`);
this module says when.

A ready node answers a ``SnapshotRequest`` with its whole store in chunks of ``snapshot_chunk_entries``
(a node that is not ready answers one empty "not ready" chunk), ``snapshot_slice_chunks`` chunks every
``snapshot_slice_interval_ms``: the store is walked key by key as the chunks are made, so serving a large
registry never blocks the node (a million entries built at once stalled it for seconds). The runtime holds
the slices to a peer while its send queue is long (:meth:`StartupSnapshot.hold`): the starting node loads
slower than a peer sends, and a queue that overflows fails the snapshot. A chunk's ``total`` is ``seq + 2`` while more follow and
``seq + 1`` on the last, so a receiver that waits for ``total`` chunks waits for the last one. A key added
after the walk began may be missed and an entry changed since it was walked is sent as it was then; the
starting node receives those writes by replication and anti-entropy, as it does any write made after a
snapshot. When a chunk cannot be delivered, the snapshot is owed and sent again (from the start) when the
link to that peer comes back; or at once, when a link to that peer came up after the snapshot was served
(the runtime reports failed sends later, so a request answered just before this node's own link to the
asker was up fails after that link is up: no later reconnect would send it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from distro.config import NEVER, DistroConfig
from distro.datum import Datum, datum_digest
from distro.effects import Outbox
from distro.membership import PeerState
from distro.messages import InstanceBlock, Item, Items, SnapshotChunk, SnapshotRequest
from distro.model import Instance, ServiceKey
from distro.store import DatumStore

__all__ = ["StartupSnapshot"]


@dataclass(slots=True)
class _Serving:
    """A snapshot being sent to one peer: the keys to walk, how far, entries walked but not yet sent, and
    each walked key's live instances as walked: how many, and the XOR of their entry hashes."""

    snapshot_id: int
    keys: list[ServiceKey]
    next_key: int = 0
    seq: int = 0
    pending: list[Item] = field(default_factory=list)
    walked: dict[ServiceKey, tuple[int, int]] = field(default_factory=dict)


class StartupSnapshot:
    """Both sides of the start-up snapshot: the loading state of this node (asked whom, which chunks
    arrived, who has none) and the snapshots it owes to peers. Sends go to the node's outbox."""

    def __init__(self, config: DistroConfig, store: DatumStore, outbox: Outbox, now_ms: int) -> None:
        self._config = config
        self._store = store
        self._outbox = outbox
        self.next_request_ms = now_ms
        self.deadline_ms = now_ms + config.snapshot_timeout_ms
        self._not_ready: set[str] = set()  # peers that have no snapshot to give (or cannot be reached)
        self._parts: dict[tuple[str, int], set[int]] = {}  # (peer, snapshot id) -> chunks received
        self._progress_ms = NEVER  # when the last chunk of a ready peer's snapshot arrived
        self._asked: str | None = None  # the one peer asked for its snapshot
        self._asked_ms = NEVER
        self._owed: set[str] = set()  # peers whose snapshot could not be sent: resend on reconnect
        self._links: dict[str, int] = {}  # peer -> links to it that came up (link_up), counted
        self._served_on: dict[str, tuple[int, int]] = {}  # requester -> (snapshot id, link count) when served
        self._counter = 0
        self._serving: dict[str, _Serving] = {}
        self._held: set[str] = set()  # peers whose send queue is full: no slice until it drains
        self.next_slice_ms: int | None = None  # when serve_due sends the next slices (None: nothing to send)
        self.chunks_sent = 0

    # ============================================================================================
    # Loading (while not ready)
    # ============================================================================================
    def peer_has_data(self, peer_id: str) -> None:
        """``peer_id`` says it is ready now: it may be asked again."""
        self._not_ready.discard(peer_id)

    def peer_has_none(self, peer_id: str) -> None:
        """``peer_id`` answered "not ready", or could not be asked."""
        self._not_ready.add(peer_id)

    def ask(self, now_ms: int, peers: Mapping[str, PeerState], *, rotate: bool = False) -> None:
        """Ask one peer for its snapshot, unless one already asked may still answer (or ``rotate``).

        One at a time: two peers sending the whole registry at once only double the work of a node that
        must load it. Peers known ready come first, then the rest, in id order and in turn; one that
        answers "not ready", cannot be reached, or stalls for ``snapshot_retry_ms`` hands over to the next.
        """
        candidates = [p for p in sorted(peers) if p not in self._not_ready]
        current = self._asked
        if not candidates or (current in candidates and not rotate):
            return
        order = [p for p in candidates if peers[p].ready] + [p for p in candidates if not peers[p].ready]
        choice = order[(order.index(current) + 1) % len(order)] if current in order else order[0]
        self._asked = choice
        self._asked_ms = now_ms
        self._outbox.send(choice, SnapshotRequest())

    def retry(self, now_ms: int, peers: Mapping[str, PeerState]) -> None:
        """Every ``snapshot_retry_ms``: hand over to the next peer when the one asked has gone quiet."""
        if now_ms < self.next_request_ms:
            return
        retry_ms = self._config.snapshot_retry_ms
        self.next_request_ms = now_ms + retry_ms
        # While a snapshot is arriving, asking again would only make a peer send it again (and a big one
        # then never finishes): hand over to the next peer when the one asked has sent nothing for a whole
        # interval.
        last = max(self._progress_ms, self._asked_ms)
        if now_ms - last >= retry_ms:
            self.ask(now_ms, peers, rotate=True)

    def chunk_arrived(self, sender: str, message: SnapshotChunk, now_ms: int) -> bool:
        """A chunk of a ready peer's snapshot arrived (its items already merged). True when it was the last."""
        self._not_ready.discard(sender)
        self._progress_ms = now_ms
        self.deadline_ms = max(self.deadline_ms, now_ms + self._config.snapshot_timeout_ms)
        parts = self._parts.setdefault((sender, message.snapshot_id), set())
        if 0 <= message.seq < message.total:
            parts.add(message.seq)
        return len(parts) >= message.total

    def done_reason(self, now_ms: int, known_peers: int, up_peers: tuple[str, ...]) -> str | None:
        """Why the node may become ready without a complete snapshot, or None while it must wait."""
        expected = max(self._config.cluster_size - 1, known_peers)
        if len(self._not_ready) >= expected:
            return "no peer has data (all answered not ready or unreachable)"
        if now_ms >= self.deadline_ms:
            if not up_peers:
                return "no ready peer reachable before the snapshot timeout"
            # A ready peer is up: keep asking it, and look again later.
            self.deadline_ms = now_ms + self._config.snapshot_timeout_ms
            self._not_ready.difference_update(up_peers)
        return None

    def finish(self) -> None:
        """The node is ready: forget the loading state."""
        self._parts.clear()
        self._not_ready.clear()
        self._asked = None

    def next_deadline_ms(self) -> int:
        """When :meth:`retry` or :meth:`done_reason` next has something to do."""
        return min(self.next_request_ms, self.deadline_ms)

    # ============================================================================================
    # Serving (to a peer that starts)
    # ============================================================================================
    def serve(self, requester: str, ready: bool, now_ms: int) -> None:
        """Start sending ``requester`` this node's snapshot (its first slice now), or one "not ready" chunk."""
        self._owed.discard(requester)
        links = self._links.get(requester, 0)
        if not ready:
            self._serving.pop(requester, None)
            self._served_on[requester] = (0, links)
            self._outbox.send(requester, SnapshotChunk(False, 0, 0, 1, ()))
            return
        self._counter += 1
        self._served_on[requester] = (self._counter, links)
        self._serving[requester] = _Serving(self._counter, list(self._store.keys()))
        self._send_slice(requester)
        self._schedule(now_ms)

    def serve_due(self, now_ms: int) -> None:
        """Every ``snapshot_slice_interval_ms`` while serving: the next slice of every snapshot being sent."""
        if self.next_slice_ms is None or now_ms < self.next_slice_ms:
            return
        for requester in list(self._serving):
            if requester not in self._held:
                self._send_slice(requester)
        self._schedule(now_ms)

    def targets(self) -> tuple[str, ...]:
        """The peers a snapshot is being sent to."""
        return tuple(self._serving)

    def hold(self, peer_id: str, held: bool) -> None:
        """Pause (or resume) the slices to ``peer_id``: its send queue is over (or back under) a mark. A
        starting node loads slower than a peer sends, and a queue that overflows fails the snapshot."""
        if held:
            self._held.add(peer_id)
        else:
            self._held.discard(peer_id)

    def _schedule(self, now_ms: int) -> None:
        self.next_slice_ms = now_ms + self._config.snapshot_slice_interval_ms if self._serving else None

    def _send_slice(self, requester: str) -> None:
        serving = self._serving[requester]
        size = self._config.snapshot_chunk_entries
        keys = serving.keys
        pending = serving.pending
        for _ in range(self._config.snapshot_slice_chunks):
            while len(pending) < size and serving.next_key < len(keys):
                key = keys[serving.next_key]
                serving.next_key += 1
                datum = self._store.datum(key)
                if datum is not None:
                    pending.extend([(key, entry_id, entry) for entry_id, entry in datum.items()])
                    serving.walked[key] = _instances_digest(self._store, key, datum)
            items, blocks = _split(pending[:size], serving.walked)
            del pending[:size]
            last = not pending and serving.next_key >= len(keys)
            seq = serving.seq
            serving.seq += 1
            self.chunks_sent += 1
            self._outbox.send(requester, SnapshotChunk(True, serving.snapshot_id, seq, seq + 1 if last else seq + 2,
                                                       items, blocks))
            if last:
                del self._serving[requester]
                self._held.discard(requester)
                return

    def link_up(self, peer_id: str) -> None:
        """A link to ``peer_id`` came up (the runtime's ``peer_connected``)."""
        self._links[peer_id] = self._links.get(peer_id, 0) + 1

    def chunk_failed(self, peer_id: str, snapshot_id: int) -> bool:
        """A chunk of snapshot ``snapshot_id`` could not be delivered to ``peer_id``. True: serve it again
        now, because a link to the peer came up after it was served (the runtime reports a failed send
        later, from a task, so a snapshot asked for just before this node's link to the asker was up fails
        *after* that link came up, and no later reconnect would send what is owed). Otherwise the snapshot
        is owed, and sent when a link comes up; a chunk of a snapshot since replaced changes nothing."""
        served = self._served_on.get(peer_id)
        if served is not None and served[0] != snapshot_id:
            return False
        if served is not None and self._links.get(peer_id, 0) > served[1]:
            return True
        self.owe(peer_id)
        return False

    def owe(self, peer_id: str) -> None:
        """A chunk for ``peer_id`` could not be delivered: stop, and send the snapshot again when it reconnects."""
        self._owed.add(peer_id)
        self._serving.pop(peer_id, None)
        self._held.discard(peer_id)

    def owes(self, peer_id: str) -> bool:
        """True when ``peer_id`` asked for a snapshot that could not be delivered."""
        return peer_id in self._owed


def _instances_digest(store: DatumStore, key: ServiceKey, datum: Datum) -> tuple[int, int]:
    """How many live instances ``datum`` (the key's, in ``store``) holds, and the XOR of their entry hashes:
    the key's digest, which the store keeps, without the few other entries' (tombstones, settings)."""
    digest = store.digest(key)
    live = store.live_instance_count(key)
    if live == len(datum):
        return live, digest
    others = [(entry_id, entry) for entry_id, entry in datum.items() if type(entry.value) is not Instance]
    return len(datum) - len(others), digest ^ datum_digest(others)


def _split(chunk: list[Item], walked: Mapping[ServiceKey, tuple[int, int]]) -> tuple[Items, tuple[InstanceBlock, ...]]:
    """A chunk's entries as the message carries them: live instances in one block per key (the receiver
    installs those in bulk), the rest (tombstones, settings) as items. A block holding all its key's live
    instances as walked carries their digest from ``walked``; the part of a key split over two chunks is
    hashed here (the receiver then hashes nothing)."""
    items: list[Item] = []
    blocks: dict[ServiceKey, Datum] = {}
    for key, entry_id, entry in chunk:
        if type(entry.value) is Instance:
            block = blocks.get(key)
            if block is None:
                block = blocks[key] = {}
            block[entry_id] = entry
        else:
            items.append((key, entry_id, entry))
    out: list[InstanceBlock] = []
    for key, block in blocks.items():
        count, digest = walked[key]
        out.append((key, block, digest if count == len(block) else datum_digest(block.items())))
    return tuple(items), tuple(out)
