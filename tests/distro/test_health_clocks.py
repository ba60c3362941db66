"""The owner's heartbeat clocks follow ownership, even for keys whose entries were all collected; the
check's pass in slices judges what a scan in one step judges, and loses nothing that falls due meanwhile.

Found by the heartbeat checker (tests/sim/test_beats.py): a node owned a key while isolated, the key's last
tombstone was collected, and when ownership moved on after the heal the key's clocks stayed behind (only
stored keys were visited). Once the key was registered again elsewhere and replicated here, this node's
health check gave the new instance a clock and marked it unhealthy, though it did not own it.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from distro.config import DistroConfig
from distro.datum import Entry
from distro.health import HeartbeatClocks
from distro.model import META_BEAT_TIMEOUT, ServiceKey, make_instance
from distro.ownership import MemberScores, OwnershipMap
from distro.store import DatumStore
from distro.versions import Version
from tests.distro import PROPERTIES

INST = make_instance("10.0.0.1", 8080)


def key_owned_by(owner: str, members: tuple[str, ...]) -> ServiceKey:
    return next(
        key for i in range(10_000)
        if OwnershipMap(members).owner(str(key := ServiceKey("public", "DEFAULT_GROUP", f"svc-{i}"))) == owner
    )


def test_clocks_of_a_collected_key_leave_with_its_ownership() -> None:
    config = DistroConfig()
    store = DatumStore()
    clocks = HeartbeatClocks(config, store)
    key = key_owned_by("n2", ("n1", "n2"))
    alone, both = OwnershipMap(("n1",)), OwnershipMap(("n1", "n2"))
    store.merge(key, INST.entry_id, Entry(Version(1_000, 0, "n1"), INST))
    assert clocks.reassign("n1", OwnershipMap(()), alone, 1_000) == ([key], 0)  # n1 alone owns it
    store.merge(key, INST.entry_id, Entry(Version(2_000, 0, "n1"), None))
    clocks.forget(key, INST.entry_id)
    assert store.collect_tombstones(3_000) == [key] and key not in store
    assert clocks.reassign("n1", alone, both, 4_000) == ([], 1)  # n2 owns it now: its clocks go
    # Registered again on n2 and replicated here: n1 must never judge it.
    store.merge(key, INST.entry_id, Entry(Version(5_000, 0, "n2"), INST))
    assert clocks.last_beat_ms(key, INST.entry_id) is None
    assert clocks.check(5_000 + 10 * config.instance_expire_ms, quorum=True) == []


_MEMBERS = st.lists(st.sampled_from(["n1", "n2", "n3", "n4", "n5"]), unique=True)


@PROPERTIES
@given(old=_MEMBERS, new=_MEMBERS)
def test_reassign_gains_and_loses_exactly_the_keys_whose_owner_changes(old: list[str], new: list[str]) -> None:
    """Whatever the membership change (members leaving, where reassign looks up only the departed members'
    keys, joining, or both), the keys gained and lost are those whose owner by a fresh map changed."""
    store = DatumStore()
    keys = [ServiceKey("public", "DEFAULT_GROUP", f"own-{k}") for k in range(60)]
    for key in keys:
        store.merge(key, INST.entry_id, Entry(Version(1_000, 0, "n2"), INST))
    clocks = HeartbeatClocks(DistroConfig(), store)
    scores = MemberScores()
    before, after = OwnershipMap(old, scores=scores), OwnershipMap(new, scores=scores)
    clocks.reassign("n1", OwnershipMap(()), before, 1_000)
    gained, lost = clocks.reassign("n1", before, after, 2_000)
    owner_then = {key: OwnershipMap(old).owner(str(key)) for key in keys}
    owner_now = {key: OwnershipMap(new).owner(str(key)) for key in keys}
    assert gained == [key for key in keys if owner_now[key] == "n1" != owner_then[key]]
    assert lost == sum(1 for key in keys if owner_then[key] == "n1" != owner_now[key])
    # ... and the keys with clocks are then exactly the keys n1 owns (a join looks up only its own keys).
    clocks.fill(None)
    assert [key for key in keys if clocks.last_beat_ms(key, INST.entry_id) is not None] == [
        key for key in keys if owner_now[key] == "n1"
    ]


def _gained_store(instances: int) -> tuple[DatumStore, list[ServiceKey], list[str]]:
    """A store with ``instances`` instances in each of three keys, every one owned by n1 in a cluster of one."""
    store = DatumStore()
    keys = [ServiceKey("public", "DEFAULT_GROUP", f"fill-{k}") for k in range(3)]
    ids = []
    for j in range(instances):
        inst = make_instance(f"10.1.0.{j}", 8080)
        ids.append(inst.entry_id)
        for key in keys:
            store.merge(key, inst.entry_id, Entry(Version(1_000, j, "n2"), inst))
    return store, keys, ids


def test_gained_clocks_are_built_in_slices_each_starting_when_its_key_was_gained() -> None:
    """reassign only notes the gained keys; fill builds their clocks a slice (whole keys) at a time, each at
    the gain time; a beat heard meanwhile is kept; until built, last_beat_ms answers the gain time."""
    config = DistroConfig()
    store, keys, ids = _gained_store(4)
    orphan = make_instance("10.1.0.9", 8080).replace(connection="n2-conn", orphaned_ms=1_500)
    store.merge(keys[2], orphan.entry_id, Entry(Version(1_000, 9, "n2"), orphan))
    clocks = HeartbeatClocks(config, store)
    assert clocks.reassign("n1", OwnershipMap(()), OwnershipMap(("n1",)), 2_000) == (keys, 0)
    assert clocks.filling
    assert clocks.beat(keys[1], ids[0], 2_500)  # a beat before its key's clocks are built
    assert clocks.last_beat_ms(keys[0], ids[1]) == 2_000  # not built yet: the gain time
    assert clocks.last_beat_ms(keys[0], "DEFAULT/10.9.9.9:1") is None
    clocks.fill(1)  # about one instance: one whole key
    assert clocks.filling
    assert [clocks.last_beat_ms(keys[0], i) for i in ids] == [2_000] * 4
    clocks.fill(100)
    assert not clocks.filling
    assert [clocks.last_beat_ms(keys[1], i) for i in ids] == [2_500, 2_000, 2_000, 2_000]
    assert clocks.last_beat_ms(keys[2], orphan.entry_id) == 1_500  # an orphan's clock is its mark


def test_the_check_waits_for_every_clock_and_judges_from_the_gain_time() -> None:
    """A check while slices remain judges nothing (building them all at once is the stall the slices avoid);
    once built, an instance silent since the gain is marked unhealthy one heartbeat timeout after the gain,
    not after the slice that built its clock."""
    config = DistroConfig()
    store, keys, ids = _gained_store(2)
    clocks = HeartbeatClocks(config, store)
    clocks.reassign("n1", OwnershipMap(()), OwnershipMap(("n1",)), 2_000)
    assert clocks.check(2_001 + config.heartbeat_timeout_ms, quorum=True) == []  # due, but not judged yet
    assert clocks.filling
    clocks.fill(config.clock_fill_instances)
    assert not clocks.filling
    assert clocks.check(2_000 + config.heartbeat_timeout_ms, quorum=True) == []
    marked = clocks.check(2_001 + config.heartbeat_timeout_ms, quorum=True)
    assert sorted((key.service, entry_id) for key, entry_id, _ in marked) == sorted(
        (key.service, entry_id) for key in keys for entry_id in ids)


def test_clocks_of_a_key_lost_or_restarted_before_its_slice() -> None:
    """A key lost again before its slice gets no clocks; a restart before it moves the start to the restart."""
    config = DistroConfig()
    store, keys, ids = _gained_store(1)
    clocks = HeartbeatClocks(config, store)
    clocks.reassign("n1", OwnershipMap(()), OwnershipMap(("n1",)), 2_000)
    clocks.restart(3_000)
    clocks.reassign("n1", OwnershipMap(("n1",)), OwnershipMap(("n2",)), 3_000)
    assert not clocks.filling
    assert all(clocks.last_beat_ms(key, ids[0]) is None for key in keys)
    clocks.reassign("n1", OwnershipMap(("n2",)), OwnershipMap(("n1",)), 4_000)
    clocks.restart(5_000)
    clocks.fill(None)
    assert all(clocks.last_beat_ms(key, ids[0]) == 5_000 for key in keys)


def _sliced(config: DistroConfig, store: DatumStore, slice_instances: int) -> HeartbeatClocks:
    clocks = HeartbeatClocks(replace(config, health_scan_instances=slice_instances), store)
    clocks.reassign("n1", OwnershipMap(()), OwnershipMap(("n1",)), 1_000)
    clocks.fill(None)
    return clocks


def _whole_pass(clocks: HeartbeatClocks, now_ms: int) -> list[tuple[str, str, object]]:
    """Every change of the pass the check at ``now_ms`` starts (if any), calling it until the pass is done."""
    changes = clocks.check(now_ms, quorum=True)
    while clocks.scanning:
        changes += clocks.check(now_ms, quorum=True)
    return sorted((str(key), entry_id, value) for key, entry_id, value in changes)


_KIND = st.sampled_from(["healthy", "unhealthy", "bound", "orphan"])


@PROPERTIES
@given(
    keys=st.lists(st.lists(st.tuples(_KIND, st.integers(0, 40_000)), max_size=5), min_size=1, max_size=6),
    slice_instances=st.integers(1, 7),
    checks_ms=st.lists(st.integers(0, 80_000), min_size=1, max_size=6),
)
def test_a_pass_in_slices_finds_what_one_scan_finds(
    keys: list[list[tuple[str, int]]], slice_instances: int, checks_ms: list[int]
) -> None:
    """With nothing written meanwhile, checks whose passes go a few instances per call return exactly what
    checks scanning everything in one call return, at every check time (so the earliest deadline each pass
    leaves behind agrees too)."""
    config = DistroConfig()
    store = DatumStore()
    beats = []
    for k, instances in enumerate(keys):
        key = ServiceKey("public", "DEFAULT_GROUP", f"slice-{k}")
        for j, (kind, beat_ms) in enumerate(instances):
            inst = make_instance(f"10.2.{k}.{j}", 8080)
            if kind == "unhealthy":
                inst = inst.with_health(False)
            elif kind != "healthy":
                inst = inst.replace(connection="n2-conn", orphaned_ms=1_500 if kind == "orphan" else 0)
            store.merge(key, inst.entry_id, Entry(Version(1_000, j, "n1"), inst))
            beats.append((key, inst.entry_id, 1_000 + beat_ms))
    whole, sliced = _sliced(config, store, 10**9), _sliced(config, store, slice_instances)
    for key, entry_id, beat_ms in beats:
        assert whole.beat(key, entry_id, beat_ms) and sliced.beat(key, entry_id, beat_ms)
    for now_ms in sorted(checks_ms):
        now_ms += 1_000
        assert _whole_pass(sliced, now_ms) == _whole_pass(whole, now_ms)


def test_a_key_gained_mid_pass_is_judged_by_its_deadline() -> None:
    """A clock started during a pass, due sooner than anything the pass finds, is judged at its deadline:
    the pass's end keeps it. A key lost mid-pass is skipped; a restart mid-pass drops the pass."""
    config = DistroConfig()
    store, keys, ids = _gained_store(1)
    clocks = _sliced(config, store, 1)  # the clocks start at 1_000: due from 1_000 + timeout on
    timeout = config.heartbeat_timeout_ms
    for key in keys:
        clocks.beat(key, ids[0], 10_000)  # every deadline at 10_000 + timeout
    start_ms = 1_001 + timeout
    assert clocks.check(start_ms, quorum=True) == [] and clocks.scanning  # a pass, one key per call
    late = ServiceKey("public", "DEFAULT_GROUP", "gained-mid-pass")
    inst = make_instance("10.3.0.1", 8080, metadata={META_BEAT_TIMEOUT: "2000"})
    store.merge(late, inst.entry_id, Entry(Version(2_000, 0, "n1"), inst))
    clocks.instance_changed(late, inst.entry_id, inst, start_ms)  # due at start_ms + 2_000: before the rest
    assert _whole_pass(clocks, start_ms) == [] and not clocks.scanning
    assert clocks.check(start_ms + 2_000, quorum=True) == [] and not clocks.scanning  # nothing due: no pass
    assert _whole_pass(clocks, start_ms + 2_001) == [(str(late), inst.entry_id, inst.with_health(False))]
    # Lost mid-pass: skipped. Restarted mid-pass: the pass is dropped, the next check starts one.
    due_ms = 10_001 + timeout
    first = store.live_instance(keys[0], ids[0])
    assert first is not None
    assert clocks.check(due_ms, quorum=True) == [(keys[0], ids[0], first.with_health(False))]
    assert clocks.scanning
    clocks.reassign("n1", OwnershipMap(("n1",)), OwnershipMap(("n2",)), due_ms)  # every key goes
    assert _whole_pass(clocks, due_ms) == []
    clocks.reassign("n1", OwnershipMap(("n2",)), OwnershipMap(("n1",)), due_ms)
    clocks.fill(None)
    assert clocks.check(due_ms + timeout + 1, quorum=True) != [] and clocks.scanning
    clocks.restart(due_ms + timeout + 1)
    assert not clocks.scanning
    assert _whole_pass(clocks, due_ms + timeout + 1) == []  # every clock starts again now


def test_a_clock_set_by_a_beat_before_its_slice_is_still_judged() -> None:
    """A gained key's instance beats before fill reaches it (fill then leaves its clock alone) and goes
    silent: it is marked unhealthy after the heartbeat timeout, counted from that beat. Before, such a clock
    never reached the earliest-deadline bound, so a node whose only clocks were these never judged them."""
    config = DistroConfig()
    store, keys, ids = _gained_store(1)
    clocks = HeartbeatClocks(config, store)
    clocks.reassign("n1", OwnershipMap(()), OwnershipMap(("n1",)), 2_000)
    for key in keys:
        assert clocks.beat(key, ids[0], 2_500)
    clocks.fill(None)
    assert clocks.check(2_500 + config.heartbeat_timeout_ms, quorum=True) == []
    marked = clocks.check(2_501 + config.heartbeat_timeout_ms, quorum=True)
    assert sorted(key.service for key, _, _ in marked) == sorted(key.service for key in keys)


def test_fill_counts_every_instance_timing_among_instances_that_share_metadata() -> None:
    """fill works a deadline out once per run of instances with the same metadata mapping and health, not
    once per instance: an instance whose metadata asks for a shorter heartbeat timeout, amid many that share
    the default mapping, and one already unhealthy (its deadline is the expiry) are still judged on time."""
    config = DistroConfig(health_scan_instances=1)  # a pass judges one key a call: a pass begun shows
    key = ServiceKey("public", "DEFAULT_GROUP", "mixed")
    store = DatumStore()
    store.merge(ServiceKey("public", "DEFAULT_GROUP", "other"), INST.entry_id, Entry(Version(1_000, 0, "n2"), INST))
    plain = [make_instance(f"10.4.0.{j}", 8080) for j in range(6)]
    short = make_instance("10.4.1.1", 8080, metadata={META_BEAT_TIMEOUT: "3000"})
    sick = make_instance("10.4.1.2", 8080, healthy=False)
    for j, inst in enumerate([*plain[:3], short, *plain[3:], sick]):
        store.merge(key, inst.entry_id, Entry(Version(1_000, j, "n2"), inst))
    clocks = HeartbeatClocks(config, store)
    clocks.reassign("n1", OwnershipMap(()), OwnershipMap(("n1",)), 2_000)
    clocks.fill(None)
    assert all(clocks.last_beat_ms(key, inst.entry_id) == 2_000 for inst in [*plain, short, sick])
    assert clocks.check(5_000, quorum=True) == []
    assert not clocks.scanning  # nothing can be due before 5,000: no pass over the owned instances
    marked = _whole_pass(clocks, 5_001)
    assert [(entry_id, value is not None and not value.healthy) for _, entry_id, value in marked] == [
        (short.entry_id, True)]
    assert _whole_pass(clocks, 2_000 + config.heartbeat_timeout_ms) == []
    later = _whole_pass(clocks, 2_001 + config.heartbeat_timeout_ms)  # (the store still holds short healthy)
    assert sorted(entry_id for _, entry_id, _ in later) == sorted(inst.entry_id for inst in [*plain, short, INST])
    expired = _whole_pass(clocks, 2_001 + config.instance_expire_ms)
    assert (str(key), sick.entry_id, None) in expired


def test_a_restart_rebuilds_every_clock_in_slices_keeping_orphan_marks() -> None:
    """restart() drops the clocks and queues every owned key for fill (one step per key, not per instance):
    once built, every clock starts at the restart but an orphan's, which keeps its mark; nothing is judged
    meanwhile, and an instance silent since the restart is marked one heartbeat timeout after it."""
    config = DistroConfig()
    store, keys, ids = _gained_store(2)
    orphan = make_instance("10.1.0.9", 8080).replace(connection="n2-conn", orphaned_ms=1_500)
    store.merge(keys[2], orphan.entry_id, Entry(Version(1_000, 9, "n2"), orphan))
    clocks = HeartbeatClocks(config, store)
    clocks.reassign("n1", OwnershipMap(()), OwnershipMap(("n1",)), 2_000)
    clocks.fill(None)
    clocks.restart(10_000)
    assert clocks.filling
    assert clocks.check(10_001 + config.heartbeat_timeout_ms, quorum=True) == []  # not judged while filling
    assert [clocks.last_beat_ms(keys[0], i) for i in ids] == [10_000, 10_000]  # answered before built
    clocks.fill(None)
    assert [clocks.last_beat_ms(key, i) for key in keys for i in ids] == [10_000] * 6
    assert clocks.last_beat_ms(keys[2], orphan.entry_id) == 1_500
    marked = clocks.check(10_001 + config.heartbeat_timeout_ms, quorum=True)
    assert sorted((key.service, entry_id) for key, entry_id, inst in marked if inst is not None and
                  not inst.healthy) == sorted((key.service, entry_id) for key in keys for entry_id in ids)
