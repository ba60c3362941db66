"""The cache of rendered ``hosts`` arrays behind ``instance/list``, bounded in bytes.

Rendering a big service's ``hosts`` array costs far more than serving it, so :class:`ListRenderer
<cluster.api.render.ListRenderer>` keeps each array it renders until the service's view changes. What a
client can make it keep is bounded two ways:

* **Normalised filters.** A cluster filter is reduced to the clusters the service actually has, sorted
  (:meth:`HostsCache.normalise`): ``DEFAULT,x1`` and ``x2,DEFAULT`` are one entry (the same as no filter
  when ``DEFAULT`` is the service's only cluster), and a filter naming only unknown clusters is the empty
  list, which is never cached. So the entries of a service are bounded by
  what was registered, not by what readers can spell.
* **Bytes.** Every entry is counted at its body's length plus :data:`ENTRY_OVERHEAD_BYTES` (and each
  service's list of cluster names at its length plus a share of that); past ``max_bytes`` the least
  recently used services' entries go first. A body larger than a quarter of the bound is served but not
  kept. The one thing that may briefly exceed the bound is the cluster list of the service being served.

* **Fragments.** For a big service (at least :data:`FRAGMENT_MIN_HOSTS` hosts) the renderer also keeps each
  host's rendered JSON object, keyed by the instance object it was rendered from. Instances are immutable and
  a view change replaces only the instances that changed, so after a change only those are rendered again
  and the array is joined from the kept pieces. Fragments outlive a revision (that is their point), are
  counted in the same bound at their length plus :data:`FRAGMENT_OVERHEAD_BYTES` each, and go with their
  service when it is evicted.

``/metrics`` shows the bytes held, the bound and the evictions (docs/security.md lists the bound).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from operator import attrgetter

from cluster.metrics import counter, gauge
from distro.model import Instance, ServiceKey
from distro.views import ServiceView

__all__ = ["DEFAULT_MAX_BYTES", "ENTRY_OVERHEAD_BYTES", "FRAGMENT_MIN_HOSTS", "FRAGMENT_OVERHEAD_BYTES", "Form",
           "Fragments", "HostsCache"]

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
_CLUSTER = attrgetter("cluster")
ENTRY_OVERHEAD_BYTES = 256
"""What one entry costs beyond its body (its key, tuple and dict slot), counted against the bound."""

FRAGMENT_MIN_HOSTS = 64
"""Services with fewer hosts are rendered whole every time: cheap enough, and nothing to keep."""
FRAGMENT_OVERHEAD_BYTES = 120
"""What one kept host fragment costs beyond its bytes (its dict slot, tuple and key), counted in the bound."""

Form = tuple[tuple[str, ...], bool, bool]
"""A normalised request: (known clusters, sorted; empty = all), healthy only, Java flavour."""

Fragments = dict[int, tuple[Instance, bytes]]
"""Rendered host objects by ``id(instance)``, each with the instance it was rendered from. Holding the
instance keeps its id from being reused, so ``fragments[id(inst)][0] is inst`` proves a hit."""


@dataclass(slots=True)
class _Service:
    revision: int
    clusters: frozenset[str]
    forms: dict[Form, tuple[bytes, bool]] = field(default_factory=dict)
    size_bytes: int = 0
    fragments: dict[bool, tuple[Fragments, int]] = field(default_factory=dict)  # Java flavour -> (map, bytes)


class HostsCache:
    """Rendered ``hosts`` arrays per service and normalised form, least recently used first out."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError("the list cache bound must not be negative")
        self.max_bytes = max_bytes
        self.size_bytes = 0
        self.evictions = 0
        self._services: OrderedDict[ServiceKey, _Service] = OrderedDict()

    def _service(self, view: ServiceView) -> _Service:
        entry = self._services.get(view.key)
        if entry is None or entry.revision != view.revision:
            kept: dict[bool, tuple[Fragments, int]] = {}
            if entry is not None:
                self.size_bytes -= entry.size_bytes
                kept = entry.fragments
            clusters = frozenset(map(_CLUSTER, view.instances))
            base_bytes = ENTRY_OVERHEAD_BYTES + sum(len(name) + ENTRY_OVERHEAD_BYTES // 4 for name in clusters)
            base_bytes += sum(size for _, size in kept.values())
            entry = _Service(view.revision, clusters, size_bytes=base_bytes, fragments=kept)
            self._services[view.key] = entry
            self.size_bytes += base_bytes
            self._shrink(view.key)
        self._services.move_to_end(view.key)
        return entry

    def normalise(self, view: ServiceView, clusters: tuple[str, ...]) -> tuple[str, ...] | None:
        """The filter reduced to the service's own clusters, sorted; ``()`` for all, None for none at all."""
        if not clusters:
            return ()
        known = self._service(view).clusters
        chosen = known.intersection(clusters)
        if len(chosen) == len(known):
            return ()  # every cluster the service has: the same list as no filter
        return tuple(sorted(chosen)) or None

    def get(self, view: ServiceView, form: Form) -> tuple[bytes, bool] | None:
        """The cached (body, protect threshold reached) of ``form`` at the view's revision, if any."""
        return self._service(view).forms.get(form)

    def put(self, view: ServiceView, form: Form, body: bytes, protected: bool) -> None:
        """Keep a rendered body (unless it is too large for the bound), evicting older services' first."""
        cost = len(body) + ENTRY_OVERHEAD_BYTES
        if 4 * cost > self.max_bytes:
            return
        entry = self._service(view)
        old = entry.forms.get(form)
        if old is not None:
            entry.size_bytes -= len(old[0]) + ENTRY_OVERHEAD_BYTES
            self.size_bytes -= len(old[0]) + ENTRY_OVERHEAD_BYTES
        entry.forms[form] = (body, protected)
        entry.size_bytes += cost
        self.size_bytes += cost
        self._shrink(view.key)

    def fragments(self, view: ServiceView, java: bool) -> Fragments:
        """The host fragments kept for the service in this flavour (empty when none); read, never mutate."""
        entry = self._services.get(view.key)
        kept = None if entry is None else entry.fragments.get(java)
        return {} if kept is None else kept[0]

    def keep_fragments(self, view: ServiceView, java: bool, fragments: Fragments, size_bytes: int) -> None:
        """Replace the service's fragments of this flavour (``size_bytes`` counts them); not kept when they
        would take more than a quarter of the bound."""
        entry = self._service(view)
        old = entry.fragments.pop(java, None)
        if old is not None:
            entry.size_bytes -= old[1]
            self.size_bytes -= old[1]
        if 4 * size_bytes > self.max_bytes:
            return
        entry.fragments[java] = (fragments, size_bytes)
        entry.size_bytes += size_bytes
        self.size_bytes += size_bytes
        self._shrink(view.key)

    def _shrink(self, serving: ServiceKey) -> None:
        """Evict until within the bound: other services first (least recently used), then the oldest forms
        of the one being served (its cluster list stays: it is in use right now)."""
        while self.size_bytes > self.max_bytes:
            key, entry = next(iter(self._services.items()))
            if key != serving:
                del self._services[key]
                self.size_bytes -= entry.size_bytes
            elif entry.forms:
                body = entry.forms.pop(next(iter(entry.forms)))[0]
                entry.size_bytes -= len(body) + ENTRY_OVERHEAD_BYTES
                self.size_bytes -= len(body) + ENTRY_OVERHEAD_BYTES
            elif entry.fragments:
                size = entry.fragments.pop(next(iter(entry.fragments)))[1]
                entry.size_bytes -= size
                self.size_bytes -= size
            else:
                return
            self.evictions += 1

    def forget(self, key: ServiceKey) -> None:
        """Drop a service's entries (it is gone)."""
        entry = self._services.pop(key, None)
        if entry is not None:
            self.size_bytes -= entry.size_bytes

    def render_metrics(self) -> str:
        """Prometheus text for /metrics."""
        return "".join([
            gauge("distro_list_cache_bytes", "Bytes of rendered instance lists held (bodies plus per-entry cost).",
                  self.size_bytes),
            gauge("distro_list_cache_max_bytes", "The bound on distro_list_cache_bytes (--list-cache-bytes).",
                  self.max_bytes),
            gauge("distro_list_cache_services", "Services with rendered lists held.", len(self._services)),
            counter("distro_list_cache_evictions_total", "Rendered lists dropped to stay within the bound.",
                    self.evictions),
        ])
