"""The owner's heartbeat clocks follow ownership, even for keys whose entries were all collected.

Found by the heartbeat checker (tests/sim/test_beats.py): a node owned a key while isolated, the key's last
tombstone was collected, and when ownership moved on after the heal the key's clocks stayed behind (only
stored keys were visited). Once the key was registered again elsewhere and replicated here, this node's
health check gave the new instance a clock and marked it unhealthy, though it did not own it.
"""

from __future__ import annotations

from distro.config import DistroConfig
from distro.datum import Entry
from distro.health import HeartbeatClocks
from distro.model import ServiceKey, make_instance
from distro.ownership import OwnershipMap
from distro.store import DatumStore
from distro.versions import Version

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
