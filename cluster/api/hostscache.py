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

* **Runs.** For a big service (at least :data:`FRAGMENT_MIN_HOSTS` hosts) the renderer also keeps the
  unfiltered array as *runs* of about :data:`RUN_HOSTS` consecutive hosts: each run holds its instances, its
  hosts' rendered JSON objects joined with commas, and where each object ends (so one can be cut out again).
  Instances are immutable and a view change replaces only the instances that changed, so after a change only
  the runs that hold a changed, new or removed instance are joined again (and only their changed hosts
  rendered); the others are served as they are, and the answer is sent as the list of runs (scatter-gather,
  :class:`Response.parts <cluster.http.server.Response>`) without joining 3.6 MB into one string. Runs
  outlive a revision (that is their point), are counted in the same bound (their bytes, plus
  :data:`FRAGMENT_OVERHEAD_BYTES` per host), and go with their service when it is evicted. The unfiltered
  body, made of the runs' bytes, counts those at a pointer each (the runs count them; a form goes before
  the runs it uses).

* **Deflated pieces.** For clients that accept gzip (:mod:`cluster.api.gzipbody`) a run's deflated bytes are
  kept with the run (and dropped with it), and a kept form's deflated chunks until the view changes; both are
  counted in the same bound.

``/metrics`` shows the bytes held, the bound and the evictions (docs/security.md lists the bound).
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from dataclasses import dataclass, field
from operator import attrgetter, is_

from cluster.metrics import counter, gauge
from distro.model import Instance, ServiceKey
from distro.views import ServiceView

__all__ = [
    "DEFAULT_MAX_BYTES",
    "ENTRY_OVERHEAD_BYTES",
    "FRAGMENT_MIN_HOSTS",
    "FRAGMENT_OVERHEAD_BYTES",
    "RUN_HOSTS",
    "Form",
    "HostsCache",
    "Run",
]

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
_CLUSTER = attrgetter("cluster")
ENTRY_OVERHEAD_BYTES = 256
"""What one entry costs beyond its body (its key, tuple and dict slot), counted against the bound."""

FRAGMENT_MIN_HOSTS = 64
"""Services with fewer hosts are rendered whole every time: cheap enough, and nothing to keep."""
FRAGMENT_OVERHEAD_BYTES = 16
"""What one kept host costs beyond its bytes (its slot in its run's instances, where its object ends), counted
in the bound."""
RUN_HOSTS = 128
"""Hosts per run when a run is made; a change joins its run again (about 45 KB for typical hosts)."""

Form = tuple[tuple[str, ...], bool, bool]
"""A normalised request: (known clusters, sorted; empty = all), healthy only, Java flavour."""

Run = tuple[tuple[Instance, ...], "array[int]", bytes]
"""Consecutive hosts of a big service's unfiltered array: the instances, where each one's rendered JSON object
ends in the run's bytes (4 bytes a host), and those objects joined with commas. Holding the instances keeps
their ids from being reused, so identity (``is``) proves that a host is the one its object was rendered from."""


@dataclass(slots=True)
class _Service:
    revision: int
    clusters: frozenset[str] | None  # the clusters the instances are in, made when a filter first needs them
    forms: dict[Form, tuple[tuple[bytes, ...], bool]] = field(default_factory=dict)  # -> (body's chunks, protected)
    size_bytes: int = 0
    runs: dict[bool, tuple[list[Run], int]] = field(default_factory=dict)  # Java flavour -> (runs, bytes)
    gzipped: dict[Form, tuple[bytes, ...]] = field(default_factory=dict)  # a kept form's chunks, each deflated
    run_deflates: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)  # id(run's bytes) -> (them, deflated)
    run_deflates_bytes: int = 0


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
            kept: dict[bool, tuple[list[Run], int]] = {}
            deflates: dict[int, tuple[bytes, bytes]] = {}
            deflates_bytes = 0
            if entry is not None:  # runs (and their deflated bytes) outlive a revision; forms do not
                self.size_bytes -= entry.size_bytes
                kept, deflates, deflates_bytes = entry.runs, entry.run_deflates, entry.run_deflates_bytes
            base_bytes = ENTRY_OVERHEAD_BYTES + sum(size for _, size in kept.values()) + deflates_bytes
            entry = _Service(view.revision, None, size_bytes=base_bytes, runs=kept, run_deflates=deflates,
                             run_deflates_bytes=deflates_bytes)
            self._services[view.key] = entry
            self.size_bytes += base_bytes
            self._shrink(view.key)
        self._services.move_to_end(view.key)
        return entry

    def normalise(self, view: ServiceView, clusters: tuple[str, ...]) -> tuple[str, ...] | None:
        """The filter reduced to the service's own clusters, sorted; ``()`` for all, None for none at all."""
        if not clusters:
            return ()
        entry = self._service(view)
        known = entry.clusters
        if known is None:  # a pass over every instance: only for lists that ask for some clusters
            known = entry.clusters = frozenset(map(_CLUSTER, view.instances))
            names_bytes = sum(len(name) + ENTRY_OVERHEAD_BYTES // 4 for name in known)
            entry.size_bytes += names_bytes
            self.size_bytes += names_bytes
            self._shrink(view.key)
        chosen = known.intersection(clusters)
        if len(chosen) == len(known):
            return ()  # every cluster the service has: the same list as no filter
        return tuple(sorted(chosen)) or None

    def get(self, view: ServiceView, form: Form) -> tuple[tuple[bytes, ...], bool] | None:
        """The cached (body's chunks, protect threshold reached) of ``form`` at the view's revision, if any."""
        return self._service(view).forms.get(form)

    def _cost(self, entry: _Service, form: Form, chunks: tuple[bytes, ...]) -> int:
        """What a kept body counts: its chunks, but those that are the bytes of the runs kept for its flavour
        (the unfiltered form's, counted with the runs) at a pointer each. Runs outlive the forms that use them:
        a form goes with its revision, or (the service being served) before its runs."""
        kept = entry.runs.get(form[2])
        if kept is None or form[:2] != ((), False):
            return sum(map(len, chunks)) + ENTRY_OVERHEAD_BYTES
        owned = {id(run[2]) for run in kept[0]}
        return sum(8 if id(chunk) in owned else len(chunk) for chunk in chunks) + ENTRY_OVERHEAD_BYTES

    def put(self, view: ServiceView, form: Form, chunks: tuple[bytes, ...], protected: bool) -> None:
        """Keep a rendered body, in the chunks it is sent as (unless it is too large for the bound), evicting
        older services' first."""
        entry = self._service(view)
        cost = self._cost(entry, form, chunks)
        if 4 * cost > self.max_bytes:
            return
        old = entry.forms.get(form)
        if old is not None:
            old_cost = self._cost(entry, form, old[0])
            entry.size_bytes -= old_cost
            self.size_bytes -= old_cost
            deflated = entry.gzipped.pop(form, None)
            if deflated is not None:
                old_cost = sum(map(len, deflated)) + ENTRY_OVERHEAD_BYTES
                entry.size_bytes -= old_cost
                self.size_bytes -= old_cost
        entry.forms[form] = (chunks, protected)
        entry.size_bytes += cost
        self.size_bytes += cost
        self._shrink(view.key)

    def gzipped(self, view: ServiceView, form: Form) -> tuple[bytes, ...] | None:
        """The deflated pieces of ``form``'s kept chunks at the view's revision, if any."""
        return self._service(view).gzipped.get(form)

    def keep_gzipped(self, view: ServiceView, form: Form, chunks: tuple[bytes, ...],
                     deflated: tuple[bytes, ...]) -> None:
        """Keep the deflated pieces of ``form``'s chunks, while (and only if) those very chunks are kept."""
        entry = self._service(view)
        kept = entry.forms.get(form)
        if kept is None or form in entry.gzipped or len(kept[0]) != len(chunks) or not all(map(is_, kept[0], chunks)):
            return
        cost = sum(map(len, deflated)) + ENTRY_OVERHEAD_BYTES
        entry.gzipped[form] = deflated
        entry.size_bytes += cost
        self.size_bytes += cost
        self._shrink(view.key)

    def run_deflate(self, view: ServiceView, joined: bytes) -> bytes | None:
        """The deflated bytes kept for a run's joined bytes, if any."""
        entry = self._services.get(view.key)
        hit = None if entry is None else entry.run_deflates.get(id(joined))
        return hit[1] if hit is not None and hit[0] is joined else None

    def keep_run_deflate(self, view: ServiceView, joined: bytes, deflated: bytes) -> None:
        """Keep a run's deflated bytes, if ``joined`` is the bytes of a run kept now (they go with it)."""
        entry = self._service(view)
        if id(joined) in entry.run_deflates or not any(
                run[2] is joined for runs, _ in entry.runs.values() for run in runs):
            return
        cost = len(deflated) + ENTRY_OVERHEAD_BYTES // 2
        entry.run_deflates[id(joined)] = (joined, deflated)
        entry.run_deflates_bytes += cost
        entry.size_bytes += cost
        self.size_bytes += cost
        self._shrink(view.key)

    def _prune_run_deflates(self, entry: _Service) -> None:
        """Drop the deflated bytes of runs no longer kept."""
        if not entry.run_deflates:
            return
        live = {id(run[2]) for runs, _ in entry.runs.values() for run in runs}
        for key in [key for key in entry.run_deflates if key not in live]:
            cost = len(entry.run_deflates.pop(key)[1]) + ENTRY_OVERHEAD_BYTES // 2
            entry.run_deflates_bytes -= cost
            entry.size_bytes -= cost
            self.size_bytes -= cost

    def runs(self, view: ServiceView, java: bool) -> list[Run]:
        """The runs kept for the service in this flavour (empty when none); read, never mutate."""
        entry = self._services.get(view.key)
        kept = None if entry is None else entry.runs.get(java)
        return [] if kept is None else kept[0]

    def keep_runs(self, view: ServiceView, java: bool, runs: list[Run], size_bytes: int) -> None:
        """Replace the service's runs of this flavour (``size_bytes`` counts them); not kept when they would
        take more than a quarter of the bound."""
        entry = self._service(view)
        unfiltered: Form = ((), False, java)
        if unfiltered in entry.forms:  # counted against the runs it uses: it goes first (not expected here)
            cost = self._cost(entry, unfiltered, entry.forms.pop(unfiltered)[0])
            entry.size_bytes -= cost
            self.size_bytes -= cost
        old = entry.runs.pop(java, None)
        if old is not None:
            entry.size_bytes -= old[1]
            self.size_bytes -= old[1]
        if 4 * size_bytes <= self.max_bytes:
            entry.runs[java] = (runs, size_bytes)
            entry.size_bytes += size_bytes
            self.size_bytes += size_bytes
        self._prune_run_deflates(entry)
        self._shrink(view.key)

    def _shrink(self, serving: ServiceKey) -> None:
        """Evict until within the bound: other services first (least recently used), then, of the one being
        served, its deflated forms, its forms, its runs' deflated bytes and its runs (its cluster list stays:
        it is in use right now)."""
        while self.size_bytes > self.max_bytes:
            key, entry = next(iter(self._services.items()))
            if key != serving:
                del self._services[key]
                self.size_bytes -= entry.size_bytes
            elif entry.gzipped:
                deflated = entry.gzipped.pop(next(iter(entry.gzipped)))
                cost = sum(map(len, deflated)) + ENTRY_OVERHEAD_BYTES
                entry.size_bytes -= cost
                self.size_bytes -= cost
            elif entry.forms:
                form = next(iter(entry.forms))
                cost = self._cost(entry, form, entry.forms.pop(form)[0])
                entry.size_bytes -= cost
                self.size_bytes -= cost
            elif entry.run_deflates:
                entry.size_bytes -= entry.run_deflates_bytes
                self.size_bytes -= entry.run_deflates_bytes
                entry.run_deflates.clear()
                entry.run_deflates_bytes = 0
            elif entry.runs:
                size = entry.runs.pop(next(iter(entry.runs)))[1]
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
