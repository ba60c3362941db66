"""The catalog index (``distro/catalog.py``): services in name order per namespace, counts per revision.

- keys come out ordered by grouped name, per namespace; added and removed services show at the next read;
- a summary counts instances, healthy ones and clusters, and flags the protect threshold like Nacos
  (healthy share at or below the threshold; never for a service without instances);
- a summary is rebuilt only when the view's revision changed (the instances of an unchanged service are
  not walked again), and the ``instance`` filter matches ``ip`` or ``ip:port``.
"""

from __future__ import annotations

from distro.catalog import CatalogIndex, summarize
from distro.model import Instance, ServiceKey, ServiceMeta
from distro.views import ServiceView


class Counting(ServiceView):
    """A view that counts how often its instances are read."""

    reads = 0

    @property
    def instances(self) -> tuple[Instance, ...]:
        Counting.reads += 1
        return super().instances


def key(name: str, group: str = "DEFAULT_GROUP", namespace: str = "public") -> ServiceKey:
    return ServiceKey(namespace, group, name)


def make_view(k: ServiceKey, *instances: Instance, revision: int = 1, threshold: float | None = None) -> ServiceView:
    meta = None if threshold is None else ServiceMeta(protect_threshold=threshold)
    return Counting(k, tuple(instances), meta, revision, 0)


class Views:
    """A stand-in for the node's views, fed to the index like the runtime does."""

    def __init__(self) -> None:
        self.current: dict[ServiceKey, ServiceView] = {}
        self.index = CatalogIndex(self.current.get)

    def put(self, view: ServiceView) -> None:
        self.current[view.key] = view
        self.index.on_change(view.key, view)

    def drop(self, k: ServiceKey) -> None:
        old = self.current.pop(k)
        self.index.on_change(k, ServiceView(k, (), None, old.revision + 1, 0))


def test_keys_are_ordered_by_grouped_name_per_namespace() -> None:
    views = Views()
    for k in [key("b"), key("a", "ZZ"), key("a"), key("c", "AA"), key("x", namespace="dev")]:
        views.put(make_view(k, Instance("10.0.0.1", 80)))
    assert [k.grouped_name for k in views.index.keys("public")] == [
        "AA@@c", "DEFAULT_GROUP@@a", "DEFAULT_GROUP@@b", "ZZ@@a"
    ]
    assert views.index.namespaces() == ["dev", "public"]
    assert views.index.count("public") == 4 and views.index.count("nope") == 0
    views.put(make_view(key("aa"), Instance("10.0.0.1", 80)))
    views.drop(key("b"))
    assert [k.service for k in views.index.keys("public")] == ["c", "a", "aa", "a"]
    views.drop(key("x", namespace="dev"))
    assert views.index.namespaces() == ["public"]
    assert list(views.index.iter_all()) == [key(n, g) for g, n in [("AA", "c"), ("DEFAULT_GROUP", "a"), ("DEFAULT_GROUP", "aa"), ("ZZ", "a")]]


def test_summary_counts_and_trigger_flag() -> None:
    k = key("s")
    v = make_view(k, Instance("10.0.0.1", 80, "a"), Instance("10.0.0.2", 80, "b", healthy=False),
                  Instance("10.0.0.3", 80, "a", enabled=False), threshold=0.5)
    s = summarize(v)
    assert (s.ip_count, s.healthy_count, s.clusters, s.trigger_flag) == (3, 2, ("a", "b"), False)
    assert summarize(make_view(k, Instance("10.0.0.1", 80, healthy=False))).trigger_flag  # 0/1 <= 0.0
    assert not summarize(make_view(k, threshold=1.0)).trigger_flag  # no instance: never (NaN in Nacos)


def test_summary_is_rebuilt_only_for_a_new_revision() -> None:
    views = Views()
    k = key("s")
    views.put(make_view(k, Instance("10.0.0.1", 80)))
    Counting.reads = 0
    first = views.index.summary(k)
    assert views.index.summary(k) is first and Counting.reads == 1
    views.put(make_view(k, Instance("10.0.0.1", 80), Instance("10.0.0.2", 80), revision=2))
    second = views.index.summary(k)
    assert second is not None and second.ip_count == 2 and Counting.reads == 2
    views.drop(k)
    assert views.index.summary(k) is None


def test_instance_filter_matches_ip_or_ip_port() -> None:
    views = Views()
    k = key("s")
    views.put(make_view(k, Instance("10.0.0.1", 80), Instance("10.0.0.2", 8080)))
    index = views.index
    assert index.has_address(k, "10.0.0.2") and index.has_address(k, "10.0.0.2:8080")
    assert not index.has_address(k, "10.0.0.2:80") and not index.has_address(k, "10.0.0.3")
    views.put(make_view(k, Instance("10.0.0.3", 80), revision=2))
    assert index.has_address(k, "10.0.0.3:80") and not index.has_address(k, "10.0.0.1")


def test_keys_without_a_group_are_never_listed() -> None:
    views = Views()
    reserved = ServiceKey("", "", "namespaces")  # where cluster-wide data lives, not a service
    views.put(make_view(reserved, Instance("10.0.0.1", 80)))
    assert views.index.namespaces() == [] and views.index.keys("") == []
    assert CatalogIndex(views.current.get, views.current.values()).namespaces() == []
