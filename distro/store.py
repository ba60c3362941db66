"""The datum store: every service key's entries, their digests, and tombstone collection.

Tombstones are collected ``tombstone_ttl_ms`` after they were written. The store keeps, per key, the entry
ids that hold a tombstone, so a collection pass looks at the tombstones only: its cost follows what was
deleted, not what is stored (a pass used to walk every entry while any tombstone existed: 180-270 ms at a
million entries, every ``gc_interval_ms``). Collecting one leaves a *floor*. A live entry that arrives
later for an entry id the store does not hold, with a version at or below the floor, may be a stale copy
of something deleted and collected here (a node that was cut off for longer than the TTL). The store
refuses it and reports it, so the node can answer with a fresh tombstone instead of bringing it back.

Two kinds of floor:

- *key floors*, for instances and implicit markers: one per key, the highest version collected among
  them. Coarse and small: an instance written elsewhere before that version and never seen here is
  refused too, and its client registers it again at its next beat (ephemeral state heals itself).
- *entry floors*, for cluster data (:func:`~distro.clusterdata.is_durable_slot`): one per deleted entry,
  its collected version. Nothing would bring back a namespace or a setting refused by mistake, and the
  reserved keys hold every namespace and setting under one key, so a key floor would refuse a namespace
  created across a partition because an unrelated one was deleted and collected on the other side. An
  entry floor costs about 280 bytes per deleted cluster-data entry (:attr:`StoreStatistics.entry_floors`);
  the node's data folder keeps the deletions too (their tombstones), so a restart forgets none
  (:mod:`distro.durability`).

Both kinds are *deletion records*, and a client that creates and deletes in a loop could add them without
end, so the store keeps at most ``max_deletion_records`` of them together. Past it, the oldest (lowest
version) go first: :attr:`DatumStore.forgotten` lists what the last collection pass dropped, so the node
can drop the matching tombstone rows from its data folder and count them. Forgetting a deletion matters
only if some node still holds the entry's old value (it was down or cut off since before the deletion):
that value is then accepted again, as if the deletion never happened. Every record is at least the
tombstone TTL old (younger deletions are still tombstones, which this budget neither counts nor drops),
so a partition that heals within the TTL still sees every deletion. docs/security.md states the trade-off.

The oldest record is found with a heap of ``(version, key, entry_id)``. A floor raised by a later
collection, or ended by a newer version of its entry (:meth:`DatumStore.merge`), leaves its heap item
behind: skipped when popped, swept out whenever the heap grows past twice the floors held.
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Iterator
from dataclasses import dataclass

from distro.clusterdata import is_durable_slot
from distro.datum import META_ENTRY_ID, Datum, Entry, EntryValue, datum_digest, entry_hash
from distro.model import Instance, ServiceKey, ServiceMeta
from distro.versions import Version

__all__ = ["MAX_DELETION_RECORDS", "DatumStore", "DeletionRecord", "MergeOutcome", "StoreStatistics"]

MAX_DELETION_RECORDS = 100_000
"""Floors (key floors and entry floors together) a store keeps by default: about 35 MB at ~350 bytes each
(docs/security.md). ``DistroConfig.max_deletion_records`` sets it per node."""

DeletionRecord = tuple[Version, ServiceKey, str]
"""A collected deletion: its version, key and entry id (the collected tombstone's, for a key floor too)."""


class MergeOutcome(enum.Enum):
    """What :meth:`DatumStore.merge` did with an entry."""

    APPLIED = "applied"  # the entry is new or newer: stored
    STALE = "stale"  # an equal or newer version is already stored: ignored
    BELOW_FLOOR = "below_floor"  # unknown live entry older than a collected tombstone: refused


@dataclass(frozen=True, slots=True)
class StoreStatistics:
    """Counts of what the store holds."""

    keys: int
    entries: int
    live_instances: int
    tombstones: int
    entry_floors: int = 0  # deleted cluster-data entries remembered after their tombstones were collected
    key_floors: int = 0  # keys with a floor for their instances and implicit markers
    deletion_records_dropped: int = 0  # floors forgotten over max_deletion_records, since the start


class DatumStore:
    """All datums of one node, keyed by service key, with incrementally maintained digests."""

    __slots__ = (
        "_bound_instances",
        "_datums",
        "_digests",
        "_entry_floors",
        "_floor_heap",
        "_floors",
        "_live_by_key",
        "_live_instances",
        "_no_instances",
        "_tomb_heap",
        "_tomb_ids",
        "_tomb_pushes",
        "_tombstones",
        "deletion_records_dropped",
        "digests_corrected",
        "forgotten",
        "max_deletion_records",
    )

    def __init__(self, max_deletion_records: int = MAX_DELETION_RECORDS) -> None:
        if max_deletion_records < 0:
            raise ValueError(f"max_deletion_records must not be negative, got {max_deletion_records}")
        self.max_deletion_records = max_deletion_records
        self.deletion_records_dropped = 0
        self.digests_corrected = 0  # key digests found not to be their entries' (:meth:`rehash`)
        self.forgotten: list[DeletionRecord] = []  # what the last collection pass dropped, oldest first
        self._floor_heap: list[DeletionRecord] = []  # every floor's record, oldest first (and stale items)
        self._datums: dict[ServiceKey, Datum] = {}
        self._digests: dict[ServiceKey, int] = {}
        self._floors: dict[ServiceKey, Version] = {}  # key floors (instances, implicit markers)
        self._entry_floors: dict[tuple[ServiceKey, str], Version] = {}  # entry floors (cluster data)
        self._tomb_ids: dict[ServiceKey, set[str]] = {}  # key -> entry ids whose entry is a tombstone
        # Every tombstone by when it was written, oldest first (and items whose tombstone was replaced since:
        # skipped when popped), so a collection pass looks only at the tombstones that are due.
        self._tomb_heap: list[tuple[int, int, ServiceKey, str]] = []  # (ms, push number: no key compared, ...)
        self._tomb_pushes = 0
        self._tombstones = 0
        self._live_instances = 0
        self._bound_instances = 0  # live instances bound to a gRPC connection
        self._live_by_key: dict[ServiceKey, int] = {}  # keys with at least one live instance
        self._no_instances: dict[ServiceKey, None] = {}  # stored keys without one (an ordered set)

    # -- reading ---------------------------------------------------------------------------------
    def keys(self) -> Iterator[ServiceKey]:
        """Every key with at least one entry."""
        return iter(self._datums)

    def __contains__(self, key: object) -> bool:
        return key in self._datums

    def __len__(self) -> int:
        return len(self._datums)

    @property
    def bound_instances(self) -> int:
        """Live instances bound to a gRPC connection, in O(1): with none, nothing can be orphaned and the
        walks that look for orphans are skipped (they visit every owned instance)."""
        return self._bound_instances

    @property
    def instance_entries(self) -> int:
        """Live instances plus tombstones, in O(1) (:meth:`statistics` counts every entry)."""
        return self._live_instances + self._tombstones

    def datum(self, key: ServiceKey) -> Datum | None:
        """The key's entries (do not mutate), or None."""
        return self._datums.get(key)

    def entry(self, key: ServiceKey, entry_id: str) -> Entry | None:
        """One entry, or None."""
        datum = self._datums.get(key)
        return None if datum is None else datum.get(entry_id)

    def live_instance(self, key: ServiceKey, entry_id: str) -> Instance | None:
        """The instance stored under ``entry_id`` unless it is absent or a tombstone."""
        entry = self.entry(key, entry_id)
        if entry is None or not isinstance(entry.value, Instance):
            return None
        return entry.value

    def live_value(self, key: ServiceKey, entry_id: str) -> EntryValue:
        """The value stored under ``entry_id`` (None when absent or a tombstone)."""
        entry = self.entry(key, entry_id)
        return None if entry is None else entry.value

    def meta(self, key: ServiceKey) -> ServiceMeta | None:
        """The service's settings entry, unless absent or deleted."""
        entry = self.entry(key, META_ENTRY_ID)
        if entry is None or not isinstance(entry.value, ServiceMeta):
            return None
        return entry.value

    def live_instance_count(self, key: ServiceKey) -> int:
        """How many live instances the key has (kept up to date on every merge: O(1))."""
        return self._live_by_key.get(key, 0)

    def keys_without_instances(self) -> Iterator[ServiceKey]:
        """Every stored key that has no live instance (settings only, tombstones only, reserved keys)."""
        return iter(self._no_instances)

    def service_exists(self, key: ServiceKey) -> bool:
        """A service exists while it has settings or any live instance: an entry that is not a tombstone.
        O(1): the tombstones of each key are counted (the notifier asks on every change)."""
        datum = self._datums.get(key)
        if datum is None:
            return False
        tombs = self._tomb_ids.get(key)
        return len(datum) > (0 if tombs is None else len(tombs))

    def digest(self, key: ServiceKey) -> int:
        """XOR of the key's entry hashes; equal datums have equal digests."""
        return self._digests.get(key, 0)

    def rehash(self, key: ServiceKey) -> int:
        """The key's digest computed again from its entries, kept and returned (counted in
        :attr:`digests_corrected` when the kept one differed). The digest is kept incrementally, and a
        snapshot block's digest is taken as the sender shipped it (:meth:`merge_instances`): one that was
        not its entries' would stay off for as long as the key lives, so anti-entropy checks a key whose
        difference a repair did not end (distro/replication.py)."""
        datum = self._datums.get(key)
        digest = 0 if datum is None else datum_digest(datum.items())
        if digest != self._digests.get(key, 0):
            self.digests_corrected += 1
            if datum is not None:
                self._digests[key] = digest
        return digest

    def items(self, key: ServiceKey) -> list[tuple[str, Entry]]:
        """The key's entries as a list (a copy)."""
        datum = self._datums.get(key)
        return [] if datum is None else list(datum.items())

    def floor(self, key: ServiceKey, entry_id: str) -> Version | None:
        """The floor an unknown entry with this id must be above: its entry floor for cluster data, else
        the key floor (None when nothing was collected)."""
        if is_durable_slot(key, entry_id):
            return self._entry_floors.get((key, entry_id))
        return self._floors.get(key)

    def statistics(self) -> StoreStatistics:
        """Sizes, for metrics."""
        entries = sum(len(d) for d in self._datums.values())
        return StoreStatistics(
            len(self._datums), entries, self._live_instances, self._tombstones, len(self._entry_floors),
            len(self._floors), self.deletion_records_dropped,
        )

    # -- writing ---------------------------------------------------------------------------------
    def merge(self, key: ServiceKey, entry_id: str, entry: Entry) -> MergeOutcome:
        """Merge one entry: keep it if its version is higher than the stored one."""
        datum = self._datums.get(key)
        current = None if datum is None else datum.get(entry_id)
        if current is not None:
            if not entry.newer_than(current):
                return MergeOutcome.STALE
        else:
            durable = is_durable_slot(key, entry_id)
            floor = self._entry_floors.get((key, entry_id)) if durable else self._floors.get(key)
            if floor is not None:
                if entry.version <= floor:
                    return MergeOutcome.STALE if entry.value is None else MergeOutcome.BELOW_FLOOR
                if durable:
                    del self._entry_floors[(key, entry_id)]  # the newer entry stands for it from now on
        if datum is None:
            datum = self._datums[key] = {}
            self._no_instances[key] = None
        datum[entry_id] = entry
        digest = self._digests.get(key, 0) ^ entry_hash(entry_id, entry)
        if current is not None:
            digest ^= entry_hash(entry_id, current)
            self._count(key, entry_id, current, -1)
        self._digests[key] = digest
        self._count(key, entry_id, entry, +1)
        return MergeOutcome.APPLIED

    def merge_instances(self, key: ServiceKey, entries: Datum, digest: int | None = None) -> Datum:
        """Merge many live instance entries of one key at once (a snapshot's instance block): the same store
        as :meth:`merge` of each entry in turn (versions, floors, digests, counts). Returns the entries
        applied (the argument itself when all were: the store may keep that dict, do not change it).

        Every value must be an :class:`~distro.model.Instance` (no tombstone, no settings) and ``key`` a
        service's. Entries whose id the store does not hold yet are added in bulk when the key has no
        floor: this is how a starting node loads its snapshot, about 1 us per entry cheaper than merging
        one at a time. The others (an id already held, or a key with a floor) go through :meth:`merge`.

        ``digest``, when given, must be :func:`~distro.datum.datum_digest` of ``entries`` (the sender's,
        from its own key digest): when every entry is added in bulk it is XORed into the key's digest
        instead of hashing each entry (a third of a starting node's merge); otherwise it is not used.
        """
        if not entries:
            return entries
        if self._floors.get(key) is not None:
            return {eid: entry for eid, entry in entries.items() if self.merge(key, eid, entry) is MergeOutcome.APPLIED}
        datum = self._datums.get(key)
        if datum is None:
            fresh = self._datums[key] = entries  # a new key: the block becomes its datum
            clashing: Datum = {}
        else:
            fresh = {eid: entry for eid, entry in entries.items() if eid not in datum}
            clashing = {eid: entry for eid, entry in entries.items() if eid in datum} if len(fresh) < len(entries) else {}
            datum.update(fresh)
        if fresh:
            if digest is None or len(fresh) != len(entries):
                digest = datum_digest(fresh.items())
            self._digests[key] = self._digests.get(key, 0) ^ digest
            added = len(fresh)
            self._live_instances += added
            self._bound_instances += sum(1 for entry in fresh.values() if entry.value.connection)  # type: ignore[union-attr,misc]
            self._live_by_key[key] = self._live_by_key.get(key, 0) + added
            self._no_instances.pop(key, None)
        if not clashing:
            return fresh
        applied = dict(fresh)
        for eid, entry in clashing.items():
            if self.merge(key, eid, entry) is MergeOutcome.APPLIED:
                applied[eid] = entry
        return applied

    def _count(self, key: ServiceKey, entry_id: str, entry: Entry, sign: int) -> None:
        if entry.value is None:
            self._tombstones += sign
            if sign > 0:
                self._tomb_ids.setdefault(key, set()).add(entry_id)
                self._tomb_pushes += 1
                heapq.heappush(self._tomb_heap, (entry.ms, self._tomb_pushes, key, entry_id))
            else:
                ids = self._tomb_ids[key]
                ids.discard(entry_id)
                if not ids:
                    del self._tomb_ids[key]
        elif isinstance(entry.value, Instance):
            self._live_instances += sign
            if entry.value.connection:
                self._bound_instances += sign
            live = self._live_by_key.get(key, 0) + sign
            if live:
                self._live_by_key[key] = live
                self._no_instances.pop(key, None)
            else:
                del self._live_by_key[key]
                self._no_instances[key] = None

    def collect_tombstones(self, older_than_ms: int) -> list[ServiceKey]:
        """Drop tombstones written before ``older_than_ms``; returns the keys that changed. Their floors
        past ``max_deletion_records`` are forgotten, oldest first (listed in :attr:`forgotten`)."""
        self.forgotten = []
        changed: list[ServiceKey] = []
        for key, due in self._due_tombstones(older_than_ms).items():
            datum = self._datums[key]
            ids = self._tomb_ids[key]
            doomed = [(entry_id, datum[entry_id]) for entry_id in due]
            digest = self._digests.get(key, 0)
            floor = self._floors.get(key)
            raised: DeletionRecord | None = None
            for entry_id, entry in doomed:
                del datum[entry_id]
                ids.discard(entry_id)
                digest ^= entry_hash(entry_id, entry)
                self._tombstones -= 1
                if is_durable_slot(key, entry_id):
                    self._entry_floors[(key, entry_id)] = entry.version  # above any earlier one (see merge)
                    self._remember((entry.version, key, entry_id))
                elif floor is None or entry.version > floor:
                    floor = entry.version
                    raised = (entry.version, key, entry_id)
            if raised is not None:
                self._floors[key] = raised[0]
                self._remember(raised)
            if not ids:
                del self._tomb_ids[key]
            if datum:
                self._digests[key] = digest
            else:
                del self._datums[key]
                self._digests.pop(key, None)
                self._no_instances.pop(key, None)
            changed.append(key)
        self._forget_over_budget()
        return changed

    def _due_tombstones(self, older_than_ms: int) -> dict[ServiceKey, dict[str, None]]:
        """The tombstones written before ``older_than_ms``, by key (popped off the heap: the cost follows
        how many are due, not how many are kept)."""
        heap = self._tomb_heap
        if len(heap) > 2 * self._tombstones + 1024:  # mostly replaced tombstones: rebuild from the index
            heap[:] = [(self._datums[key][entry_id].ms, n, key, entry_id)
                       for n, (key, entry_id) in enumerate((k, e) for k, ids in self._tomb_ids.items() for e in ids)]
            heapq.heapify(heap)
        due: dict[ServiceKey, dict[str, None]] = {}
        while heap and heap[0][0] < older_than_ms:
            ms, _, key, entry_id = heapq.heappop(heap)
            ids = self._tomb_ids.get(key)
            if ids is None or entry_id not in ids or self._datums[key][entry_id].ms != ms:
                continue  # replaced by a newer entry (whose own item, if a tombstone, is on the heap)
            due.setdefault(key, {})[entry_id] = None
        return due

    # -- the deletion-record budget ----------------------------------------------------------------
    def _holds(self, record: DeletionRecord) -> bool:
        """Whether ``record`` is still a floor this store holds (not replaced, not forgotten)."""
        version, key, entry_id = record
        if is_durable_slot(key, entry_id):
            return self._entry_floors.get((key, entry_id)) == version
        return self._floors.get(key) == version

    def _remember(self, record: DeletionRecord) -> None:
        heap = self._floor_heap
        heapq.heappush(heap, record)
        if len(heap) > 2 * (len(self._floors) + len(self._entry_floors)) + 1024:
            heap[:] = [item for item in heap if self._holds(item)]  # sweep out replaced and forgotten items
            heapq.heapify(heap)

    def _forget_over_budget(self) -> None:
        heap = self._floor_heap
        while len(self._floors) + len(self._entry_floors) > self.max_deletion_records:
            record = heapq.heappop(heap)
            if not self._holds(record):
                continue
            _, key, entry_id = record
            if is_durable_slot(key, entry_id):
                del self._entry_floors[(key, entry_id)]
            else:
                del self._floors[key]
            self.forgotten.append(record)
            self.deletion_records_dropped += 1

    def clear(self) -> None:
        """Forget everything (a node that must reload its snapshot)."""
        self._datums.clear()
        self._digests.clear()
        self._floors.clear()
        self._entry_floors.clear()
        self._floor_heap.clear()
        self.forgotten = []
        self._tomb_ids.clear()
        self._tomb_heap.clear()
        self._tombstones = 0
        self._live_instances = 0
        self._bound_instances = 0
        self._live_by_key.clear()
        self._no_instances.clear()
