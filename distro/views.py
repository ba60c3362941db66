"""Read views: immutable per-service snapshots that readers use without locks (copy-on-write).

The notifier builds a new :class:`ServiceView` whenever a key changes and swaps it in; a reader holding
the old one keeps a consistent picture. :func:`select_hosts` applies Nacos's ``instance/list`` rules.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from hashlib import blake2b

from distro.model import Instance, ServiceKey, ServiceMeta


@dataclass(frozen=True, slots=True)
class ServiceView:
    """A service as readers see it: its live instances (sorted by entry id) and settings.

    ``revision`` increases on this node every time the view changes; ``checksum`` is the same on every
    node that holds the same instances, so clients can compare it across nodes.
    """

    key: ServiceKey
    instances: tuple[Instance, ...]
    meta: ServiceMeta | None
    revision: int
    modified_ms: int
    _checksum: list[str] = field(default_factory=list, compare=False, repr=False)

    @property
    def exists(self) -> bool:
        """False for the view of a deleted or never-registered service."""
        return bool(self.instances) or self.meta is not None

    @property
    def protect_threshold(self) -> float:
        """The service's protect threshold (0.0 by default)."""
        return 0.0 if self.meta is None else self.meta.protect_threshold

    @property
    def checksum(self) -> str:
        """A content hash of the instances and settings (computed once, on first use)."""
        if not self._checksum:
            h = blake2b(digest_size=16)
            for inst in self.instances:
                meta = ",".join(f"{k}:{v}" for k, v in sorted(inst.metadata.items()))
                h.update(
                    f"{inst.cluster}/{inst.ip}:{inst.port}_{inst.weight!r}_{inst.healthy}_{inst.enabled}_{meta};".encode(
                        "utf-8", "surrogatepass"
                    )
                )
            if self.meta is not None:
                meta = ",".join(f"{k}:{v}" for k, v in sorted(self.meta.metadata.items()))
                h.update(f"#{self.meta.protect_threshold!r}_{self.meta.selector_type}_{meta}".encode())
            self._checksum.append(h.hexdigest())
        return self._checksum[0]


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
    if clusters:
        chosen = [inst for inst in view.instances if inst.cluster in clusters]
    else:
        chosen = list(view.instances)
    if not chosen:
        return Selection((), False)
    healthy_count = sum(1 for inst in chosen if inst.healthy)
    if healthy_count / len(chosen) <= view.protect_threshold:
        hosts = tuple(inst if inst.healthy else inst.with_health(True) for inst in chosen if inst.enabled)
        return Selection(hosts, True)
    if healthy_only:
        return Selection(tuple(inst for inst in chosen if inst.enabled and inst.healthy), False)
    return Selection(tuple(inst for inst in chosen if inst.enabled), False)
