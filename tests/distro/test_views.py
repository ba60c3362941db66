"""Read views and Nacos's ``instance/list`` selection (``select_hosts``).

- the ``clusters`` filter keeps only the requested clusters (all when empty);
- ``healthy_only`` drops unhealthy instances; disabled instances are never returned but count in the
  healthy share;
- the protect threshold returns every enabled instance, reported healthy, when the healthy share is at or
  below it; the default 0.0 fires only when no instance is healthy;
- view checksums depend on content only, and the empty view does not exist;
- a view built from a datum lists its live instances by entry id and its settings, whatever it mixes.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from distro.clusterdata import ClusterMeta, cluster_entry_id
from distro.datum import IMPLICIT_ENTRY_ID, META_ENTRY_ID, Entry
from distro.model import Instance, ServiceKey, ServiceMeta
from distro.versions import Version
from distro.views import ServiceView, empty_view, select_hosts

KEY = ServiceKey("public", "DEFAULT_GROUP", "svc")


def inst(n: int, *, cluster: str = "DEFAULT", healthy: bool = True, enabled: bool = True) -> Instance:
    return Instance(f"10.0.0.{n}", 80, cluster, healthy=healthy, enabled=enabled)


def view(*instances: Instance, threshold: float | None = None) -> ServiceView:
    meta = None if threshold is None else ServiceMeta(protect_threshold=threshold)
    return ServiceView(KEY, tuple(instances), meta, 1, 0)


def ips(hosts: tuple[Instance, ...]) -> list[str]:
    return [h.ip for h in hosts]


def test_clusters_filter() -> None:
    v = view(inst(1, cluster="a"), inst(2, cluster="b"), inst(3, cluster="c"))
    assert ips(select_hosts(v, ["a", "c"], False).hosts) == ["10.0.0.1", "10.0.0.3"]
    assert ips(select_hosts(v, {"b"}, True).hosts) == ["10.0.0.2"]
    assert ips(select_hosts(v, [], False).hosts) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert ips(select_hosts(v, None, False).hosts) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    empty = select_hosts(v, ["nope"], False)
    assert empty.hosts == () and not empty.protect_triggered


def test_healthy_only() -> None:
    v = view(inst(1), inst(2, healthy=False), inst(3))
    assert ips(select_hosts(v, None, True).hosts) == ["10.0.0.1", "10.0.0.3"]
    all_hosts = select_hosts(v, None, False)
    assert ips(all_hosts.hosts) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert [h.healthy for h in all_hosts.hosts] == [True, False, True]
    assert not all_hosts.protect_triggered


def test_disabled_instances_are_hidden_but_counted() -> None:
    # 2 of 4 healthy (both disabled ones healthy): share 0.5 > threshold 0.4, no protection.
    v = view(inst(1, enabled=False), inst(2, enabled=False), inst(3, healthy=False), inst(4, healthy=False), threshold=0.4)
    sel = select_hosts(v, None, False)
    assert not sel.protect_triggered
    assert ips(sel.hosts) == ["10.0.0.3", "10.0.0.4"]
    assert select_hosts(v, None, True).hosts == ()
    # Were the disabled ones not counted, the share would be 0 and protection would fire.
    only_enabled = view(inst(3, healthy=False), inst(4, healthy=False), threshold=0.4)
    assert select_hosts(only_enabled, None, True).protect_triggered


def test_protect_threshold_flips_unhealthy_to_healthy() -> None:
    v = view(inst(1), inst(2, healthy=False), inst(3, healthy=False), inst(4, healthy=False, enabled=False), threshold=0.25)
    sel = select_hosts(v, None, True)
    assert sel.protect_triggered  # 1 healthy of 4: 0.25 <= 0.25
    assert ips(sel.hosts) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]  # disabled still hidden
    assert all(h.healthy for h in sel.hosts)
    assert [i.healthy for i in v.instances] == [True, False, False, False]  # the view is unchanged
    # Just above the threshold: no protection.
    v2 = view(inst(1), inst(2), inst(3, healthy=False), inst(4, healthy=False), threshold=0.49)
    sel2 = select_hosts(v2, None, True)
    assert not sel2.protect_triggered and ips(sel2.hosts) == ["10.0.0.1", "10.0.0.2"]


def test_default_threshold_fires_only_when_none_is_healthy() -> None:
    one_healthy = view(inst(1), inst(2, healthy=False))
    assert one_healthy.protect_threshold == 0.0
    sel = select_hosts(one_healthy, None, True)
    assert not sel.protect_triggered and ips(sel.hosts) == ["10.0.0.1"]
    none_healthy = view(inst(1, healthy=False), inst(2, healthy=False))
    sel = select_hosts(none_healthy, None, True)
    assert sel.protect_triggered
    assert ips(sel.hosts) == ["10.0.0.1", "10.0.0.2"] and all(h.healthy for h in sel.hosts)
    # The threshold is applied to the chosen clusters only.
    mixed = view(inst(1, cluster="a"), inst(2, cluster="b", healthy=False))
    assert select_hosts(mixed, ["b"], True).protect_triggered
    assert not select_hosts(mixed, ["a", "b"], True).protect_triggered


def test_threshold_one_always_protects() -> None:
    v = view(inst(1), inst(2, healthy=False), threshold=1.0)
    sel = select_hosts(v, None, True)
    assert sel.protect_triggered and len(sel.hosts) == 2


def test_checksum_and_existence() -> None:
    a = view(inst(1), inst(2), threshold=0.5)
    b = ServiceView(KEY, a.instances, a.meta, 99, 12345)
    assert a.checksum == b.checksum  # revision and time do not matter
    assert a.checksum == a.checksum
    assert view(inst(1), inst(2, healthy=False), threshold=0.5).checksum != a.checksum
    assert view(inst(1), inst(2), threshold=0.6).checksum != a.checksum
    assert view(inst(1), inst(2)).checksum != a.checksum
    assert a.exists and view(threshold=0.0).exists
    empty = empty_view(KEY, 3, 7)
    assert not empty.exists and empty.revision == 3 and empty.modified_ms == 7
    assert select_hosts(empty, None, False).hosts == ()


def _entry(value: object) -> Entry:
    return Entry(Version(1, 0, "n1"), value)  # type: ignore[arg-type]


datum_entries = st.one_of(
    st.builds(lambda n, c, dead: (f"{c}/10.0.0.{n}:80", _entry(None if dead else inst(n, cluster=c))),
              st.integers(0, 9), st.sampled_from(["DEFAULT", "A", "a-1", "0z"]), st.booleans()),
    st.builds(lambda c: (cluster_entry_id(c), _entry(ClusterMeta())), st.sampled_from(["DEFAULT", "A"])),
    st.just((META_ENTRY_ID, _entry(ServiceMeta(protect_threshold=0.5)))),
    st.just((IMPLICIT_ENTRY_ID, _entry(ServiceMeta(implicit=True)))),
    st.just((IMPLICIT_ENTRY_ID, _entry(None))),
)


@given(st.lists(datum_entries, max_size=12).map(dict))
def test_a_view_of_a_datum_holds_its_live_instances_by_entry_id_and_its_settings(datum: dict[str, Entry]) -> None:
    """Whatever the datum mixes (instances, tombstones, service, cluster and implicit settings), its view
    lists exactly the live instances sorted by entry id, and the settings under their own ids."""
    built = ServiceView.of_datum(KEY, datum, 1, 0)
    assert built.instances == tuple(datum[e].value for e in sorted(datum) if isinstance(datum[e].value, Instance))
    assert dict(built.clusters) == {e.split("/", 1)[1]: d.value for e, d in datum.items() if e.startswith("#cluster/")}
    meta = datum.get(META_ENTRY_ID)
    assert built.meta == (None if meta is None else meta.value)
    implicit = datum.get(IMPLICIT_ENTRY_ID)
    assert built.exists == (bool(built.instances) or meta is not None or bool(built.clusters)
                            or (implicit is not None and implicit.value is not None))


def _reference_selection(v: ServiceView, clusters: list[str], healthy_only: bool) -> tuple[tuple[Instance, ...], bool]:
    """Nacos's selection as written out plainly: every instance counted, the share compared."""
    chosen = [i for i in v.instances if not clusters or i.cluster in clusters]
    if not chosen:
        return (), False
    if sum(i.healthy for i in chosen) / len(chosen) <= v.protect_threshold:
        return tuple(i.with_health(True) for i in chosen if i.enabled), True
    return tuple(i for i in chosen if i.enabled and (i.healthy or not healthy_only)), False


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["a", "b"]), st.booleans(), st.booleans()), max_size=8),
    st.sampled_from([None, 0.0, 0.25, 0.5, 1.0]),
    st.sampled_from([[], ["a"], ["b"], ["a", "b"], ["c"]]),
    st.booleans(),
)
def test_selection_matches_the_plain_rule(hosts: list[tuple[str, bool, bool]], threshold: float | None,
                                          clusters: list[str], healthy_only: bool) -> None:
    v = view(*(inst(n, cluster=c, healthy=h, enabled=e) for n, (c, h, e) in enumerate(hosts)), threshold=threshold)
    sel = select_hosts(v, clusters, healthy_only)
    assert (sel.hosts, sel.protect_triggered) == _reference_selection(v, clusters, healthy_only)
    if not clusters and not healthy_only and not sel.protect_triggered and all(i.enabled for i in v.instances):
        assert sel.hosts is v.instances  # nothing to drop: the view's own tuple, not a copy
