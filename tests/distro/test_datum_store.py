"""Datum merge algebra and the datum store.

- ``merge_datums`` is commutative, associative and idempotent (property tests over a tiny universe of entry
  ids and versions, so that the same entry id with the same or different versions collides often; an
  entry's content is a function of its id and version, the "same version, same content" invariant that
  the real system keeps).
- ``DatumStore.merge`` fed the entries of several datums in any order, with duplicates, ends with the same
  datum and digest as ``merge_datums``; digests are equal exactly when the (entry id, version) sets are.
- Tombstone collection leaves a floor: an unknown live entry at or below it is refused (``BELOW_FLOOR``),
  a tombstone at or below it is ``STALE``, anything newer is applied. Instances share one floor per key;
  cluster data (namespaces, settings) has one floor per deleted entry, so a deletion never refuses
  another entry of the same key.
- Floors of both kinds (deletion records) stay within ``max_deletion_records``: the oldest by version are
  forgotten first, listed for the node (its disk drops their rows), and counted; a forgotten deletion lets
  a stale copy of its entry back (the stated trade-off) while a kept one refuses it; whatever the history,
  the store keeps exactly the floors a naive model (every floor, the lowest versions dropped) keeps.
"""

from __future__ import annotations

import random
from functools import reduce

import pytest
from hypothesis import given
from hypothesis import strategies as st

from distro.clusterdata import NAMESPACES_KEY, NamespaceInfo, cluster_entry_id, is_durable_slot
from distro.datum import META_ENTRY_ID, Datum, Entry, datum_digest, entry_hash, merge_datums, newer
from distro.model import Instance, ServiceKey, ServiceMeta
from distro.store import DatumStore, MergeOutcome
from distro.versions import Version
from tests.distro import PROPERTIES

KEY = ServiceKey("public", "DEFAULT_GROUP", "svc")
OTHER = ServiceKey("public", "DEFAULT_GROUP", "other")
ENTRY_IDS = ["DEFAULT/10.0.0.1:80", "DEFAULT/10.0.0.2:80", "c2/10.0.0.1:80", META_ENTRY_ID]


def content(entry_id: str, version: Version) -> Instance | ServiceMeta | None:
    """The one value an (entry id, version) pair ever carries."""
    if (version.ms + version.counter) % 3 == 0:
        return None
    if entry_id == META_ENTRY_ID:
        return ServiceMeta(protect_threshold=version.ms / 10, metadata={"by": version.node})
    cluster, _, address = entry_id.partition("/")
    ip, _, port = address.partition(":")
    return Instance(ip, int(port), cluster, weight=float(version.counter + 1), healthy=version.ms % 2 == 0,
                    metadata={"node": version.node})


versions = st.builds(Version, st.integers(0, 3), st.integers(0, 2), st.sampled_from(["n1", "n2"]))
entries = st.tuples(st.sampled_from(ENTRY_IDS), versions).map(lambda p: (p[0], Entry(p[1], content(*p))))
datums = st.lists(entries, max_size=6).map(dict)


def identity(datum: Datum) -> set[tuple[str, Version]]:
    return {(entry_id, entry.version) for entry_id, entry in datum.items()}


# ------------------------------------------------------------------------------------------------
# merge algebra
# ------------------------------------------------------------------------------------------------
@PROPERTIES
@given(datums, datums)
def test_merge_is_commutative(a: Datum, b: Datum) -> None:
    assert merge_datums(a, b) == merge_datums(b, a)


@PROPERTIES
@given(datums, datums, datums)
def test_merge_is_associative(a: Datum, b: Datum, c: Datum) -> None:
    assert merge_datums(merge_datums(a, b), c) == merge_datums(a, merge_datums(b, c))


@PROPERTIES
@given(datums, datums)
def test_merge_is_idempotent_and_keeps_the_highest_version(a: Datum, b: Datum) -> None:
    assert merge_datums(a, a) == a
    merged = merge_datums(a, b)
    assert merge_datums(merged, b) == merged
    assert merged.keys() == a.keys() | b.keys()
    for entry_id, entry in merged.items():
        candidates = [d[entry_id] for d in (a, b) if entry_id in d]
        assert entry.version == max(c.version for c in candidates)
        assert entry == reduce(newer, candidates)


@PROPERTIES
@given(datums, datums)
def test_merge_does_not_change_its_inputs(a: Datum, b: Datum) -> None:
    a_copy, b_copy = dict(a), dict(b)
    merge_datums(a, b)
    assert (a, b) == (a_copy, b_copy)


# ------------------------------------------------------------------------------------------------
# DatumStore.merge == merge_datums, in any order, with duplicates
# ------------------------------------------------------------------------------------------------
@PROPERTIES
@given(st.lists(datums, min_size=1, max_size=4), st.randoms(use_true_random=False), st.integers(0, 3))
def test_store_merge_in_any_order_matches_merge_datums(parts: list[Datum], rnd, duplicates: int) -> None:
    expected = reduce(merge_datums, parts, {})
    items = [item for part in parts for item in part.items()]
    items += [rnd.choice(items) for _ in range(duplicates)] if items else []
    rnd.shuffle(items)
    store = DatumStore()
    for entry_id, entry in items:
        store.merge(KEY, entry_id, entry)
    assert (store.datum(KEY) or {}) == expected
    assert store.digest(KEY) == datum_digest(expected.items())
    assert (KEY in store) == bool(expected)
    stats = store.statistics()
    assert stats.entries == len(expected)
    assert stats.tombstones == sum(1 for e in expected.values() if e.value is None)
    assert stats.live_instances == sum(1 for e in expected.values() if isinstance(e.value, Instance))
    assert store.live_instance_count(KEY) == stats.live_instances
    assert store.service_exists(KEY) == any(e.value is not None for e in expected.values())


@PROPERTIES
@given(datums, datums)
def test_digest_equal_iff_ids_and_versions_equal(a: Datum, b: Datum) -> None:
    assert (datum_digest(a.items()) == datum_digest(b.items())) == (identity(a) == identity(b))


@PROPERTIES
@given(datums)
def test_digest_is_order_independent_and_empty_is_zero(a: Datum) -> None:
    assert datum_digest(reversed(list(a.items()))) == datum_digest(a.items())
    assert datum_digest([]) == 0
    assert DatumStore().digest(KEY) == 0


def test_merge_outcomes() -> None:
    store = DatumStore()
    eid = ENTRY_IDS[0]
    v1, v2 = Version(10, 1, "n1"), Version(10, 2, "n1")
    assert store.merge(KEY, eid, Entry(v1, content(eid, v1))) is MergeOutcome.APPLIED
    assert store.merge(KEY, eid, Entry(v1, content(eid, v1))) is MergeOutcome.STALE
    assert store.merge(KEY, eid, Entry(v2, None)) is MergeOutcome.APPLIED
    assert store.merge(KEY, eid, Entry(v1, content(eid, v1))) is MergeOutcome.STALE
    assert store.entry(KEY, eid) == Entry(v2, None)
    assert store.live_instance(KEY, eid) is None
    assert store.digest(KEY) == entry_hash(eid, v2)
    assert store.items(KEY) == [(eid, Entry(v2, None))]
    assert store.items(OTHER) == [] and store.datum(OTHER) is None and store.entry(OTHER, eid) is None


def test_meta_entry_and_service_exists() -> None:
    store = DatumStore()
    assert not store.service_exists(KEY) and store.meta(KEY) is None
    meta = ServiceMeta(0.5)
    store.merge(KEY, META_ENTRY_ID, Entry(Version(1, 0, "n1"), meta))
    assert store.meta(KEY) == meta and store.service_exists(KEY)
    assert store.live_instance_count(KEY) == 0
    store.merge(KEY, META_ENTRY_ID, Entry(Version(2, 0, "n1"), None))
    assert store.meta(KEY) is None and not store.service_exists(KEY)
    assert KEY in store  # the tombstone is still held


# ------------------------------------------------------------------------------------------------
# tombstone collection and the floor
# ------------------------------------------------------------------------------------------------
def _instance_entry(ms: int, counter: int = 0) -> Entry:
    v = Version(ms, counter, "n1")
    return Entry(v, Instance("10.0.0.1", 80, weight=float(ms)))


def test_collect_tombstones_leaves_a_floor() -> None:
    store = DatumStore()
    dead, dead_too, live = "DEFAULT/10.0.0.1:80", "DEFAULT/10.0.0.2:80", "DEFAULT/10.0.0.3:80"
    store.merge(KEY, dead, Entry(Version(100, 0, "n1"), None))
    store.merge(KEY, dead_too, Entry(Version(90, 5, "n2"), None))
    store.merge(KEY, live, _instance_entry(50))
    assert store.collect_tombstones(90) == []  # the oldest was written at 90: not before 90
    assert store.statistics().tombstones == 2
    assert store.collect_tombstones(101) == [KEY]
    assert store.collect_tombstones(101) == []
    assert store.statistics().tombstones == 0
    assert store.entry(KEY, dead) is None and store.entry(KEY, dead_too) is None
    assert store.digest(KEY) == entry_hash(live, Version(50, 0, "n1"))

    # Floor = Version(100, 0, "n1"), the highest collected version.
    assert store.merge(KEY, dead, _instance_entry(99, 9)) is MergeOutcome.BELOW_FLOOR
    assert store.merge(KEY, dead, Entry(Version(100, 0, "n1"), Instance("10.0.0.1", 80))) is MergeOutcome.BELOW_FLOOR
    assert store.merge(KEY, dead_too, _instance_entry(95)) is MergeOutcome.BELOW_FLOOR
    assert store.merge(KEY, dead, Entry(Version(80, 0, "n1"), None)) is MergeOutcome.STALE
    assert store.merge(KEY, dead, Entry(Version(100, 0, "n1"), None)) is MergeOutcome.STALE
    assert store.entry(KEY, dead) is None
    # A known entry is compared with its own version, not the floor.
    assert store.merge(KEY, live, _instance_entry(60)) is MergeOutcome.APPLIED
    # Newer than the floor: applied, live or tombstone.
    assert store.merge(KEY, dead, _instance_entry(100, 1)) is MergeOutcome.APPLIED
    assert store.merge(KEY, dead_too, Entry(Version(101, 0, "n2"), None)) is MergeOutcome.APPLIED
    assert store.live_instance(KEY, dead) == Instance("10.0.0.1", 80, weight=100.0)


def test_collecting_the_last_entry_removes_the_key_but_keeps_its_floor() -> None:
    store = DatumStore()
    eid = ENTRY_IDS[0]
    store.merge(KEY, eid, Entry(Version(10, 0, "n1"), None))
    store.merge(OTHER, eid, Entry(Version(500, 0, "n1"), None))
    assert store.collect_tombstones(100) == [KEY]
    assert KEY not in store and store.digest(KEY) == 0 and len(store) == 1
    assert list(store.keys()) == [OTHER]
    assert store.merge(KEY, eid, _instance_entry(10)) is MergeOutcome.BELOW_FLOOR
    assert KEY not in store
    assert store.merge(KEY, eid, _instance_entry(11)) is MergeOutcome.APPLIED
    # The floor is per key: OTHER's tombstone is younger and still there.
    assert store.entry(OTHER, eid) == Entry(Version(500, 0, "n1"), None)


def test_cluster_data_has_a_floor_per_deleted_entry() -> None:
    store = DatumStore()
    store.merge(NAMESPACES_KEY, "dev", Entry(Version(100, 0, "n1"), None))
    store.merge(KEY, META_ENTRY_ID, Entry(Version(200, 0, "n1"), None))
    store.merge(KEY, ENTRY_IDS[0], Entry(Version(50, 0, "n1"), None))
    assert sorted(store.collect_tombstones(1_000), key=str) == sorted([NAMESPACES_KEY, KEY], key=str)  # any order
    assert store.statistics().entry_floors == 2
    # The deleted entries themselves: a stale copy is refused, an old tombstone is stale.
    assert store.merge(NAMESPACES_KEY, "dev", Entry(Version(99, 0, "n2"), NamespaceInfo("x"))) is MergeOutcome.BELOW_FLOOR
    assert store.merge(KEY, META_ENTRY_ID, Entry(Version(150, 0, "n2"), ServiceMeta())) is MergeOutcome.BELOW_FLOOR
    assert store.merge(NAMESPACES_KEY, "dev", Entry(Version(90, 0, "n2"), None)) is MergeOutcome.STALE
    # Another namespace or cluster written before that deletion, never seen here: applied (a key floor, the
    # highest deletion of the key, would have refused it).
    assert store.merge(NAMESPACES_KEY, "qa", Entry(Version(60, 0, "n2"), NamespaceInfo("QA"))) is MergeOutcome.APPLIED
    assert store.merge(KEY, cluster_entry_id("c1"), Entry(Version(150, 0, "n2"), None)) is MergeOutcome.APPLIED
    # Instances keep their key floor (from the instance tombstone at 50 only, not the settings' at 200).
    assert store.merge(KEY, ENTRY_IDS[0], _instance_entry(50)) is MergeOutcome.BELOW_FLOOR
    assert store.merge(KEY, ENTRY_IDS[1], _instance_entry(51)) is MergeOutcome.APPLIED
    # A newer version of a deleted entry stands for its floor, which is forgotten.
    assert store.merge(NAMESPACES_KEY, "dev", Entry(Version(101, 0, "n2"), NamespaceInfo("y"))) is MergeOutcome.APPLIED
    assert store.statistics().entry_floors == 1 and store.floor(NAMESPACES_KEY, "dev") is None
    assert store.floor(KEY, META_ENTRY_ID) == Version(200, 0, "n1")


def test_clear_forgets_everything_including_floors() -> None:
    store = DatumStore()
    eid = ENTRY_IDS[0]
    store.merge(KEY, eid, Entry(Version(10, 0, "n1"), None))
    store.collect_tombstones(100)
    store.merge(OTHER, eid, _instance_entry(1))
    store.clear()
    assert len(store) == 0 and store.statistics() == type(store.statistics())(0, 0, 0, 0)
    assert store.merge(KEY, eid, _instance_entry(5)) is MergeOutcome.APPLIED


# A step of the store's life: merge one entry into one of two keys, or collect tombstones older than ms.
steps = st.lists(
    st.one_of(
        st.tuples(st.just("merge"), st.sampled_from([KEY, OTHER]), entries),
        st.tuples(st.just("collect"), st.integers(0, 4)),
    ),
    max_size=25,
)


def _all_entries(store: DatumStore) -> dict[tuple[ServiceKey, str], Entry]:
    return {(key, entry_id): entry for key in store.keys() for entry_id, entry in store.items(key)}


@PROPERTIES
@given(steps)
def test_collection_that_follows_the_tombstones_drops_exactly_what_a_full_scan_would(
    script: list[tuple[object, ...]],
) -> None:
    """The store finds tombstones through its own index of them: whatever the history of merges (tombstones
    replaced by live entries and back, keys emptied and refilled), a collection drops exactly the tombstones
    older than its bound that a walk over every entry finds, reports exactly their keys, and the counts and
    digests stay those of the entries held."""
    store = DatumStore()
    for step in script:
        if step[0] == "merge":
            key, pair = step[1], step[2]
            assert isinstance(key, ServiceKey) and isinstance(pair, tuple)
            entry_id, entry = pair
            assert isinstance(entry_id, str) and isinstance(entry, Entry)
            store.merge(key, entry_id, entry)
        else:
            bound = step[1]
            assert isinstance(bound, int)
            before = _all_entries(store)
            doomed = {k for k, e in before.items() if e.value is None and e.version.ms < bound}
            changed = store.collect_tombstones(bound)
            assert sorted(changed, key=str) == sorted({key for key, _ in doomed}, key=str)
            assert _all_entries(store) == {k: e for k, e in before.items() if k not in doomed}
        held = _all_entries(store)
        stats = store.statistics()
        assert stats.tombstones == sum(1 for e in held.values() if e.value is None)
        assert stats.live_instances == sum(1 for e in held.values() if isinstance(e.value, Instance))
        for key in (KEY, OTHER):
            assert store.digest(key) == datum_digest(store.items(key))


def test_tombstones_replaced_many_times_are_collected_once_and_the_rest_kept() -> None:
    """Tombstones are found through a heap by time; items of tombstones replaced since (by a live entry or a
    newer tombstone, even of the same millisecond) are skipped, and a heap mostly of those is rebuilt."""
    store = DatumStore()
    for i in range(3_000):  # each deleted, then registered again: 3,000 stale heap items
        entry_id = f"DEFAULT/10.1.{i // 256}.{i % 256}:80"
        store.merge(KEY, entry_id, Entry(Version(10 + i, 0, "n1"), None))
        store.merge(KEY, entry_id, Entry(Version(10 + i, 1, "n1"), Instance("10.0.0.1", 80)))
    store.merge(OTHER, "DEFAULT/10.2.0.1:80", Entry(Version(50, 0, "n1"), None))
    store.merge(OTHER, "DEFAULT/10.2.0.1:80", Entry(Version(50, 1, "n2"), None))  # same ms, newer
    store.merge(OTHER, "DEFAULT/10.2.0.2:80", Entry(Version(9_000, 0, "n1"), None))
    assert store.collect_tombstones(60) == [OTHER]
    assert store.statistics().tombstones == 1 and store.statistics().live_instances == 3_000
    assert store.collect_tombstones(60) == []
    assert store.collect_tombstones(9_001) == [OTHER]
    assert store.statistics().tombstones == 0


# ------------------------------------------------------------------------------------------------
# the deletion-record budget
# ------------------------------------------------------------------------------------------------
def _deleted(store: DatumStore, key: ServiceKey, entry_id: str, ms: int) -> None:
    assert store.merge(key, entry_id, Entry(Version(ms, 0, "n1"), None)) is MergeOutcome.APPLIED


def test_deletion_records_stay_within_the_budget_and_the_oldest_go_first() -> None:
    store = DatumStore(max_deletion_records=3)
    deletions = [  # (key, entry id, ms): namespaces, service settings and instances (key floors), shuffled
        (NAMESPACES_KEY, "ns-a", 40), (KEY, META_ENTRY_ID, 10), (OTHER, ENTRY_IDS[0], 30),
        (NAMESPACES_KEY, "ns-b", 60), (KEY, ENTRY_IDS[1], 20), (OTHER, cluster_entry_id("c1"), 50),
    ]
    random.Random(7).shuffle(deletions)
    for key, entry_id, ms in deletions:
        _deleted(store, key, entry_id, ms)
    store.collect_tombstones(1_000)
    stats = store.statistics()
    assert stats.entry_floors + stats.key_floors == 3 and stats.deletion_records_dropped == 3
    assert store.forgotten == [  # oldest first, whatever order they were collected in
        (Version(10, 0, "n1"), KEY, META_ENTRY_ID),
        (Version(20, 0, "n1"), KEY, ENTRY_IDS[1]),
        (Version(30, 0, "n1"), OTHER, ENTRY_IDS[0]),
    ]
    assert store.floor(KEY, META_ENTRY_ID) is None and store.floor(KEY, ENTRY_IDS[1]) is None
    assert store.floor(OTHER, ENTRY_IDS[0]) is None  # OTHER's key floor went with its record
    assert store.floor(NAMESPACES_KEY, "ns-a") == Version(40, 0, "n1")
    assert store.floor(OTHER, cluster_entry_id("c1")) == Version(50, 0, "n1")

    # A later pass: a newer deletion pushes out the oldest kept one; an older one goes at once.
    _deleted(store, NAMESPACES_KEY, "ns-c", 70)
    _deleted(store, NAMESPACES_KEY, "ns-old", 5)  # a stale copy's deletion, merged late
    store.collect_tombstones(1_000)
    assert store.forgotten == [(Version(5, 0, "n1"), NAMESPACES_KEY, "ns-old"),
                               (Version(40, 0, "n1"), NAMESPACES_KEY, "ns-a")]
    assert store.statistics().deletion_records_dropped == 5
    assert [store.floor(NAMESPACES_KEY, ns) for ns in ("ns-b", "ns-c")] == [Version(60, 0, "n1"), Version(70, 0, "n1")]
    store.collect_tombstones(1_000)
    assert store.forgotten == []  # what the last pass dropped, not a running list


def test_a_forgotten_deletion_lets_a_stale_copy_back_and_a_kept_one_refuses_it() -> None:
    """The stated trade-off (docs/security.md): once more newer deletions than the budget came after it, a
    deletion is forgotten, and a copy of the entry from before it (a node that was away meanwhile) is
    taken as new. A deletion still remembered refuses its stale copy."""
    store = DatumStore(max_deletion_records=1)
    _deleted(store, NAMESPACES_KEY, "old", 100)
    _deleted(store, NAMESPACES_KEY, "new", 200)
    store.collect_tombstones(1_000)
    assert store.forgotten == [(Version(100, 0, "n1"), NAMESPACES_KEY, "old")]
    stale_new = Entry(Version(150, 0, "n3"), NamespaceInfo("New"))
    stale_old = Entry(Version(50, 0, "n3"), NamespaceInfo("Old"))
    assert store.merge(NAMESPACES_KEY, "new", stale_new) is MergeOutcome.BELOW_FLOOR
    assert store.merge(NAMESPACES_KEY, "old", stale_old) is MergeOutcome.APPLIED
    assert store.live_value(NAMESPACES_KEY, "old") == NamespaceInfo("Old")


def test_a_budget_of_zero_remembers_no_deletion_and_a_negative_one_is_refused() -> None:
    store = DatumStore(max_deletion_records=0)
    _deleted(store, KEY, ENTRY_IDS[0], 10)
    _deleted(store, KEY, META_ENTRY_ID, 20)
    store.collect_tombstones(1_000)
    assert len(store.forgotten) == 2 and store.statistics().entry_floors == store.statistics().key_floors == 0
    with pytest.raises(ValueError, match="max_deletion_records must not be negative"):
        DatumStore(max_deletion_records=-1)


class _FloorModel:
    """Every floor the store would keep without a budget, then the lowest (version, key, entry id) dropped
    until the budget holds: what the store must keep, computed the slow way."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.entry: dict[tuple[ServiceKey, str], Version] = {}
        self.key: dict[ServiceKey, tuple[Version, str]] = {}

    def merge(self, key: ServiceKey, entry_id: str, held: bool, entry: Entry) -> None:
        if held:
            return
        if is_durable_slot(key, entry_id):
            floor = self.entry.get((key, entry_id))
            if floor is not None and entry.version > floor:
                del self.entry[(key, entry_id)]

    def collect(self, doomed: list[tuple[ServiceKey, str, Entry]]) -> list[tuple[Version, ServiceKey, str]]:
        for key, entry_id, entry in doomed:
            if is_durable_slot(key, entry_id):
                self.entry[(key, entry_id)] = entry.version
            elif key not in self.key or entry.version > self.key[key][0]:
                self.key[key] = (entry.version, entry_id)
        dropped = []
        while len(self.entry) + len(self.key) > self.budget:
            records = [(v, k, e) for (k, e), v in self.entry.items()] + [(v, k, e) for k, (v, e) in self.key.items()]
            oldest = min(records)
            if is_durable_slot(oldest[1], oldest[2]):
                del self.entry[(oldest[1], oldest[2])]
            else:
                del self.key[oldest[1]]
            dropped.append(oldest)
        return dropped


def _written_by(entry_id: str, version: Version) -> Version:
    """A version that only this entry id carries: one write makes one version, as in the real system (two
    entries deleted with equal versions would leave the store free to keep either)."""
    return version._replace(node=f"{version.node}/{entry_id}")


budget_steps = st.lists(
    st.one_of(
        st.tuples(st.just("merge"), st.sampled_from([KEY, OTHER]),
                  st.tuples(st.sampled_from(ENTRY_IDS), versions).map(
                      lambda p: (p[0], Entry(_written_by(*p), content(*p))))),
        st.tuples(st.just("merge"), st.just(NAMESPACES_KEY),
                  st.tuples(st.sampled_from(["ns-a", "ns-b", "ns-c"]), versions).map(
                      lambda p: (p[0], Entry(_written_by(*p), None if p[1].counter == 0 else NamespaceInfo(p[0]))))),
        st.tuples(st.just("collect"), st.integers(0, 4)),
    ),
    max_size=30,
)


@PROPERTIES
@given(st.integers(0, 3), budget_steps)
def test_the_budget_keeps_exactly_the_newest_floors_whatever_the_history(
    budget: int, script: list[tuple[object, ...]],
) -> None:
    """Merges that end floors (a newer version of a deleted entry), floors raised again, deletions merged
    late with old versions: after every step the store holds the floors the model holds, at most the
    budget, and each pass forgets what the model drops, oldest first."""
    store, model = DatumStore(max_deletion_records=budget), _FloorModel(budget)
    slots = [(key, entry_id) for key in (KEY, OTHER) for entry_id in ENTRY_IDS]
    slots += [(NAMESPACES_KEY, ns) for ns in ("ns-a", "ns-b", "ns-c")]
    for step in script:
        if step[0] == "merge":
            key, (entry_id, entry) = step[1], step[2]  # type: ignore[misc]
            held = store.entry(key, entry_id) is not None
            if store.merge(key, entry_id, entry) is MergeOutcome.APPLIED:
                model.merge(key, entry_id, held, entry)
        else:
            bound = step[1]
            assert isinstance(bound, int)
            doomed = [(k, e, entry) for (k, e), entry in _all_entries(store).items()
                      if entry.value is None and entry.version.ms < bound]
            store.collect_tombstones(bound)
            assert store.forgotten == model.collect(doomed)
        stats = store.statistics()
        assert stats.entry_floors + stats.key_floors <= budget
        for key, entry_id in slots:
            if is_durable_slot(key, entry_id):
                assert store.floor(key, entry_id) == model.entry.get((key, entry_id))
            else:
                expected = model.key.get(key)
                assert store.floor(key, entry_id) == (None if expected is None else expected[0])


# ------------------------------------------------------------------------------------------------
# merge_instances (a snapshot's instance block, in bulk) == merge of each entry
# ------------------------------------------------------------------------------------------------
BLOCK_IDS = [*ENTRY_IDS[:3], "DEFAULT/10.0.0.3:80", "c2/10.0.0.9:81"]


def _block_instance(entry_id: str, version: Version) -> Instance:
    cluster, _, address = entry_id.partition("/")
    ip, _, port = address.partition(":")
    bound = "conn-1" if version.counter == 1 else ""  # some bound to a gRPC connection (counted apart)
    return Instance(ip, int(port), cluster, weight=float(version.ms + 1), metadata={"node": version.node},
                    connection=bound)


block_entries = st.tuples(st.sampled_from(BLOCK_IDS), versions).map(
    lambda p: (p[0], Entry(p[1], _block_instance(*p)))
)
blocks = st.lists(block_entries, max_size=6).map(dict)


def _state(store: DatumStore) -> tuple[object, ...]:
    """Everything a merge changes that can be read back."""
    return (
        _all_entries(store),
        {key: store.digest(key) for key in (KEY, OTHER)},
        store.statistics(),
        store.bound_instances,
        store.instance_entries,
        {key: store.live_instance_count(key) for key in (KEY, OTHER)},
        list(store.keys_without_instances()),
        {key: store.service_exists(key) for key in (KEY, OTHER)},
        {key: store.floor(key, BLOCK_IDS[0]) for key in (KEY, OTHER)},
        sorted(store.collect_tombstones(10), key=str),  # the tombstone heap still finds every tombstone
        _all_entries(store),
    )


@PROPERTIES
@given(steps, st.lists(st.tuples(blocks, st.booleans()), min_size=1, max_size=3))
def test_merge_instances_leaves_the_store_that_merging_each_entry_leaves(script: list[tuple[object, ...]],
                                                                         parts: list[tuple[Datum, bool]]) -> None:
    """Whatever the store held (entries of the key or not, tombstones, a floor left by a collection), merging
    blocks of instances in bulk leaves exactly the store, digests, counts and floors that merging their
    entries one at a time leaves, and reports exactly the entries applied; with or without the block's
    digest as a sender ships it (used only when the whole block was added, else the entries are hashed),
    including blocks that partly overlap entries held."""
    bulk, single = DatumStore(), DatumStore()
    for store in (bulk, single):
        for step in script:
            if step[0] == "merge":
                store.merge(step[1], *step[2])  # type: ignore[arg-type]
            else:
                store.collect_tombstones(step[1])  # type: ignore[arg-type]
    for part, shipped in parts:
        applied = bulk.merge_instances(KEY, dict(part), datum_digest(part.items()) if shipped else None)
        expected = {eid: e for eid, e in part.items() if single.merge(KEY, eid, e) is MergeOutcome.APPLIED}
        assert applied == expected
    assert _state(bulk) == _state(single)


def test_merge_instances_adopts_a_new_keys_block_and_adds_to_a_held_key() -> None:
    """A key the store does not hold takes the block itself as its datum (nothing copied); a second block of
    the same key (a service split over two snapshot chunks) is added to it."""
    store = DatumStore()
    first = {eid: Entry(Version(1, i, "n1"), _block_instance(eid, Version(1, i, "n1"))) for i, eid in
             enumerate(BLOCK_IDS[:2])}
    assert store.merge_instances(KEY, first) is first
    assert store.datum(KEY) is first
    second = {eid: Entry(Version(2, 0, "n2"), _block_instance(eid, Version(2, 0, "n2"))) for eid in BLOCK_IDS[2:]}
    assert store.merge_instances(KEY, second) == second
    assert store.live_instance_count(KEY) == len(BLOCK_IDS)
    assert store.digest(KEY) == datum_digest(store.items(KEY))
    assert store.merge_instances(OTHER, {}) == {} and OTHER not in store
