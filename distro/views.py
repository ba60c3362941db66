"""Read views: immutable per-service snapshots that readers use without locks (copy-on-write).

The notifier makes a new :class:`ServiceView` whenever a key changes and swaps it in; a reader holding
the old one keeps a consistent picture. Views are *lazy*: the notifier only records the key's entries
(:meth:`ServiceView.of_datum`, no copy) and the sorted instance tuple is built the first time somebody
reads it. Under heavy registration most views are replaced before anyone reads them, so a write costs
O(1) here instead of a rebuild of the whole service. :func:`select_hosts` applies Nacos's
``instance/list`` rules.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from hashlib import blake2b
from itertools import compress, repeat
from operator import attrgetter
from typing import Any

from distro.clusterdata import ClusterMeta, cluster_name_of
from distro.datum import IMPLICIT_ENTRY_ID, META_ENTRY_ID, Entry
from distro.model import Instance, ServiceKey, ServiceMeta

__all__ = ["Selection", "ServiceView", "empty_view", "select_hosts"]

_VALUE = attrgetter("value")
_HEALTHY = attrgetter("healthy")
_ENABLED = attrgetter("enabled")


class ServiceView:
    """A service as readers see it: its live instances (sorted by entry id), settings and clusters' settings.

    ``revision`` increases on this node every time the view changes; ``checksum`` is the same on every
    node that holds the same instances, so clients can compare it across nodes.

    A view made by :meth:`of_datum` is built from the key's entries on first read. It is built from the
    entries as they are *then*: if the key changed again in between, the reader sees the newer (still
    consistent) state, and a newer view with a higher revision is already on its way.
    """

    __slots__ = (
        "_checksum",
        "_clusters",
        "_implicit",
        "_instances",
        "_meta",
        "_source",
        "key",
        "modified_ms",
        "revision",
    )

    def __init__(
        self,
        key: ServiceKey,
        instances: tuple[Instance, ...],
        meta: ServiceMeta | None,
        revision: int,
        modified_ms: int,
    ) -> None:
        self.key = key
        self.revision = revision
        self.modified_ms = modified_ms
        self._instances: tuple[Instance, ...] | None = instances
        self._meta = meta
        self._clusters: Mapping[str, ClusterMeta] = {}
        self._implicit = False
        self._source: Mapping[str, Entry] | None = None
        self._checksum: str | None = None

    @classmethod
    def of_datum(cls, key: ServiceKey, datum: Mapping[str, Entry], revision: int, modified_ms: int) -> ServiceView:
        """A view of ``datum`` (a key's entries, not copied) that is built when first read."""
        view = cls(key, (), None, revision, modified_ms)
        view._instances = None
        view._source = datum
        return view

    def _build(self) -> tuple[Instance, ...]:
        source = self._source
        assert source is not None
        ids = sorted(source)
        # Settings entry ids start with "#" and sort first (cluster names are [0-9a-zA-Z-]): an instance id
        # never does. The rest are instances or tombstones, kept or dropped in C-level passes (a view of a
        # 10,000-instance service is built after every change to it).
        first = next((i for i, entry_id in enumerate(ids) if not entry_id.startswith("#")), len(ids))
        clusters: dict[str, ClusterMeta] = {}
        for entry_id in ids[:first]:
            value = source[entry_id].value
            if type(value) is ClusterMeta:
                clusters[cluster_name_of(entry_id) or entry_id] = value
        values = list(map(_VALUE, map(source.__getitem__, ids[first:])))
        instances = list(compress(values, map(isinstance, values, repeat(Instance))))
        self._clusters = clusters
        implicit = source.get(IMPLICIT_ENTRY_ID)
        self._implicit = implicit is not None and implicit.value is not None
        meta_entry = source.get(META_ENTRY_ID)
        meta = None if meta_entry is None else meta_entry.value
        self._meta = meta if isinstance(meta, ServiceMeta) else None
        built = tuple(instances)
        self._instances = built
        self._source = None
        return built

    @property
    def instances(self) -> tuple[Instance, ...]:
        """The live instances, sorted by entry id."""
        built = self._instances
        return self._build() if built is None else built

    @property
    def meta(self) -> ServiceMeta | None:
        """The service's settings, or None."""
        if self._instances is None:
            self._build()
        return self._meta

    @property
    def clusters(self) -> Mapping[str, ClusterMeta]:
        """The settings of the clusters someone configured (``PUT /cluster``), by cluster name."""
        if self._instances is None:
            self._build()
        return self._clusters

    @property
    def exists(self) -> bool:
        """False for the view of a deleted or never-registered service."""
        return bool(self.instances) or self.meta is not None or bool(self.clusters) or self._implicit

    @property
    def protect_threshold(self) -> float:
        """The service's protect threshold (0.0 by default)."""
        meta = self.meta
        return 0.0 if meta is None else meta.protect_threshold

    @property
    def checksum(self) -> str:
        """A content hash of the instances and settings (computed once, on first use).

        Each instance's share is its :meth:`~distro.model.Instance.checksum_digest`, kept on the instance, so
        after a change only the changed instances are hashed again.
        """
        if self._checksum is None:
            h = blake2b(digest_size=16)
            h.update(b"".join(map(Instance.checksum_digest, self.instances)))
            if self.meta is not None:
                meta = ",".join(f"{k}:{v}" for k, v in sorted(self.meta.metadata.items()))
                h.update(f"#{self.meta.protect_threshold!r}_{self.meta.selector_type}_{meta}".encode())
            for name, settings in sorted(self.clusters.items()):
                meta = ",".join(f"{k}:{v}" for k, v in sorted(settings.metadata.items()))
                text = f"#{name}_{settings.check_port}_{settings.use_instance_port}_{settings.health_checker!r}_{meta}"
                h.update(text.encode("utf-8", "surrogatepass"))
            self._checksum = h.hexdigest()
        return self._checksum

    def _fields(self) -> tuple[Any, ...]:
        return (self.key, self.instances, self.meta, self.revision, self.modified_ms)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ServiceView):
            return NotImplemented
        return self is other or self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash((self.key, self.revision, self.modified_ms))

    def __repr__(self) -> str:
        return (
            f"ServiceView(key={self.key!r}, instances={self.instances!r}, meta={self.meta!r}, "
            f"revision={self.revision}, modified_ms={self.modified_ms})"
        )


def empty_view(key: ServiceKey, revision: int = 0, modified_ms: int = 0) -> ServiceView:
    """The view of a service nobody registered."""
    return ServiceView(key, (), None, revision, modified_ms)


@dataclass(frozen=True, slots=True)
class Selection:
    """The result of :func:`select_hosts`: the hosts to return, and whether protection kicked in."""

    hosts: tuple[Instance, ...]
    protect_triggered: bool


def select_hosts(view: ServiceView, clusters: Collection[str] | None, healthy_only: bool) -> Selection:
    """Nacos's ``instance/list`` selection.

    Keep the instances of the requested clusters (all when ``clusters`` is empty). If the share of healthy
    ones is at or below the service's protect threshold, return them all, reported healthy. Disabled
    instances count in that share but are never returned; unhealthy ones are dropped when ``healthy_only``.
    """
    chosen: Sequence[Instance] = view.instances
    if clusters:
        chosen = [inst for inst in chosen if inst.cluster in clusters]
    if not chosen:
        return Selection((), False)
    threshold = view.protect_threshold
    if threshold > 0:
        protect = sum(map(_HEALTHY, chosen)) / len(chosen) <= threshold
    else:  # the default, 0: only when none is healthy (found at the first healthy one, not by counting them all)
        protect = threshold == 0 and not any(map(_HEALTHY, chosen))
    if protect:
        hosts = tuple(inst if inst.healthy else inst.with_health(True) for inst in chosen if inst.enabled)
        return Selection(hosts, True)
    if healthy_only:
        return Selection(tuple(inst for inst in chosen if inst.enabled and inst.healthy), False)
    if all(map(_ENABLED, chosen)):
        return Selection(tuple(chosen), False)  # the view's own tuple when unfiltered: no copy
    return Selection(tuple(compress(chosen, map(_ENABLED, chosen))), False)
