"""The cluster-data side of the simulated workload: namespaces, service settings and cluster settings.

An operator creates namespaces, deletes some of them, creates services with settings, configures
clusters of those services, registers instances into them (which must never disturb their settings) and
puts registry-wide settings, through any node. Every id is fresh, so each request's outcome is
unambiguous: once a node answers ``true`` (or ``ok``) the write was acknowledged, and
:func:`check_cluster_data` demands that, after faults stop and the cluster settles, every ready node holds
every acknowledged creation and none of the acknowledged deletions, however many nodes crashed (the
simulated disks keep what each node persisted) and whatever the network lost meanwhile.

A deletion answers ``true`` even when the node that applied it does not hold the namespace (yet): as in
Nacos, deleting an unknown namespace is not an error, and in an AP registry the creation may not have
reached the owner that takes the deletion. Only a deletion that wrote a tombstone somewhere (the
simulator looks when the answer arrives) counts as acknowledged.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from distro.clusterdata import ClusterMeta, HealthChecker
from distro.model import ServiceKey, ServiceMeta, make_instance
from distro.node import DistroNode
from distro.requests import (
    ClientRequest,
    CreateNamespace,
    CreateService,
    DeleteNamespace,
    PutSetting,
    Register,
    Result,
    UpdateCluster,
)

__all__ = ["ClusterDataWorkload", "check_cluster_data"]

DATA_NAMESPACE = "cfg"


@dataclass
class ClusterDataWorkload:
    """What was asked and what was acknowledged. ``created``/``deleted`` map ids to the ms of their ack."""

    namespaces_created: dict[str, int] = field(default_factory=dict)
    namespaces_deleted: dict[str, int] = field(default_factory=dict)
    delete_issued: set[str] = field(default_factory=set)
    services_created: dict[ServiceKey, ServiceMeta] = field(default_factory=dict)
    clusters_set: dict[tuple[ServiceKey, str], ClusterMeta] = field(default_factory=dict)
    settings_put: dict[str, str] = field(default_factory=dict)
    issued: int = 0
    acknowledged: int = 0
    _next: int = 0

    def _fresh(self) -> int:
        self._next += 1
        return self._next

    # -- requests --------------------------------------------------------------------------------
    def create_namespace(self) -> CreateNamespace:
        """A namespace with an id never used before."""
        n = self._fresh()
        return CreateNamespace(f"ns-{n}", f"namespace {n}", f"made by request {n}")

    def delete_namespace(self, rng: random.Random, now_ms: int) -> DeleteNamespace | None:
        """Delete an acknowledged namespace, acknowledged before ``now_ms`` (a later write in time)."""
        candidates = sorted(
            ns for ns, acked_ms in self.namespaces_created.items() if ns not in self.delete_issued and acked_ms < now_ms
        )
        if not candidates:
            return None
        choice = rng.choice(candidates)
        self.delete_issued.add(choice)
        return DeleteNamespace(choice)

    def create_service(self) -> CreateService:
        """A service with settings, under a name never used before."""
        n = self._fresh()
        key = ServiceKey(DATA_NAMESPACE, "DEFAULT_GROUP", f"cfg-{n}")
        return CreateService(key, ServiceMeta(protect_threshold=(n % 10) / 10, metadata={"n": str(n)}))

    def update_cluster(self, rng: random.Random) -> UpdateCluster | None:
        """Configure a new cluster of an acknowledged service."""
        if not self.services_created:
            return None
        key = rng.choice(sorted(self.services_created))
        n = self._fresh()
        return UpdateCluster(key, f"c{n}", n % 1000, n % 2 == 0, HealthChecker("HTTP", f"/h{n}"), {"n": str(n)})

    def issue(self, rng: random.Random, now_ms: int) -> ClientRequest:
        """A random cluster-data request."""
        self.issued += 1
        roll = rng.random()
        request: ClientRequest | None = None
        if roll < 0.1:
            n = self._fresh()
            request = PutSetting(f"setting-{n}", f'{{"n": {n}}}')
        elif roll < 0.15 and self.services_created:
            n = self._fresh()
            key = rng.choice(sorted(self.services_created))
            request = Register(key, make_instance(f"10.200.{n // 250 % 250}.{n % 250 + 1}", 9000))
        elif roll < 0.2:
            request = self.delete_namespace(rng, now_ms)
        elif roll < 0.45:
            request = self.update_cluster(rng)
        elif roll < 0.7:
            request = self.create_service()
        return request or self.create_namespace()

    # -- answers ---------------------------------------------------------------------------------
    def answered(self, request: ClientRequest, result: Result, now_ms: int, *, deleted: bool = False) -> None:
        """A node answered ``request``: remember what it acknowledged (``deleted``: a namespace deletion
        left a tombstone)."""
        if result.body not in ("ok", "true"):
            return
        if isinstance(request, DeleteNamespace) and not deleted:
            return
        self.acknowledged += 1
        if isinstance(request, CreateNamespace):
            self.namespaces_created[request.namespace_id] = now_ms
        elif isinstance(request, DeleteNamespace):
            self.namespaces_deleted[request.namespace_id] = now_ms
        elif isinstance(request, CreateService):
            self.services_created[request.key] = request.meta
        elif isinstance(request, PutSetting) and request.text is not None:
            self.settings_put[request.name] = request.text
        elif isinstance(request, UpdateCluster):
            assert request.check_port is not None and request.use_instance_port is not None
            assert request.health_checker is not None
            self.clusters_set[(request.key, request.cluster)] = ClusterMeta(
                request.check_port, request.use_instance_port, request.health_checker, dict(request.metadata)
            )


def check_cluster_data(workload: ClusterDataWorkload, nodes: Iterable[tuple[str, DistroNode]]) -> list[str]:
    """Every acknowledged creation is on every given (ready) node, and no acknowledged deletion is."""
    violations: list[str] = []
    for node_id, node in nodes:
        held = dict(node.namespaces())
        lost = sorted(ns for ns in workload.namespaces_created if ns not in held and ns not in workload.delete_issued)
        back = sorted(ns for ns in workload.namespaces_deleted if ns in held)
        if lost:
            violations.append(f"{node_id}: acknowledged namespaces missing: {lost[:5]}")
        if back:
            violations.append(f"{node_id}: acknowledged deletions of namespaces undone: {back[:5]}")
        held_settings = node.settings()
        lost_settings = sorted(name for name, text in workload.settings_put.items() if held_settings.get(name) != text)
        if lost_settings:
            violations.append(f"{node_id}: acknowledged settings missing: {lost_settings[:5]}")
        for key, meta in sorted(workload.services_created.items()):
            view = node.view(key)
            if view is None or view.meta is None or view.meta.metadata != meta.metadata:
                violations.append(f"{node_id}: acknowledged service settings of {key} missing or wrong")
        for (key, cluster), settings in sorted(workload.clusters_set.items()):
            view = node.view(key)
            if view is None or view.clusters.get(cluster) != settings:
                violations.append(f"{node_id}: acknowledged settings of cluster {cluster} of {key} missing")
    return violations
