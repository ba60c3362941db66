"""Cluster data in the core: namespaces, cluster settings, implicit services and the empty-service cleaner.

Proves, on the hand-driven harness: a namespace created through any node lands on the owner of the
reserved key and replicates everywhere (Nacos's ``true``/``false`` answers: taken, malformed and ``public``
ids are ``false``; update keeps the creation time; delete of an unknown id is ``true``; the count is
bounded); ``PUT /cluster`` needs the service, keeps fields not given, replaces the metadata and writes
only the cluster's entry (never the service's settings, which it could otherwise replace with defaults
across a partition); ``DELETE /service`` also removes cluster settings; a service created by a
registration outlives its last instance and the owner's cleaner removes it after the grace (never a
configured one, never one with an instance, and a new owner judges by the same versions); reserved keys
are never services (no view, no request may name them on the wire); and the codec's checks of where each
kind of value may be stored. Deletions forgotten over ``max_deletion_records`` are the stated trade-off:
a node away through more newer deletions than that brings the oldest back when it returns with its data
folder, the newer ones stay deleted, and a node that returns with its folder wiped brings back none.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from distro.clusterdata import (
    NAMESPACES_KEY,
    SETTINGS_KEY,
    ClusterMeta,
    HealthChecker,
    NamespaceInfo,
    cluster_entry_id,
    parse_health_checker,
)
from distro.codec import ProtocolError, decode_message, encode_message
from distro.config import DistroConfig
from distro.datum import IMPLICIT_ENTRY_ID, META_ENTRY_ID, Entry
from distro.effects import SettingChanged
from distro.errors import ValidationError
from distro.messages import Forward, SyncBatch
from distro.model import ServiceKey, ServiceMeta, make_instance
from distro.ownership import owner_of
from distro.requests import (
    OK,
    CreateNamespace,
    CreateService,
    DeleteNamespace,
    DeleteService,
    Deregister,
    PutSetting,
    Register,
    Result,
    UpdateCluster,
    UpdateNamespace,
    UpdateService,
)
from distro.testing.checkers import live_entries
from distro.testing.disk import SimDisk
from distro.testing.harness import Harness
from distro.versions import Version

NODES = ("n1", "n2", "n3")
INST = make_instance("10.0.0.1", 8080)
TRUE, FALSE = Result(200, "true"), Result(200, "false")


def started(config: DistroConfig | None = None) -> Harness:
    h = Harness(NODES, config or DistroConfig(cluster_size=3))
    h.start()
    return h


def key_owned_by(owner: str) -> ServiceKey:
    for i in range(10_000):
        key = ServiceKey("public", "DEFAULT_GROUP", f"svc-{i}")
        if owner_of(str(key), NODES) == owner:
            return key
    raise AssertionError("no such key")


def answer(h: Harness, node_id: str, request: object) -> Result:
    """Send a request and run the cluster until its answer arrives (forwarded or not)."""
    rid, result = h.client(node_id, request)  # type: ignore[arg-type]
    if result is not None:
        return result
    h.advance(h.config.sync_delay_ms)
    replies = [r.result for r in h.outputs[node_id].replies if r.request_id == rid]
    assert replies, "no answer"
    return replies[0]


# ------------------------------------------------------------------------------------------------
# Namespaces
# ------------------------------------------------------------------------------------------------
def test_a_namespace_created_anywhere_is_written_by_the_owner_and_replicated() -> None:
    h = started()
    owner = owner_of(str(NAMESPACES_KEY), NODES)
    via = next(n for n in NODES if n != owner)
    rid, result = h.client(via, CreateNamespace("dev", "Development", "the dev team"))
    assert result is None and h.pending(Forward, source=via, target=owner)  # forwarded like any write
    h.advance(h.config.sync_delay_ms)
    assert [r.result for r in h.outputs[via].replies if r.request_id == rid] == [TRUE]
    for node in h.nodes.values():
        assert node.namespaces() == [("dev", NamespaceInfo("Development", "the dev team", h.now_ms - h.config.sync_delay_ms))]
        assert node.view(NAMESPACES_KEY) is None and all(v.key != NAMESPACES_KEY for v in node.views())
    assert owner_of(str(NAMESPACES_KEY), NODES) == h[owner].owner_of(NAMESPACES_KEY)


def test_namespace_answers_follow_nacos() -> None:
    h = started()
    assert answer(h, "n1", CreateNamespace("dev", "Dev")) == TRUE
    assert answer(h, "n2", CreateNamespace("dev", "Other")) == FALSE  # taken
    assert answer(h, "n3", CreateNamespace("public", "Public")) == FALSE  # the default namespace
    assert answer(h, "n1", CreateNamespace("no spaces", "x")) == FALSE  # Nacos: ^[\w-]+
    assert answer(h, "n1", CreateNamespace("x" * 129, "x")) == FALSE  # at most 128
    created_ms = h["n1"].namespaces()[0][1].created_ms
    assert answer(h, "n2", UpdateNamespace("dev", "Development", "desc")) == TRUE
    h.advance(h.config.sync_delay_ms)
    assert h["n3"].namespaces() == [("dev", NamespaceInfo("Development", "desc", created_ms))]
    assert answer(h, "n2", UpdateNamespace("nope", "x")) == TRUE  # Nacos: true, and nothing happens
    assert answer(h, "n3", DeleteNamespace("nope")) == TRUE
    assert [ns for ns, _ in h["n1"].namespaces()] == ["dev"]
    assert answer(h, "n3", DeleteNamespace("dev")) == TRUE
    h.advance(h.config.sync_delay_ms)
    for node in h.nodes.values():
        assert node.namespaces() == [] and node.store.entry(NAMESPACES_KEY, "dev").is_tombstone
    assert answer(h, "n1", CreateNamespace("dev", "Again")) == TRUE  # an id can be used again


def test_namespaces_are_listed_oldest_first_and_bounded() -> None:
    h = started(DistroConfig(cluster_size=3, max_namespaces=2))
    assert answer(h, "n1", CreateNamespace("zeta", "Z")) == TRUE
    h.advance(5)
    assert answer(h, "n1", CreateNamespace("alpha", "A")) == TRUE
    assert [ns for ns, _ in h["n2"].namespaces()] == ["zeta", "alpha"]
    assert answer(h, "n1", CreateNamespace("third", "T")) == Result(
        400,
        "cannot create namespace third: this registry already holds 2 namespaces, the most it may hold "
        "(max_namespaces)",
    )


# ------------------------------------------------------------------------------------------------
# Cluster settings and service deletion
# ------------------------------------------------------------------------------------------------
def test_update_cluster_needs_the_service_and_keeps_what_is_not_given() -> None:
    h = started()
    key = key_owned_by("n2")
    assert answer(h, "n1", UpdateCluster(key, "DEFAULT", 8080)) == Result(
        400, f"service not found:{key.grouped_name}"
    )
    assert answer(h, "n1", Register(key, INST)) == OK
    assert h["n2"].store.entry(key, IMPLICIT_ENTRY_ID).value == ServiceMeta(implicit=True)
    assert h["n2"].store.meta(key) is None
    checker = HealthChecker("HTTP", "/health", "", 204)
    assert answer(h, "n3", UpdateCluster(key, "DEFAULT", 8080, False, checker, {"a": "1"})) == OK
    assert answer(h, "n1", UpdateCluster(key, "DEFAULT", metadata={"b": "2"})) == OK  # the console's call
    h.advance(h.config.sync_delay_ms)
    for node in h.nodes.values():
        view = node.view(key)
        assert view is not None and view.clusters == {"DEFAULT": ClusterMeta(8080, False, checker, {"b": "2"})}
        # Only the cluster was configured: the service's settings are untouched (none), the marker stays.
        assert view.meta is None and node.store.live_value(key, IMPLICIT_ENTRY_ID) == ServiceMeta(implicit=True)
    assert answer(h, "n1", UpdateCluster(key, "bad_name")) == Result(
        400, "cluster name can only have these characters: 0-9a-zA-Z-, current: bad_name"
    )


def test_a_cluster_configured_across_a_partition_leaves_the_service_settings_alone() -> None:
    """Regression (found by the simulator, tests/sim/test_regressions.py): ``PUT /cluster`` applied on a
    node that had not received the service's settings used to write default settings (``#meta``) there,
    newer than the acknowledged ones, which then replaced them on every node after healing."""
    h = started()
    key = key_owned_by("n2")
    h.isolate("n1")
    h.advance(h.config.peer_timeout_ms + h.config.ping_interval_ms)  # each side owns the key on its own
    assert h["n1"].owner_of(key) == "n1" and h["n2"].owner_of(key) == "n2"
    assert answer(h, "n2", CreateService(key, ServiceMeta(0.3, {"team": "a"}))) == OK
    assert answer(h, "n1", Register(key, INST)) == OK  # the service, implicit, on n1's side
    assert answer(h, "n1", UpdateCluster(key, "c1", 81)) == OK
    h.advance(1)
    h.cut.clear()
    h.advance(h.config.peer_timeout_ms + 3 * h.config.verify_interval_ms)
    for node in h.nodes.values():
        view = node.view(key)
        assert view is not None and view.meta == ServiceMeta(0.3, {"team": "a"})
        assert view.clusters["c1"].check_port == 81


def test_cluster_data_written_across_a_partition_survives_deletions_collected_on_the_other_side() -> None:
    """Regression: a collected tombstone used to leave one floor per key, and every namespace lives under one
    reserved key. n1, cut off, creates a namespace and a service's settings; meanwhile n2 and n3 delete an
    unrelated namespace and an instance of that service, and collect both tombstones. After healing, their
    key floors (newer than n1's writes) refused n1's entries as stale copies and deleted them everywhere.
    Cluster data now has a floor per deleted entry."""
    config = DistroConfig(cluster_size=3, tombstone_ttl_ms=10_000, instance_expire_ms=15_000, gc_interval_ms=1_000)
    h = started(config)
    key = key_owned_by("n2")
    assert answer(h, "n2", CreateNamespace("old", "Old")) == TRUE
    h.isolate("n1")
    h.advance(config.peer_timeout_ms + config.ping_interval_ms)  # each side owns every key on its own
    assert answer(h, "n1", CreateNamespace("fresh", "Fresh")) == TRUE
    assert answer(h, "n1", CreateService(key, ServiceMeta(0.4, {"team": "a"}))) == OK
    h.advance(5)
    assert answer(h, "n2", DeleteNamespace("old")) == TRUE
    assert answer(h, "n3", Register(key, INST)) == OK
    assert answer(h, "n3", Deregister(key, "DEFAULT", INST.ip, INST.port)) == OK
    h.advance(2 * config.instance_expire_ms + config.gc_interval_ms)  # both tombstones collected on n2 and n3
    assert h["n2"].store.entry(NAMESPACES_KEY, "old") is None and h["n2"].store.entry(key, INST.entry_id) is None
    h.cut.clear()
    h.advance(config.peer_timeout_ms + 3 * config.verify_interval_ms)
    for node_id, node in h.nodes.items():
        assert [ns for ns, _ in node.namespaces()] == ["fresh"], node_id  # "old" stays deleted on n1 too
        view = node.view(key)
        assert view is not None and view.meta == ServiceMeta(0.4, {"team": "a"}), node_id


@pytest.mark.parametrize("wiped", [False, True])
def test_a_node_away_through_more_deletions_than_the_budget_brings_the_oldest_back_unless_wiped(
    wiped: bool,
) -> None:
    """The trade-off of the deletion-record budget (docs/security.md, docs/operations.md). n3 holds four
    namespaces on its disk and goes down; the others delete all four, oldest first, and collect the
    tombstones: with a budget of two they remember the deletions of c and d only. n3 comes back with its
    folder: its copies of a and b are taken as new (nothing remembers their deletion) and return
    everywhere; c and d are refused. Started with its folder wiped, n3 loads the cluster data from its
    peers and nothing returns: what an operator does after a node was down through heavy deletion churn."""
    config = DistroConfig(cluster_size=3, durable_writes=True, max_deletion_records=2)
    h = started(config)
    for name in "abcd":
        assert answer(h, "n1", CreateNamespace(name, name)) == TRUE
    h.advance(config.sync_delay_ms)
    assert len(h.disks["n3"]) == 4
    h.crash("n3")
    h.advance(config.peer_timeout_ms + config.ping_interval_ms)
    for name in "abcd":
        assert answer(h, "n1", DeleteNamespace(name)) == TRUE
        h.advance(1)
    h.advance(max(config.tombstone_ttl_ms, 2 * config.instance_expire_ms) + config.gc_interval_ms)
    for node_id in ("n1", "n2"):
        stats = h[node_id].statistics()
        assert (stats.entry_floors, stats.deletion_records_dropped) == (2, 2), node_id
    if wiped:
        h.disks["n3"] = SimDisk()
    h.boot("n3")
    h.start()
    h.advance(config.peer_timeout_ms + 3 * config.verify_interval_ms)
    expected = [] if wiped else ["a", "b"]
    for node_id, node in h.nodes.items():
        assert sorted(ns for ns, _ in node.namespaces()) == expected, node_id


def test_delete_service_removes_cluster_settings_and_refuses_a_service_with_instances() -> None:
    h = started()
    key = key_owned_by("n1")
    assert answer(h, "n2", CreateService(key, ServiceMeta(0.5))) == OK
    assert answer(h, "n2", UpdateCluster(key, "c1", 81)) == OK
    assert answer(h, "n3", Register(key, INST)) == OK
    assert answer(h, "n3", DeleteService(key)) == Result(
        400, f"Service {key.grouped_name} is not empty, can't be delete. Please unregister instance first"
    )
    assert answer(h, "n3", Deregister(key, "DEFAULT", INST.ip, INST.port)) == OK
    assert answer(h, "n3", DeleteService(key)) == OK
    h.advance(h.config.sync_delay_ms)
    for node in h.nodes.values():
        assert node.view(key) is None
        assert node.store.entry(key, cluster_entry_id("c1")).is_tombstone
        assert node.store.entry(key, META_ENTRY_ID).is_tombstone


def test_health_checker_parsing_follows_nacos() -> None:
    assert parse_health_checker('{"type":"TCP"}') == HealthChecker("TCP")
    assert parse_health_checker("{}") == HealthChecker("NONE")  # Nacos's default implementation
    http = parse_health_checker('{"type":"HTTP","path":"/h","headers":"a|b","expectedResponseCode":204,"x":1}')
    assert http == HealthChecker("HTTP", "/h", "a|b", 204)
    assert http.to_json() == {"type": "HTTP", "path": "/h", "headers": "a|b", "expectedResponseCode": 204}
    assert parse_health_checker('{"type":"MYSQL","user":"u","pwd":"p","cmd":"c"}').to_json() == {
        "type": "MYSQL", "user": "u", "pwd": "p", "cmd": "c"
    }
    for bad in ("[1]", "{", '{"type":"tcp"}', '{"type":"HTTP","path":3}', '{"expectedResponseCode":"x"}'):
        with pytest.raises(ValidationError, match="Param 'healthChecker' is illegal"):
            parse_health_checker(bad)


# ------------------------------------------------------------------------------------------------
# Implicit services and the empty-service cleaner
# ------------------------------------------------------------------------------------------------
CLEAN = DistroConfig(cluster_size=3, empty_service_grace_ms=10_000, empty_service_clean_interval_ms=1_000)


def test_a_service_created_by_a_registration_outlives_its_last_instance_until_the_cleaner() -> None:
    h = started(CLEAN)
    key = key_owned_by("n3")
    assert answer(h, "n1", Register(key, INST)) == OK
    assert answer(h, "n2", Deregister(key, "DEFAULT", INST.ip, INST.port)) == OK
    emptied_ms = h.now_ms
    h.advance(CLEAN.empty_service_grace_ms - CLEAN.empty_service_clean_interval_ms - CLEAN.sync_delay_ms)
    for node in h.nodes.values():
        view = node.view(key)
        assert view is not None and view.exists and view.instances == ()
    h.advance(2 * CLEAN.empty_service_clean_interval_ms + CLEAN.sync_delay_ms)
    for node in h.nodes.values():
        assert node.view(key) is None and node.store.entry(key, IMPLICIT_ENTRY_ID).is_tombstone
    tombstone = h["n1"].store.entry(key, IMPLICIT_ENTRY_ID)
    assert tombstone.version.node == "n3" and tombstone.version.ms - emptied_ms >= CLEAN.empty_service_grace_ms
    assert h["n3"].statistics().empty_services_removed == 1
    assert h["n1"].statistics().empty_services_removed == 0  # only the owner removes
    # Registering again brings it back, implicit again.
    assert answer(h, "n1", Register(key, INST)) == OK
    h.advance(CLEAN.sync_delay_ms)
    assert all(node.store.live_value(key, IMPLICIT_ENTRY_ID) == ServiceMeta(implicit=True) for node in h.nodes.values())


def test_the_cleaner_keeps_configured_services_and_services_with_instances() -> None:
    h = started(CLEAN)
    created, configured, busy = (ServiceKey("public", "DEFAULT_GROUP", name) for name in ("a", "b", "c"))
    assert answer(h, "n1", CreateService(created, ServiceMeta())) == OK
    for key in (configured, busy):
        assert answer(h, "n2", Register(key, INST)) == OK
    assert answer(h, "n3", UpdateService(configured, ServiceMeta(0.2))) == OK
    assert answer(h, "n1", Deregister(configured, "DEFAULT", INST.ip, INST.port)) == OK
    for _ in range(4):  # the busy one keeps beating; nothing is removed
        h.advance(CLEAN.empty_service_grace_ms // 2)
        for node_id in NODES:
            h.client(node_id, Register(busy, INST))
    for node in h.nodes.values():
        assert {v.key for v in node.views()} == {created, configured, busy}
        assert node.statistics().empty_services_removed == 0


def test_a_new_owner_judges_an_empty_service_by_its_entries_age() -> None:
    h = started(CLEAN)
    key = key_owned_by("n3")
    assert answer(h, "n1", Register(key, INST)) == OK
    assert answer(h, "n1", Deregister(key, "DEFAULT", INST.ip, INST.port)) == OK
    h.advance(CLEAN.empty_service_grace_ms // 2)
    h.crash("n3")
    h.advance(CLEAN.peer_timeout_ms + CLEAN.ping_interval_ms)
    new_owner = h["n1"].owner_of(key)
    assert new_owner in ("n1", "n2")
    h.advance(CLEAN.empty_service_grace_ms // 2 + CLEAN.empty_service_clean_interval_ms)
    assert h["n1"].view(key) is None and h["n2"].view(key) is None
    assert h[new_owner].statistics().empty_services_removed == 1


# ------------------------------------------------------------------------------------------------
# Reserved keys and the codec
# ------------------------------------------------------------------------------------------------
def _item(key: str, entry_id: str, value: object) -> list[object]:
    return [key, entry_id, 5, 0, "n1", value]


def test_codec_checks_where_each_kind_of_value_is_stored() -> None:
    ns = str(NAMESPACES_KEY)
    svc = "public##DEFAULT_GROUP@@svc"
    checker = ["TCP", "", "", 200, "", "", ""]
    good = [
        _item(ns, "dev", ["n", "Dev", "", 3]),
        _item(svc, "#cluster/c1", ["c", 80, True, checker, {}]),
        _item(svc, META_ENTRY_ID, ["m", 0.0, {}, "none"]),  # the four-field form (no implicit flag)
        _item(ns, "dev", None),
    ]
    decoded = decode_message(["sync", good])
    assert isinstance(decoded, SyncBatch) and decoded.items[2][2].value == ServiceMeta()
    assert decoded.items[0] == (NAMESPACES_KEY, "dev", Entry(Version(5, 0, "n1"), NamespaceInfo("Dev", "", 3)))
    bad = [
        _item(ns, "dev", ["i", "1.1.1.1", 1, "DEFAULT", 1.0, True, True, {}]),  # an instance in the namespaces
        _item(ns, "dev", ["m", 0.0, {}, "none", False]),
        _item(ns, "bad id", ["n", "x", "", 0]),
        _item(svc, "dev", ["n", "x", "", 0]),  # a namespace under a service
        _item(svc, META_ENTRY_ID, ["c", 80, True, checker, {}]),
        _item(svc, "#cluster/bad_name", ["c", 80, True, checker, {}]),
        _item(svc, "#cluster/c1", ["c", 80, True, ["tcp", "", "", 200, "", "", ""], {}]),
    ]
    for item in bad:
        with pytest.raises(ProtocolError):
            decode_message(["sync", [item]])
    with pytest.raises(ProtocolError, match="reserved key"):
        decode_message(["fwd", 1, ["reg", ns, ["i", "1.1.1.1", 1, "DEFAULT", 1.0, True, True, {}]]])
    request = UpdateCluster(ServiceKey("public", "g", "s"), "c", None, None, None, {})
    assert decode_message(encode_message(Forward(1, request))) == Forward(1, request)


def test_replicated_namespaces_converge_whatever_the_order() -> None:
    h = started()
    versions = [Version(h.now_ms + i, 0, f"n{i % 3 + 1}") for i in range(3)]
    entries = [
        (NAMESPACES_KEY, "dev", Entry(versions[0], NamespaceInfo("one"))),
        (NAMESPACES_KEY, "dev", Entry(versions[1], None)),
        (NAMESPACES_KEY, "dev", Entry(versions[2], NamespaceInfo("three"))),
    ]
    h["n1"].handle_peer("n2", SyncBatch(tuple(entries)), h.now_ms)
    h["n2"].handle_peer("n1", SyncBatch(tuple(reversed(entries))), h.now_ms)
    h["n3"].handle_peer("n1", SyncBatch((entries[1], entries[2], entries[0])), h.now_ms)
    for node in h.nodes.values():
        assert node.namespaces() == [("dev", NamespaceInfo("three"))]
    assert live_entries(h["n1"]) == live_entries(h["n2"]) == live_entries(h["n3"])
    assert replace(NamespaceInfo("a"), desc="b") == NamespaceInfo("a", "b")


# ------------------------------------------------------------------------------------------------
# Registry-wide settings (PutSetting: e.g. the switches)
# ------------------------------------------------------------------------------------------------
def test_a_setting_put_anywhere_reaches_every_node_and_tells_its_runtime() -> None:
    h = started()
    owner = owner_of(str(SETTINGS_KEY), NODES)
    via = next(n for n in NODES if n != owner)
    assert answer(h, via, PutSetting("switches", '{"pushEnabled":false}')) == OK
    h.advance(h.config.sync_delay_ms)
    for node_id, node in h.nodes.items():
        assert node.settings() == {"switches": '{"pushEnabled":false}'}
        assert h.outputs[node_id].settings[-1] == SettingChanged("switches", '{"pushEnabled":false}')
        assert node.view(SETTINGS_KEY) is None
    assert answer(h, owner, PutSetting("switches", None)) == OK
    h.advance(h.config.sync_delay_ms)
    for node_id, node in h.nodes.items():
        assert node.settings() == {} and h.outputs[node_id].settings[-1] == SettingChanged("switches", None)
    assert answer(h, via, PutSetting("bad name", "x")).status == 400
    assert answer(h, via, PutSetting("big", "x" * 65_537)).status == 400


def test_a_registration_where_the_settings_have_not_arrived_never_replaces_them() -> None:
    """A registration applied by a node that has not received the service's settings yet (its forward to the
    owner failed) writes only the implicit marker: the settings written on the owner survive the merge, and
    the cleaner never removes the configured service."""
    h = started(CLEAN)
    key = key_owned_by("n1")
    assert answer(h, "n1", CreateService(key, ServiceMeta(0.7, {"team": "a"}))) == OK  # not replicated yet
    rid, result = h.client("n2", Register(key, INST))
    assert result is None and key not in h["n2"].store
    h.fail(Forward, source="n2")  # the owner cannot be reached: n2 applies it itself
    assert [r.result for r in h.outputs["n2"].replies if r.request_id == rid] == [OK]
    assert h["n2"].store.live_value(key, IMPLICIT_ENTRY_ID) == ServiceMeta(implicit=True)
    h.start()  # n2 is back in touch: everything is delivered
    h.advance(CLEAN.verify_interval_ms + CLEAN.sync_delay_ms)
    for node in h.nodes.values():
        assert node.store.meta(key) == ServiceMeta(0.7, {"team": "a"})
    assert answer(h, "n2", Deregister(key, "DEFAULT", INST.ip, INST.port)) == OK
    h.advance(3 * CLEAN.empty_service_grace_ms)
    for node in h.nodes.values():
        view = node.view(key)
        assert view is not None and view.meta == ServiceMeta(0.7, {"team": "a"})
