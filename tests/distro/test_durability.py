"""Durability in the core: which entries become ``Persist`` effects, and answers that wait for the disk.

Proves, on the hand-driven harness with ``durable_writes`` and the disks acknowledged by hand: a
cluster-data write is answered only once it is on disk (here, or on the owner for a forwarded one: the
owner holds its ``ForwardReply``); instance writes and the implicit settings of a service a registration
creates are never persisted and never wait; replicas persist what they merge; a tombstone replacing a
durable value is persisted as a tombstone, and so is one that reaches a node which never held the value
(the record of the deletion, kept after the store collects it); an answer about cluster data waits for
the earlier writes even when it writes nothing; a node restarted from its disk holds what it
acknowledged (and not what it did not), and a whole cluster restarted from its disks finds every
namespace and setting while its instances are gone; deletions forgotten over ``max_deletion_records``
leave the disk with the memory (a restart loads no more than the budget), and a run of collection passes
that forget some is one warning.
"""

from __future__ import annotations

from distro.clusterdata import NAMESPACES_KEY, ClusterMeta, NamespaceInfo, cluster_entry_id
from distro.config import DistroConfig
from distro.datum import IMPLICIT_ENTRY_ID, META_ENTRY_ID, Entry
from distro.effects import LifecycleEvent, LifecycleKind, Persist
from distro.messages import Forward, ForwardReply, SyncBatch
from distro.model import ServiceKey, ServiceMeta, make_instance
from distro.ownership import owner_of
from distro.requests import (
    OK,
    CreateNamespace,
    CreateService,
    DeleteNamespace,
    DeleteService,
    Deregister,
    Register,
    Result,
    UpdateCluster,
)
from distro.testing.checkers import live_entries
from distro.testing.harness import Harness

NODES = ("n1", "n2", "n3")
DURABLE = DistroConfig(cluster_size=3, durable_writes=True)
INST = make_instance("10.0.0.1", 8080)


def started(*, auto_persist: bool = False) -> Harness:
    h = Harness(NODES, DURABLE, auto_persist=auto_persist)
    h.start()
    return h


def key_owned_by(owner: str) -> ServiceKey:
    for i in range(10_000):
        key = ServiceKey("public", "DEFAULT_GROUP", f"svc-{i}")
        if owner_of(str(key), NODES) == owner:
            return key
    raise AssertionError("no such key")


def replies(h: Harness, node_id: str, rid: int) -> list[Result]:
    return [r.result for r in h.outputs[node_id].replies if r.request_id == rid]


def answer(h: Harness, node_id: str, request: object) -> Result | None:
    """The answer a node has given so far: at once, or released after its disk caught up (auto_persist)."""
    rid, result = h.client(node_id, request)  # type: ignore[arg-type]
    if result is not None:
        return result
    found = replies(h, node_id, rid)
    return found[0] if found else None


def test_a_cluster_data_write_is_answered_once_it_is_on_disk() -> None:
    h = started()
    key = key_owned_by("n1")
    rid, result = h.client("n1", CreateService(key, ServiceMeta(0.3)))
    assert result is None and replies(h, "n1", rid) == []
    (persist,) = h.outputs["n1"].persists
    assert persist == Persist(1, key, META_ENTRY_ID, h["n1"].store.entry(key, META_ENTRY_ID))
    assert h["n1"].statistics().answers_awaiting_disk == 1 and h["n1"].statistics().persist_backlog == 1
    h.persist("n1")
    assert replies(h, "n1", rid) == [OK]
    assert h["n1"].statistics().answers_awaiting_disk == 0 and h["n1"].statistics().persist_backlog == 0
    assert h.disks["n1"].items() == ((key, META_ENTRY_ID, persist.entry),)


def test_the_owner_holds_a_forwarded_answer_until_its_disk_has_the_write() -> None:
    h = started()
    key = key_owned_by("n2")
    rid, _ = h.client("n1", CreateService(key, ServiceMeta()))
    h.deliver(Forward)
    assert h.pending(ForwardReply) == [] and len(h.outputs["n2"].persists) == 1
    h.persist("n2")
    h.deliver(ForwardReply)
    assert replies(h, "n1", rid) == [OK]
    assert h.outputs["n1"].persists == []  # the forwarding node persists when the entry reaches it


def test_instances_and_implicit_settings_never_touch_the_disk() -> None:
    h = started()
    key = key_owned_by("n1")
    assert h.client("n1", Register(key, INST))[1] == OK  # answered at once
    assert h["n1"].store.live_value(key, IMPLICIT_ENTRY_ID) == ServiceMeta(implicit=True)
    assert h.client("n1", Deregister(key, "DEFAULT", INST.ip, INST.port))[1] == OK
    assert h.client("n1", DeleteService(key))[1] == OK  # implicit settings replaced by a tombstone: nothing
    h.advance(h.config.sync_delay_ms)
    assert all(h.outputs[n].persists == [] for n in NODES)


def test_replicas_persist_what_they_merge_and_deletions_become_tombstones_on_disk() -> None:
    h = started(auto_persist=True)
    key = key_owned_by("n1")
    h.client("n1", CreateNamespace("dev", "Dev"))  # forwarded, or not: replicated either way
    assert answer(h, "n1", CreateService(key, ServiceMeta(0.3))) == OK
    assert answer(h, "n1", UpdateCluster(key, "c1", 81)) == OK
    h.advance(h.config.sync_delay_ms)
    for node_id in NODES:
        on_disk = {(k, e): entry.value for k, e, entry in h.disks[node_id].items()}
        assert on_disk == {
            (NAMESPACES_KEY, "dev"): NamespaceInfo("Dev", "", on_disk[(NAMESPACES_KEY, "dev")].created_ms),  # type: ignore[union-attr]
            (key, META_ENTRY_ID): ServiceMeta(0.3),
            (key, cluster_entry_id("c1")): ClusterMeta(81),
        }
    assert answer(h, "n1", DeleteService(key)) == OK
    h.advance(h.config.sync_delay_ms)
    for node_id in NODES:
        on_disk = {(k, e): entry for k, e, entry in h.disks[node_id].items()}
        assert on_disk[(key, META_ENTRY_ID)].is_tombstone and on_disk[(key, cluster_entry_id("c1"))].is_tombstone
        assert on_disk[(key, META_ENTRY_ID)] == h[node_id].store.entry(key, META_ENTRY_ID)


def test_a_replicated_implicit_marker_beside_durable_settings_writes_nothing() -> None:
    h = started(auto_persist=True)
    key = key_owned_by("n1")
    assert answer(h, "n1", CreateService(key, ServiceMeta(0.3))) == OK
    durable = h["n1"].store.entry(key, META_ENTRY_ID)
    # A peer that registered into the service before its settings reached it sends its marker.
    marker = durable._replace(version=durable.version._replace(ms=durable.version.ms + 5),
                              value=ServiceMeta(implicit=True))
    h["n1"].handle_peer("n2", SyncBatch(((key, IMPLICIT_ENTRY_ID, marker),)), h.now_ms)
    h.collect("n1")
    assert h["n1"].store.meta(key) == ServiceMeta(0.3)
    assert h.disks["n1"].items() == ((key, META_ENTRY_ID, durable),)


def test_a_deletion_of_something_never_held_here_is_persisted_but_not_a_marker_tombstone() -> None:
    h = started(auto_persist=True)
    key = key_owned_by("n1")
    # n1 never held the namespace nor the marker: only their deletions arrive.
    assert h["n1"].store.entry(NAMESPACES_KEY, "dev") is None and h["n1"].store.items(key) == []
    version = h["n2"].clock.next(h.now_ms)
    namespace_deleted = (NAMESPACES_KEY, "dev", Entry(version, None))
    marker_deleted = (key, IMPLICIT_ENTRY_ID, Entry(version._replace(counter=version.counter + 1), None))
    h["n1"].handle_peer("n2", SyncBatch((namespace_deleted, marker_deleted)), h.now_ms)
    h.collect("n1")
    assert h.disks["n1"].items() == (namespace_deleted,)


def test_an_answer_about_cluster_data_waits_for_earlier_writes_even_when_it_writes_nothing() -> None:
    h = started()
    owner = owner_of(str(NAMESPACES_KEY), NODES)
    first, _ = h.client(owner, CreateNamespace("dev", "Dev"))
    second, _ = h.client(owner, CreateNamespace("dev", "Dev"))  # taken: writes nothing, but says so
    assert replies(h, owner, first) == [] and replies(h, owner, second) == []
    h.persist(owner)
    assert replies(h, owner, first) == [Result(200, "true")] and replies(h, owner, second) == [Result(200, "false")]


def test_a_node_restarted_from_its_disk_keeps_what_it_acknowledged() -> None:
    h = started()
    key = key_owned_by("n1")
    acked, _ = h.client("n1", CreateService(key, ServiceMeta(0.3)))
    h.persist("n1")
    assert replies(h, "n1", acked) == [OK]
    other = ServiceKey("public", "DEFAULT_GROUP", "never-acked")
    h.client(owner_of(str(other), NODES), CreateService(other, ServiceMeta()))  # not on disk yet
    for node_id in NODES:  # every node dies before anything replicates or reaches the disk
        h.crash(node_id)
    for node_id in NODES:
        h.boot(node_id)
    h.start()
    h.advance(h.config.verify_interval_ms + h.config.sync_delay_ms)
    for node in h.nodes.values():
        assert node.view(key) is not None and node.view(key).meta == ServiceMeta(0.3)
        assert node.view(other) is None
    assert live_entries(h["n1"]) == live_entries(h["n2"]) == live_entries(h["n3"])


def test_a_whole_cluster_restarted_from_its_disks_finds_its_settings_but_not_its_instances() -> None:
    h = started(auto_persist=True)
    owner_ns = owner_of(str(NAMESPACES_KEY), NODES)
    key = key_owned_by("n2")
    assert answer(h, owner_ns, CreateNamespace("dev", "Dev")) == Result(200, "true")
    assert answer(h, "n2", CreateService(key, ServiceMeta(0.4, {"k": "v"}))) == OK
    assert answer(h, "n2", UpdateCluster(key, "c1", 81)) == OK
    other = key_owned_by("n3")
    assert h.client("n3", Register(other, INST))[1] == OK
    h.advance(h.config.sync_delay_ms)
    for node_id in NODES:
        h.crash(node_id)
    for node_id in NODES:
        node = h.boot(node_id)
        assert dict(node.namespaces())["dev"].name == "Dev"  # loaded before the node is ready
        assert not node.ready
    h.start()
    for node in h.nodes.values():
        assert [ns for ns, _ in node.namespaces()] == ["dev"]
        view = node.view(key)
        assert view is not None and view.meta == ServiceMeta(0.4, {"k": "v"}) and "c1" in view.clusters
        assert node.view(other) is None  # ephemeral: back with its client's next beat


def test_forgotten_deletions_leave_the_disk_too_and_a_run_of_them_is_one_warning() -> None:
    config = DistroConfig(cluster_size=3, durable_writes=True, max_deletion_records=2,
                          tombstone_ttl_ms=10_000, heartbeat_timeout_ms=2_000, instance_expire_ms=5_000,
                          gc_interval_ms=1_000)
    h = Harness(NODES, config)
    h.start()

    def done(request: CreateNamespace | DeleteNamespace) -> Result:
        rid, result = h.client("n1", request)
        h.advance(config.sync_delay_ms)  # forwarded or not: the answer, and the write everywhere
        return result if result is not None else replies(h, "n1", rid)[0]

    names = [f"ns-{i}" for i in range(5)]
    for name in names:
        assert done(CreateNamespace(name, name)) == Result(200, "true")
    for name in names:  # one deletion per collection pass: the passes that forget follow one another
        assert done(DeleteNamespace(name)) == Result(200, "true")
        h.advance(config.gc_interval_ms)
    h.advance(config.tombstone_ttl_ms + config.gc_interval_ms)

    def warnings(node_id: str) -> list[LifecycleEvent]:
        return [e for e in h.outputs[node_id].events if e.kind is LifecycleKind.DELETIONS_FORGOTTEN]

    for node_id in NODES:
        stats = h[node_id].statistics()
        assert (stats.entry_floors, stats.tombstones, stats.deletion_records_dropped) == (2, 0, 3), node_id
        on_disk = {entry_id for key, entry_id, entry in h.disks[node_id].items() if key == NAMESPACES_KEY}
        assert on_disk == {"ns-3", "ns-4"}, node_id  # the rows of ns-0..ns-2 went with their floors
        assert len(warnings(node_id)) == 1, node_id  # three passes forgot one each: one run, one warning
        assert "max_deletion_records=2" in warnings(node_id)[0].detail

    assert done(CreateNamespace("late", "late")) == Result(200, "true")
    assert done(DeleteNamespace("late")) == Result(200, "true")
    h.advance(config.tombstone_ttl_ms + config.gc_interval_ms)
    assert all(len(warnings(node_id)) == 2 for node_id in NODES)  # after quiet passes: a new run

    for node_id in NODES:  # a restart loads what the disk kept: no more than the budget
        h.crash(node_id)
    for node_id in NODES:
        h.boot(node_id)
    h.start()
    h.advance(config.tombstone_ttl_ms + config.gc_interval_ms)
    for node_id in NODES:
        stats = h[node_id].statistics()
        assert (stats.entry_floors, stats.deletion_records_dropped) == (2, 0), node_id
        assert h[node_id].namespaces() == []
