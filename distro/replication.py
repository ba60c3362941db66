"""Replication: per-peer dirty sets flushed as ``SyncBatch`` messages, and anti-entropy digests.

*Dirty sets.* Every local write marks its entry dirty for every up peer. A peer's set is flushed as
``SyncBatch`` messages of at most ``sync_batch_entries`` entries: at the next tick when nothing was
flushed to that peer for ``sync_delay_ms`` (an isolated change is not delayed), else ``sync_delay_ms``
after the first change (a stream of changes is coalesced). Nothing is queued for a peer that is down,
and a set that grows past ``max_dirty_entries_per_peer`` is dropped: in both cases anti-entropy repairs
the peer.

*Anti-entropy.* Every ``verify_interval_ms`` (and when a peer comes up) the owner sends digests of the keys
it owns, in chunks of ``digest_chunk_keys`` (holding ``digest_chunk_entries`` entries at most, unless one
key holds more) that each cover a range of keys. The receiver answers with a
``Repair``: its own entries for keys that differ (or that it holds and believes the sender owns, but the
chunk lacks) and the keys it wants. Merging keeps the higher version per entry, so both sides converge.

A round to a peer is sent a chunk per node tick (the first at once): at 10,000 keys the whole round in one
step was ~8 ms of CPU per peer plus its encoding, every ``verify_interval_ms``, and the receiver answered
all of it in one step too. A chunk is bounded in keys (its digests are built, encoded, decoded and compared
in one step each) and in entries: the receiver answers a chunk whose keys differ with every entry it holds
of them and the sender every entry of those it asks for, each in one step, and a key holds ~100 entries at
1M instances in 10,000 services (chunks of 2,000 keys were 17-26 ms of CPU a round's first step on each
node of the 1M scale run during the load, two chunks built and encoded at once, one per peer). The
entries are counted in the sender's store: a receiver holding many more of those keys' entries answers
with all of them. Each chunk starts where the previous one ended (``low`` is the last one's ``high``, a key
string), so the chunks cover every key in order even if keys are added or ownership moves
between two of them. The keys this node owns, sorted, are kept until keys are collected or the ownership
map changes (a key added goes in in place), instead of being picked out of every stored key for every chunk.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from distro.config import NEVER, DistroConfig
from distro.effects import Outbox
from distro.messages import Digest, Item, Repair, SyncBatch
from distro.model import ServiceKey
from distro.ownership import OwnershipMap
from distro.store import DatumStore

__all__ = ["MAX_DIFFERING_KEYS", "Replication"]

MAX_DIFFERING_KEYS = 65_536
"""At most this many (peer, key) pairs remembered as differing (:meth:`Replication._differs`): past it the
memory starts again empty (a wrong digest is then found a round later)."""


class Replication:
    """One node's outgoing replication: what each up peer has not been sent yet, and the digest exchange
    that repairs whatever was never queued. Sends go to the node's :class:`~distro.effects.Outbox`."""

    def __init__(self, node_id: str, config: DistroConfig, store: DatumStore, outbox: Outbox) -> None:
        self._node_id = node_id
        self._config = config
        self._store = store
        self._outbox = outbox
        self._dirty: dict[str, dict[ServiceKey, dict[str, None]]] = {}
        self._dirty_count: dict[str, int] = {}
        self._dirty_since: dict[str, int] = {}  # peer -> when its pending batch counts as started
        self._last_flush_ms: dict[str, int] = {}
        # Every stored key, sorted by its string (digest ranges): the strings, and the keys in the same order.
        self._sorted: tuple[list[str], list[ServiceKey]] | None = None
        # The keys this node owns, as _sorted, and the ownership map they were picked under.
        self._owned: tuple[OwnershipMap, list[str], list[ServiceKey]] | None = None
        # Digest rounds in progress: peer -> where the next chunk starts (the last chunk's high; None: the start).
        self._rounds: dict[str, str | None] = {}
        # (peer, key) -> this node's digest of the key when it last differed from that peer's (_differs).
        self._differing: dict[tuple[str, ServiceKey], int] = {}
        self.sync_batches_sent = 0
        self.sync_entries_sent = 0
        self.digests_sent = 0
        self.repairs_sent = 0
        self.dirty_overflows = 0

    # ============================================================================================
    # Dirty sets
    # ============================================================================================
    def mark_dirty(
        self, peers: Iterable[str], key: ServiceKey, entry_id: str, now_ms: int, ownership: OwnershipMap
    ) -> None:
        """Queue a changed entry for each of ``peers`` (the up peers)."""
        for peer_id in peers:
            if self._mark(peer_id, key, entry_id, now_ms):
                # Too far behind to track entry by entry: the set was dropped; a digest round repairs it.
                self.send_digests(peer_id, ownership)

    def _mark(self, peer_id: str, key: ServiceKey, entry_id: str, now_ms: int) -> bool:
        """Queue one entry for one peer. True when that overflowed its set (which is then dropped)."""
        dirty = self._dirty.get(peer_id)
        if dirty is None:
            dirty = self._dirty[peer_id] = {}
            self._dirty_count[peer_id] = 0
        ids = dirty.get(key)
        if ids is None:
            ids = dirty[key] = {}
        if entry_id in ids:
            return False
        ids[entry_id] = None
        self._dirty_count[peer_id] += 1
        if peer_id not in self._dirty_since:
            # Leading edge: after a quiet spell the first change goes out at the next tick; only changes
            # that follow a flush within sync_delay_ms wait for it (and coalesce).
            delay = self._config.sync_delay_ms
            quiet = now_ms - self._last_flush_ms.get(peer_id, NEVER) >= delay
            self._dirty_since[peer_id] = now_ms - delay if quiet else now_ms
        if self._dirty_count[peer_id] > self._config.max_dirty_entries_per_peer:
            self.dirty_overflows += 1
            self.drop(peer_id)
            return True
        return False

    def drop(self, peer_id: str) -> None:
        """Forget what ``peer_id`` has not been sent (it went down: anti-entropy repairs it later)."""
        self._dirty.pop(peer_id, None)
        self._dirty_count.pop(peer_id, None)
        self._dirty_since.pop(peer_id, None)

    def flush_due(self, now_ms: int) -> None:
        """Flush every peer whose pending batch has waited ``sync_delay_ms``.

        Peers due together with the same dirty set (every write marks every up peer) are sent the same
        ``SyncBatch`` objects: built once, and a transport that encodes a message once for all its targets
        (the peer links do, for ``SyncBatch``) encodes them once."""
        delay = self._config.sync_delay_ms
        previous: tuple[dict[ServiceKey, dict[str, None]], list[SyncBatch]] | None = None
        for peer_id, since in list(self._dirty_since.items()):
            if now_ms >= since + delay:
                previous = self._flush(peer_id, now_ms, previous)

    def _flush(
        self,
        peer_id: str,
        now_ms: int,
        previous: tuple[dict[ServiceKey, dict[str, None]], list[SyncBatch]] | None,
    ) -> tuple[dict[ServiceKey, dict[str, None]], list[SyncBatch]] | None:
        """Send ``peer_id`` its dirty set; ``previous``: the set just sent to another peer and its batches,
        reused when this one is the same. Returns this set and its batches (else ``previous``)."""
        self._last_flush_ms[peer_id] = now_ms
        dirty = self._dirty.get(peer_id)
        self.drop(peer_id)
        if not dirty:
            return previous
        if previous is not None and previous[0] == dirty:
            batches = previous[1]
        else:
            items: list[Item] = []
            for key, entry_ids in dirty.items():
                datum = self._store.datum(key)
                if datum is None:
                    continue
                for entry_id in entry_ids:
                    entry = datum.get(entry_id)
                    if entry is not None:
                        items.append((key, entry_id, entry))
            batches = self._batches(items)
        for message in batches:
            self.sync_batches_sent += 1
            self.sync_entries_sent += len(message.items)
            self._outbox.send(peer_id, message)
        return dirty, batches

    def _batches(self, items: list[Item]) -> list[SyncBatch]:
        """``items`` as ``SyncBatch`` messages of at most ``sync_batch_entries``."""
        batch = self._config.sync_batch_entries
        return [SyncBatch(tuple(items[start : start + batch])) for start in range(0, len(items), batch)]

    def next_flush_ms(self, deadline_ms: int) -> int:
        """The earlier of ``deadline_ms`` and the next moment a peer's batch is due."""
        delay = self._config.sync_delay_ms
        for since in self._dirty_since.values():
            deadline_ms = min(deadline_ms, since + delay)
        return deadline_ms

    @property
    def dirty_entries(self) -> int:
        """Entries waiting to be sent, all peers together."""
        return sum(self._dirty_count.values())

    # ============================================================================================
    # Sending entries
    # ============================================================================================
    def send_items(self, peer_id: str, items: list[Item]) -> None:
        """Send ``items`` to ``peer_id`` as ``SyncBatch`` messages of at most ``sync_batch_entries``."""
        for message in self._batches(items):
            self.sync_batches_sent += 1
            self.sync_entries_sent += len(message.items)
            self._outbox.send(peer_id, message)

    def items_for(self, keys: Iterable[ServiceKey]) -> list[Item]:
        """Every entry (tombstones included) of each of ``keys`` held here."""
        items: list[Item] = []
        for key in keys:
            datum = self._store.datum(key)
            if datum is not None:
                items.extend((key, entry_id, entry) for entry_id, entry in datum.items())
        return items

    # ============================================================================================
    # Anti-entropy
    # ============================================================================================
    def keys_changed(self) -> None:
        """Keys were collected from the store: the sorted key lists are rebuilt when next used."""
        self._sorted = None
        self._owned = None

    def key_added(self, key: ServiceKey) -> None:
        """A key was added to the store: it goes into the sorted key lists in place (and into the owned ones
        if this node owns it under their map). Rebuilt instead, every digest chunk sent or answered while
        keys were being created sorted every key again: at the start of the 1M run's load, the first round
        held all three nodes 31-61 ms of CPU at once."""
        text = str(key)
        if self._sorted is not None:
            texts, keys = self._sorted
            index = bisect.bisect_left(texts, text)
            texts.insert(index, text)
            keys.insert(index, key)
        owned = self._owned
        if owned is not None and owned[0].owner_of_key(key) == self._node_id:
            index = bisect.bisect_left(owned[1], text)
            owned[1].insert(index, text)
            owned[2].insert(index, key)

    def _sorted_keys(self) -> tuple[list[str], list[ServiceKey]]:
        if self._sorted is None:
            pairs = sorted((str(key), key) for key in self._store.keys())
            self._sorted = ([text for text, _ in pairs], [key for _, key in pairs])
        return self._sorted

    def _owned_keys(self, ownership: OwnershipMap) -> tuple[list[str], list[ServiceKey]]:
        """The stored keys this node owns under ``ownership``, sorted by string (strings, keys)."""
        owned = self._owned
        if owned is None or owned[0] is not ownership:
            node_id = self._node_id
            if owned is not None and node_id in owned[0].members and set(owned[0].members) <= set(ownership.members):
                # Members were only added (a join): only keys this node owned can still be its own
                # (distro/health.py, _lose_to_joiners), so only those are looked up.
                texts, keys = owned[1], owned[2]
            else:
                # owners_of_keys: cached under the key itself; the keys sorted by string once until one is
                # added or collected (at 1M instances the 10k keys' strings and their sort were most of this walk)
                texts, keys = self._sorted_keys()
            owners = ownership.owners_of_keys(keys)
            pairs = [(text, key) for text, key, owner in zip(texts, keys, owners, strict=True) if owner == node_id]
            owned = self._owned = (ownership, [text for text, _ in pairs], [key for _, key in pairs])
        return owned[1], owned[2]

    def send_digests(self, peer_id: str, ownership: OwnershipMap) -> None:
        """Start a digest round to ``peer_id`` (over again if one is in progress): its first chunk goes now,
        the others one per call of :meth:`continue_digests`."""
        self._rounds[peer_id] = None
        self._send_chunk(peer_id, ownership)

    @property
    def digesting(self) -> bool:
        """Whether a digest round is in progress (the node calls :meth:`continue_digests` at every tick)."""
        return bool(self._rounds)

    def continue_digests(self, up_peers: Iterable[str], ownership: OwnershipMap) -> None:
        """Send the next chunk of every round in progress to an up peer; a peer that went down is dropped
        (the round it gets when it comes back starts over)."""
        up = set(up_peers)
        for peer_id in list(self._rounds):
            if peer_id in up:
                self._send_chunk(peer_id, ownership)
            else:
                del self._rounds[peer_id]

    def _send_chunk(self, peer_id: str, ownership: OwnershipMap) -> None:
        """The next chunk of ``peer_id``'s round: the owned keys after its ``low``, ``digest_chunk_keys`` at
        most and no more than hold ``digest_chunk_entries`` entries (but at least one key); the last one
        (``high`` None) ends the round."""
        texts, keys = self._owned_keys(ownership)
        low = self._rounds[peer_id]
        start = 0 if low is None else bisect.bisect_right(texts, low)
        end = min(len(keys), start + self._config.digest_chunk_keys)
        room = self._config.digest_chunk_entries
        datum = self._store.datum
        for index in range(start, end):
            held = datum(keys[index])
            room -= 0 if held is None else len(held)
            if room < 0 and index > start:
                end = index
                break
        high: str | None = None
        if end < len(texts):
            high = texts[end - 1]
            self._rounds[peer_id] = high
        else:
            del self._rounds[peer_id]
        digest = self._store.digest
        self.digests_sent += 1
        self._outbox.send(peer_id, Digest(tuple((key, digest(key)) for key in keys[start:end]), low, high))

    def answer_want(self, peer_id: str, want: Iterable[ServiceKey]) -> None:
        """A ``Repair``'s wanted keys: their entries to ``peer_id`` (each checked by :meth:`_differs`)."""
        want = list(want)
        for key in want:
            self._differs(peer_id, key, self._store.digest(key), None)
        self.send_items(peer_id, self.items_for(want))

    def _differs(self, peer_id: str, key: ServiceKey, mine: int, theirs: int | None) -> bool:
        """Whether ``key`` still differs from ``peer_id``'s (``theirs``, when known). A key that differs again
        while this node's digest stayed the same was not made equal by the last repair, which merges both
        sides' entries: one side's digest is not its entries' (a snapshot block's shipped digest is taken
        unchecked, distro/store.py). This node's is then computed again (``DatumStore.rehash``, counted when
        it was off), so such a key is repaired once or twice instead of at every round for as long as it
        lives; the other side does the same with its own."""
        slot = (peer_id, key)
        if self._differing.get(slot) == mine:
            del self._differing[slot]
            return self._store.rehash(key) != theirs
        if len(self._differing) >= MAX_DIFFERING_KEYS:
            self._differing.clear()
        self._differing[slot] = mine
        return True

    def on_digest(self, sender: str, message: Digest, ownership: OwnershipMap) -> None:
        """Answer a digest chunk: push what differs or what the sender owns but lacks, ask for the rest."""
        want: list[ServiceKey] = []
        push: list[ServiceKey] = []
        mentioned: set[ServiceKey] = set()
        for key, digest in message.digests:
            mentioned.add(key)
            mine = self._store.digest(key)
            if mine != digest and self._differs(sender, key, mine, digest):
                if digest != 0:
                    want.append(key)
                if key in self._store:
                    push.append(key)
        texts, keys = self._sorted_keys()
        lo = 0 if message.low is None else bisect.bisect_right(texts, message.low)
        hi = len(texts) if message.high is None else bisect.bisect_right(texts, message.high)
        for key in keys[lo:hi]:  # the stored keys themselves: no parse, owners cached by key object
            if key not in mentioned and ownership.owner_of_key(key) == sender:
                push.append(key)
        if want or push:
            self.repairs_sent += 1
            items = self.items_for(push)
            if len(items) <= self._config.sync_batch_entries:
                self._outbox.send(sender, Repair(tuple(items), tuple(want)))
            else:
                self.send_items(sender, items)
                self._outbox.send(sender, Repair((), tuple(want)))
