"""Cluster settings: ``PUT /nacos/v1/ns/cluster``, and the cluster JSON every service read shows.

``PUT /nacos/v1/ns/cluster`` takes Nacos 1.4.2's parameters: ``namespaceId``, ``serviceName``* (or ``dom``,
grouped or with ``groupName``), ``clusterName``*, ``checkPort``, ``useInstancePort4Check``, ``healthChecker``
(JSON: ``{"type":"TCP"}``, ``{"type":"HTTP","path","headers","expectedResponseCode"}``,
``{"type":"MYSQL","user","pwd","cmd"}`` or ``{"type":"NONE"}``) and ``metadata`` (replaced; absent means
empty, as in Nacos). The service must exist (``400 service not found:<group@@name>``). Nacos requires the
three checker fields; here a field not given keeps the cluster's current value, so that the console can
edit a cluster's metadata alone (docs/api-naming.md lists this difference). Cluster settings are cluster
data: replicated, and on disk before the ``ok``.

:func:`service_clusters` and :func:`cluster_json` give the clusters of a service as the read endpoints
show them (``GET /service``, ``catalog/service``): every cluster that has instances or settings, with
Nacos's defaults where nobody configured it.
"""

from __future__ import annotations

from typing import Any

from cluster.api.params import Params
from cluster.http import Request, Response
from cluster.node.pump import NodeRuntime
from distro.clusterdata import ClusterMeta, parse_health_checker
from distro.model import ServiceKey, parse_metadata, service_key, validate_cluster
from distro.requests import UpdateCluster
from distro.views import ServiceView

__all__ = ["CLUSTER_PATH", "DEFAULT_PORT", "ClusterApi", "cluster_json", "service_clusters"]

CLUSTER_PATH = "/nacos/v1/ns/cluster"
DEFAULT_PORT = 80  # Nacos's Cluster.defaultPort


def service_clusters(view: ServiceView) -> list[tuple[str, ClusterMeta]]:
    """Every cluster of a service (with instances, or configured), sorted by name, with its settings."""
    names = {inst.cluster for inst in view.instances} | set(view.clusters)
    return [(name, view.clusters.get(name) or ClusterMeta()) for name in sorted(names)]


def cluster_json(key: ServiceKey, name: str, settings: ClusterMeta, *, full: bool = False) -> dict[str, Any]:
    """A cluster as Nacos shows it: ``{name, healthChecker, metadata}``, or with ``full`` the whole
    Cluster object (``catalog/service``)."""
    shown: dict[str, Any] = {
        "name": name,
        "healthChecker": settings.health_checker.to_json(),
        "metadata": dict(settings.metadata),
    }
    if full:
        shown.update(
            serviceName=key.grouped_name,
            defaultPort=DEFAULT_PORT,
            defaultCheckPort=settings.check_port,
            useIPPort4Check=settings.use_instance_port,
        )
    return shown


class ClusterApi:
    """The handler of ``PUT /nacos/v1/ns/cluster``; the API lists it in its route table."""

    def __init__(self, runtime: NodeRuntime, *, metadata_max_keys: int, metadata_max_bytes: int) -> None:
        self.runtime = runtime
        self.metadata_max_keys = metadata_max_keys
        self.metadata_max_bytes = metadata_max_bytes

    async def update(self, request: Request, params: Params) -> Response:
        """PUT /cluster: a cluster's check port, port flag, health checker and metadata."""
        key = service_key(params.get("namespaceId"), params.get("groupName"), params.required("serviceName", "dom"))
        cluster = validate_cluster(params.required("clusterName"))
        check_port = None if params.get("checkPort") in (None, "") else params.integer("checkPort", high=65535)
        use_port = None
        if params.get("useInstancePort4Check") not in (None, ""):
            use_port = params.boolean("useInstancePort4Check", True)
        raw_checker = params.get("healthChecker")
        checker = parse_health_checker(raw_checker) if raw_checker else None
        metadata = parse_metadata(
            params.get("metadata") or "", max_keys=self.metadata_max_keys, max_bytes=self.metadata_max_bytes
        )
        result = await self.runtime.submit(UpdateCluster(key, cluster, check_port, use_port, checker, metadata))
        if isinstance(result.body, str):
            return Response.text(result.status, result.body)
        return Response.json(result.body, result.status)
