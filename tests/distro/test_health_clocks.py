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
