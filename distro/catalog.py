"""The service catalog: every namespace's services in name order, with per-service counts, kept cheaply.

``catalog/services`` (the console's service table), ``service/list``, ``service/names`` and the legacy
``api/allDomNames`` page through the services of a namespace. Walking every instance of every service per
request would cost O(instances) (a million at the targets); the catalog instead keeps:

* per namespace, the set of its services' grouped names and a sorted list of them, re-sorted only after a
  service appeared or disappeared (Timsort over a sorted list plus the few new names is close to linear);
* per service, a :class:`ServiceSummary` (instance counts, clusters, protect-threshold flag), built from
  the service's read view the first time it is asked for and reused until the view's revision changes.

A request then costs O(services in the namespace) for name filters and O(page) summaries, plus one rebuild
per service that changed since the last request. :meth:`CatalogIndex.on_change` is fed every view change
(the runtime's change listeners); ``view_of`` looks up the current view of a key (``DistroNode.view``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from distro.model import ServiceKey
from distro.views import ServiceView

__all__ = ["CatalogIndex", "ServiceSummary", "summarize"]

ViewLookup = Callable[[ServiceKey], ServiceView | None]
MAX_CACHED_ADDRESSES = 500_000
"""Most addresses kept for the ``instance`` filter (all services together); beyond it the cache restarts."""


@dataclass(frozen=True, slots=True)
class ServiceSummary:
    """What the service table shows of one service (Nacos's ``ServiceView`` row), at one revision."""

    key: ServiceKey
    revision: int
    ip_count: int
    healthy_count: int
    clusters: tuple[str, ...]  # sorted names of the clusters that hold instances or were configured
    trigger_flag: bool  # the healthy share is at or below the protect threshold (false with no instance)


def summarize(view: ServiceView) -> ServiceSummary:
    """Count one view's instances (O(instances of this service))."""
    instances = view.instances
    healthy = sum(1 for inst in instances if inst.healthy)
    total = len(instances)
    # Nacos: healthyCount * 1.0 / total <= threshold; 0/0 is NaN there, and NaN <= x is false.
    trigger = bool(total) and healthy / total <= view.protect_threshold
    clusters = tuple(sorted({inst.cluster for inst in instances} | set(view.clusters)))
    return ServiceSummary(view.key, view.revision, total, healthy, clusters, trigger)


class _Namespace:
    """The grouped names of one namespace's services: a set, and a sorted list rebuilt lazily."""

    __slots__ = ("names", "pending", "removed", "sorted")

    def __init__(self) -> None:
        self.names: dict[str, ServiceKey] = {}
        self.sorted: list[str] = []
        self.pending: list[str] = []  # added since the list was last sorted
        self.removed = False  # something left since the list was last sorted

    def ordered(self) -> list[str]:
        if self.pending or self.removed:
            merged = self.sorted + self.pending if not self.removed else list(self.names)
            merged.sort()
            self.sorted = merged
            self.pending = []
            self.removed = False
        return self.sorted


class CatalogIndex:
    """Per-namespace service names in order, with per-service summaries cached by view revision."""

    def __init__(self, view_of: ViewLookup, views: Iterable[ServiceView] = ()) -> None:
        self._view_of = view_of
        self._namespaces: dict[str, _Namespace] = {}
        self._summaries: dict[ServiceKey, ServiceSummary] = {}
        self._addresses: dict[ServiceKey, tuple[int, frozenset[str]]] = {}
        self._address_count = 0
        for view in views:
            if view.key.group:
                self._add(view.key)

    # -- keeping up with changes --------------------------------------------------------------------
    def on_change(self, key: ServiceKey, view: ServiceView) -> None:
        """A view changed (the runtime's change listener): the service exists iff ``view_of`` has it.

        Keys with an empty group are not services (cluster-wide data lives under such reserved keys) and
        are never listed.
        """
        if not key.group:
            return
        if self._view_of(key) is None:
            self._remove(key)
        else:
            self._add(key)

    def _add(self, key: ServiceKey) -> None:
        space = self._namespaces.get(key.namespace)
        if space is None:
            space = self._namespaces[key.namespace] = _Namespace()
        name = key.grouped_name
        if name not in space.names:
            space.names[name] = key
            space.pending.append(name)

    def _remove(self, key: ServiceKey) -> None:
        self._summaries.pop(key, None)
        dropped = self._addresses.pop(key, None)
        if dropped is not None:
            self._address_count -= len(dropped[1])
        space = self._namespaces.get(key.namespace)
        if space is None or space.names.pop(key.grouped_name, None) is None:
            return
        space.removed = True
        if not space.names:
            del self._namespaces[key.namespace]

    # -- reading ------------------------------------------------------------------------------------
    def namespaces(self) -> list[str]:
        """Namespaces that hold at least one service, sorted."""
        return sorted(self._namespaces)

    def count(self, namespace: str) -> int:
        """How many services the namespace holds."""
        space = self._namespaces.get(namespace)
        return 0 if space is None else len(space.names)

    def keys(self, namespace: str) -> list[ServiceKey]:
        """The namespace's services, ordered by grouped name (``group@@service``), as Nacos orders them."""
        space = self._namespaces.get(namespace)
        if space is None:
            return []
        names = space.names
        return [names[name] for name in space.ordered()]

    def iter_all(self) -> Iterator[ServiceKey]:
        """Every service of every namespace (namespaces sorted, services in name order)."""
        for namespace in self.namespaces():
            yield from self.keys(namespace)

    def view(self, key: ServiceKey) -> ServiceView | None:
        """The current view of a service (None once it is gone)."""
        return self._view_of(key)

    def summary(self, key: ServiceKey) -> ServiceSummary | None:
        """The service's counts at its current revision (rebuilt only when the view changed)."""
        view = self._view_of(key)
        if view is None:
            return None
        cached = self._summaries.get(key)
        if cached is not None and cached.revision == view.revision:
            return cached
        fresh = summarize(view)
        self._summaries[key] = fresh
        return fresh

    def has_address(self, key: ServiceKey, address: str) -> bool:
        """Whether an instance of the service has ``ip`` or ``ip:port`` equal to ``address``.

        The addresses of a service are collected once per revision, and only for services that a request
        filtered by instance looked at.
        """
        view = self._view_of(key)
        if view is None:
            return False
        cached = self._addresses.get(key)
        if cached is None or cached[0] != view.revision:
            found: set[str] = set()
            for inst in view.instances:
                found.add(inst.ip)
                found.add(f"{inst.ip}:{inst.port}")
            if cached is not None:
                self._address_count -= len(cached[1])
            if self._address_count + len(found) > MAX_CACHED_ADDRESSES:
                self._addresses.clear()
                self._address_count = 0
            cached = self._addresses[key] = (view.revision, frozenset(found))
            self._address_count += len(found)
        return address in cached[1]
