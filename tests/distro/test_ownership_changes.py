"""A node's ownership map across a peer's departure and return: the map is used again, and what it counts
and checks is still right for keys added meanwhile."""

from __future__ import annotations

from distro.config import DistroConfig
from distro.model import ServiceKey, make_instance
from distro.ownership import owner_of
from distro.requests import Register
from distro.testing.harness import Harness

MEMBERS = ("n1", "n2", "n3")
INST = make_instance("10.0.0.1", 8080)


def _register(h: Harness, node_id: str, keys: list[ServiceKey]) -> None:
    for key in keys:
        h.client(node_id, Register(key, INST))
    h.advance(h.config.sync_delay_ms)


def test_a_peer_that_goes_and_comes_back_finds_the_map_it_left() -> None:
    h = Harness(MEMBERS, DistroConfig())
    h.start()
    n1 = h["n1"]
    _register(h, "n1", [ServiceKey("public", "DEFAULT_GROUP", f"before-{i}") for i in range(30)])
    full = n1._ownership
    counted = n1._owned_key_count()  # counted under the full map (a count kept by map must not outlive it)
    assert counted == sum(1 for key in n1.store.keys() if owner_of(str(key), MEMBERS) == "n1")
    h.isolate("n3")
    h.advance(h.config.peer_timeout_ms + h.config.ping_interval_ms)
    assert n1.live_members() == ("n1", "n2")
    # Keys added while n3 is away (some of them n1's under both maps, some only while n3 is away).
    _register(h, "n1", [ServiceKey("public", "DEFAULT_GROUP", f"away-{i}") for i in range(30)])
    h.cut.clear()
    h.advance(2 * h.config.ping_interval_ms)
    assert n1.live_members() == MEMBERS
    assert n1._ownership is full  # the map it had before n3 left
    owned = [key for key in n1.store.keys() if owner_of(str(key), MEMBERS) == "n1"]
    assert n1._owned_key_count() == len(owned)
    assert [key for key in n1.store.keys() if n1.is_owner(key)] == owned
    # Its heartbeat clocks are exactly those of the keys it owns again.
    assert [key for key in n1.store.keys() if n1.last_beat_ms(key, INST.entry_id) is not None] == owned
