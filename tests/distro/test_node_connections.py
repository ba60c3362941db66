"""Instances bound to gRPC connections, in the core, one exchange at a time on the hand-driven harness.

Proves: the holder renews on the owner (one ``Renew`` per owner, every ``heartbeat_timeout_ms / 3``) and the
owner restarts the clocks; a renewed instance is never marked unhealthy by silence, only expired; the owner
answers only what is off (``missing``: the holder registers it again, ``taken``: left to the other writer,
still bound, and registered again if that entry goes away while the connection is open); a
connection's deregistration is conditional on the connection; a holder seen down gives its instances a
whole expiry from then, and no more: the owner marks them orphans, and neither the holder's next death nor
a new owner restarts their clocks; a holder seen down that is alive registers them again, unmarked.
"""

from __future__ import annotations

from dataclasses import replace

from distro.config import DistroConfig
from distro.connections import held_by, new_connection_id
from distro.messages import Renew, RenewReply
from distro.model import ServiceKey, make_instance
from distro.ownership import owner_of
from distro.requests import Register
from distro.testing.harness import Harness

CONFIG = DistroConfig(cluster_size=3, heartbeat_timeout_ms=3_000, instance_expire_ms=6_000)
INST = make_instance("10.0.0.1", 8080)


def owned_by(owner: str, skip: int = 0) -> ServiceKey:
    """The ``skip``-th service key (from 0) that ``owner`` owns among n1..n3."""
    for i in range(10_000):
        key = ServiceKey("public", "DEFAULT_GROUP", f"svc-{i}")
        if owner_of(str(key), ("n1", "n2", "n3")) == owner:
            if skip == 0:
                return key
            skip -= 1
    raise AssertionError("no such key")


def started(config: DistroConfig = CONFIG) -> Harness:
    h = Harness(("n1", "n2", "n3"), config)
    h.start()
    return h


def bind(h: Harness, holder: str, key: ServiceKey, connection: str = "") -> str:
    """Open a connection on ``holder`` and register INST over it, as the gRPC front door does."""
    connection = connection or new_connection_id(holder, h.now_ms, "10.9.9.9", 50000)
    node = h[holder]
    node.connections.open(connection, h.now_ms)
    for write in node.connections.register(connection, key, (INST,), h.now_ms):
        h.client(holder, write)
    h.advance(CONFIG.sync_delay_ms + 1)  # delivered, applied on the owner and replicated
    return connection


def listed(h: Harness, node_id: str, key: ServiceKey) -> list[tuple[str, bool, str]]:
    view = h[node_id].view(key)
    return [] if view is None else [(i.ip, i.healthy, i.connection) for i in view.instances]


def test_connection_ids_name_their_holder() -> None:
    connection = new_connection_id("n1", 1_700_000_000_000, "10.0.0.7", 51234)
    assert connection.startswith("1700000000000_10.0.0.7_51234_")
    assert held_by(connection, "n1") and not held_by(connection, "n2")
    assert held_by(connection + ".2", "n1")  # the front door's suffix for an id already in use


def test_holder_renews_on_the_owner_and_the_instance_outlives_the_expiry() -> None:
    h = started()
    key = owned_by("n2")
    connection = bind(h, "n1", key)
    assert listed(h, "n3", key) == [("10.0.0.1", True, connection)]
    h.advance(1_000, deliver=False)
    renewals = h.pending(Renew, source="n1")
    assert [w.target for w in renewals] == ["n2"] and renewals[0].message.items == ((key, INST.entry_id, connection),)
    h.advance(20_000)  # far past the expiry, renewed all along
    assert listed(h, "n3", key) == [("10.0.0.1", True, connection)]
    assert h["n2"].statistics().instances_orphaned == 0  # renewed: never marked an orphan
    assert h["n2"].statistics().renewals_received >= 15
    assert h["n1"].statistics().connection_instances == 1


def test_without_renewals_an_instance_expires_but_is_never_marked_unhealthy() -> None:
    h = started()
    key = owned_by("n2")
    bind(h, "n1", key)
    h.advance(1_000)
    h.drop()
    h["n1"].connections.close(next(c for c, _, _ in h["n1"].connections.instances()))  # dropped, no writes sent
    h.advance(5_500)  # past the heartbeat timeout, before the expiry
    assert listed(h, "n2", key)[0][1] is True
    h.advance(2_000)
    assert listed(h, "n2", key) == [] and listed(h, "n3", key) == []


def test_owner_reports_missing_and_taken_instances_and_the_holder_acts() -> None:
    h = started()
    key = owned_by("n2")
    connection = bind(h, "n1", key)
    other = owned_by("n2", skip=1)
    node = h["n1"]
    node.connections.register(connection, other, (INST,), h.now_ms)  # bound here, never written: the owner lacks it
    h.client("n3", Register(key, INST))  # a v1 HTTP registration takes the entry over
    h.advance(CONFIG.sync_delay_ms + 1)
    h.advance(1_000, deliver=False)
    h.deliver(Renew)
    replies = [w.message for w in h.pending(RenewReply)]
    assert any(r.taken and r.taken[0][:3] == (key, INST.entry_id, connection) for r in replies)
    assert any(r.missing == ((other, INST.entry_id, connection),) for r in replies)
    h.advance(CONFIG.sync_delay_ms + 1)
    assert node.connections.bound(connection, key, INST.entry_id) is not None  # left to the v1 client, still bound
    assert listed(h, "n3", key) == [("10.0.0.1", True, "")]
    assert listed(h, "n3", other) == [("10.0.0.1", True, connection)]  # registered again
    assert node.statistics().renewed_taken == 1 and node.statistics().renewed_missing == 1
    writes = node.connections.close(connection)
    assert sorted(str(w.key) for w in writes) == sorted([str(key), str(other)])
    for write in writes:  # conditional on the connection: the v1 client's entry stays
        h.client("n1", write)
    h.advance(CONFIG.sync_delay_ms + 1)
    assert listed(h, "n3", key) == [("10.0.0.1", True, "")] and listed(h, "n3", other) == []


def test_a_late_registration_that_takes_the_entry_and_goes_does_not_lose_the_live_connection() -> None:
    """Found by scripts/chaos: a client's registration timed out on a slow node (n3), it registered through n1,
    then n3 applied the late registration (the entry now names n3's dead connection) and later dropped it.
    n1's connection is open all along: its instance must come back."""
    h = started()
    key = owned_by("n2")
    live = bind(h, "n1", key)
    dead = bind(h, "n3", key)  # the late registration takes the entry over
    assert listed(h, "n2", key) == [("10.0.0.1", True, dead)]
    h.advance(2_000)  # n1 renews: taken after its registration
    assert h["n1"].connections.bound(live, key, INST.entry_id) is not None
    for write in h["n3"].connections.close(dead):  # n3 gives the dead connection up
        h.client("n3", write)
    h.advance(CONFIG.sync_delay_ms + 1)
    h.advance(2_000)  # n1's next renewal finds it missing and registers it again
    assert listed(h, "n2", key) == [("10.0.0.1", True, live)]
    assert listed(h, "n1", key) == [("10.0.0.1", True, live)]
    assert h["n1"].statistics().renewed_missing >= 1


def test_a_deregistration_for_another_connection_changes_nothing() -> None:
    h = started()
    key = owned_by("n3")
    old = bind(h, "n1", key)
    new = bind(h, "n2", key)  # the client reconnected to n2 and registered again
    assert listed(h, "n3", key) == [("10.0.0.1", True, new)]
    for write in h["n1"].connections.close(old):  # n1 finally gives up the old connection
        h.client("n1", write)
    h.advance(CONFIG.sync_delay_ms + 1)
    assert listed(h, "n3", key) == [("10.0.0.1", True, new)]
    for write in h["n2"].connections.close(new):
        h.client("n2", write)
    h.advance(CONFIG.sync_delay_ms + 1)
    assert listed(h, "n1", key) == []


def test_a_dead_holders_instances_get_a_whole_expiry_from_its_death() -> None:
    h = started()
    key = owned_by("n2")
    bind(h, "n1", key)
    h.advance(4_000)  # renewed every second meanwhile
    h.crash("n1")
    h.advance(5_000)  # n2 and n3 see n1 down after peer_timeout_ms and restart the clock then
    assert listed(h, "n2", key) != []
    down_seen = h.now_ms - 5_000 + CONFIG.peer_timeout_ms
    h.advance(down_seen + CONFIG.instance_expire_ms + 2 * CONFIG.health_check_interval_ms - h.now_ms)
    assert listed(h, "n2", key) == [] and listed(h, "n3", key) == []


def test_the_client_reconnecting_elsewhere_keeps_its_instance_through_its_holders_death() -> None:
    h = started(replace(CONFIG, heartbeat_timeout_ms=15_000, instance_expire_ms=30_000))
    key = owned_by("n2")
    bind(h, "n1", key)
    h.crash("n1")
    h.advance(25_000)  # the SDK registers again late (nacos-sdk-python 3.x: up to 30 s)
    assert listed(h, "n2", key) != []
    connection = bind(h, "n3", key)
    h.advance(60_000)
    assert listed(h, "n2", key) == [("10.0.0.1", True, connection)]
    assert INST.replace(connection=connection) == h["n2"].store.live_instance(key, INST.entry_id)


def orphaned_ms(h: Harness, node_id: str, key: ServiceKey) -> int | None:
    inst = h[node_id].store.live_instance(key, INST.entry_id)
    return None if inst is None else inst.orphaned_ms


def test_an_orphan_expires_from_its_mark_whatever_the_membership_does_next() -> None:
    config = replace(CONFIG, heartbeat_timeout_ms=15_000, instance_expire_ms=30_000)
    h = started(config)
    key = owned_by("n2")
    bind(h, "n1", key)
    crash_ms = h.now_ms
    h.crash("n1")
    h.advance(5_000)
    mark_ms = orphaned_ms(h, "n2", key)
    assert mark_ms is not None and crash_ms < mark_ms <= crash_ms + config.peer_timeout_ms + 1_000
    assert orphaned_ms(h, "n3", key) == mark_ms  # replicated with the entry
    assert h["n2"].statistics().instances_orphaned == 1
    for _ in range(2):  # the holder comes back and dies again: a later life's death leaves the mark be
        h.boot("n1")
        h.advance(3_000)
        assert h["n1"].ready
        h.crash("n1")
        h.advance(5_000)
        assert orphaned_ms(h, "n2", key) == mark_ms and h["n2"].statistics().instances_orphaned == 1
    h.boot("n1")
    h.advance(3_000)
    h.crash("n2")  # its owner dies: n1 or n3 gains the key, and counts from the mark, not from now
    h.advance(5_000)
    gainer = owner_of(str(key), ("n1", "n3"))
    assert h[gainer].last_beat_ms(key, INST.entry_id) == mark_ms
    h.advance(mark_ms + config.instance_expire_ms - 1_000 - h.now_ms)
    assert listed(h, "n1", key) != []  # the whole window for the client to register again elsewhere
    h.advance(1_000 + 2 * config.health_check_interval_ms)
    assert listed(h, "n1", key) == [] and listed(h, "n3", key) == []


def test_a_holder_seen_down_that_is_alive_registers_its_instances_again() -> None:
    h = started()
    key = owned_by("n2")
    connection = bind(h, "n1", key)
    h.isolate("n1")
    h.advance(CONFIG.peer_timeout_ms + 1_000)
    assert orphaned_ms(h, "n2", key)  # marked: to n2, its holder is gone
    h.cut.clear()
    h.advance(3_000)  # the next renewal finds it "missing" and registers it again
    assert orphaned_ms(h, "n2", key) == 0 and orphaned_ms(h, "n3", key) == 0
    h.advance(3 * CONFIG.instance_expire_ms)
    assert listed(h, "n3", key) == [("10.0.0.1", True, connection)]
    assert h["n1"].statistics().renewed_missing >= 1


def test_a_node_cut_off_from_the_majority_marks_no_orphans() -> None:
    h = started()
    key = owned_by("n2")
    connection = bind(h, "n1", key)
    h.isolate("n2")  # n2 sees everyone down, its holder n1 too, but it sees less than half the cluster
    h.advance(CONFIG.peer_timeout_ms + 2_000)
    assert not h["n2"].has_quorum()
    assert orphaned_ms(h, "n2", key) == 0 and h["n2"].statistics().instances_orphaned == 0
    h.cut.clear()
    h.advance(3 * CONFIG.instance_expire_ms)
    assert listed(h, "n2", key) == [("10.0.0.1", True, connection)] and orphaned_ms(h, "n2", key) == 0


def test_an_instance_no_holder_renews_is_marked_as_of_its_last_renewal_and_stays_so() -> None:
    config = replace(CONFIG, heartbeat_timeout_ms=6_000, instance_expire_ms=30_000)
    h = started(config)
    key = owned_by("n2")
    connection = bind(h, "n1", key)
    h.advance(3_000)
    assert orphaned_ms(h, "n2", key) == 0  # renewed: never marked
    # The holder is up but no longer renews it (as a connection of its earlier life would be).
    h["n1"].connections.unbind(connection, key, INST.entry_id)
    last_ms = h["n2"].last_beat_ms(key, INST.entry_id)
    assert last_ms is not None
    h.advance(config.heartbeat_timeout_ms + config.peer_timeout_ms - (h.now_ms - last_ms) - 500)
    assert orphaned_ms(h, "n2", key) == 0
    h.advance(2_000)
    assert orphaned_ms(h, "n2", key) == last_ms == orphaned_ms(h, "n3", key)
    assert h["n2"].statistics().instances_orphaned == 1
    h.crash("n1")  # its holder's death later changes nothing
    h.advance(5_000)
    assert orphaned_ms(h, "n2", key) == last_ms and h["n2"].last_beat_ms(key, INST.entry_id) == last_ms
    h.advance(last_ms + config.instance_expire_ms - 500 - h.now_ms)
    assert listed(h, "n3", key) != []
    h.advance(500 + 2 * config.health_check_interval_ms)
    assert listed(h, "n2", key) == [] and listed(h, "n3", key) == []


def test_a_gained_instance_of_a_holders_earlier_life_is_marked_as_of_its_restart() -> None:
    config = replace(CONFIG, heartbeat_timeout_ms=15_000, instance_expire_ms=30_000)
    h = started(config)
    key = owned_by("n2")
    bind(h, "n1", key)
    h.isolate("n2")  # its owner is cut off as the holder dies: its mark cannot get out...
    h.crash("n1")
    h.advance(config.peer_timeout_ms + 1_000)
    h.crash("n2")  # ...and is lost with it
    restart_ms = h.now_ms
    h.boot("n1")  # the holder is back, up, and does not hold the connection of its earlier life
    h.advance(config.peer_timeout_ms + 2_000)
    assert h["n1"].ready and orphaned_ms(h, "n3", key) == restart_ms
    h.advance(restart_ms + config.instance_expire_ms + 2 * config.health_check_interval_ms - h.now_ms)
    assert listed(h, "n1", key) == [] and listed(h, "n3", key) == []
