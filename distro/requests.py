"""Client requests the core accepts, and the results it answers with.

These are the writes of the Nacos naming API after parameter parsing and validation. Reads are served
from the node's read views (:meth:`distro.node.DistroNode.view`) and never pass through here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from distro.clusterdata import NAMESPACES_KEY, SETTINGS_KEY, HealthChecker
from distro.model import Instance, ServiceKey, ServiceMeta, instance_entry_id

__all__ = [
    "CLUSTER_DATA_REQUESTS",
    "CODE_OK",
    "CODE_RESOURCE_NOT_FOUND",
    "OK",
    "Beat",
    "ClientRequest",
    "CreateNamespace",
    "CreateService",
    "DeleteNamespace",
    "DeleteService",
    "Deregister",
    "PutSetting",
    "Register",
    "Result",
    "UpdateCluster",
    "UpdateInstance",
    "UpdateNamespace",
    "UpdateService",
]


@dataclass(frozen=True, slots=True)
class Register:
    """``POST /instance``: add or replace an instance."""

    key: ServiceKey
    instance: Instance


@dataclass(frozen=True, slots=True)
class Deregister:
    """``DELETE /instance``: remove an instance (``ok`` even when it is unknown, as Nacos).

    With ``connection`` set (a gRPC connection's deregistration) the instance is removed only while it
    still belongs to that connection: a client that re-registered elsewhere keeps it.
    """

    key: ServiceKey
    cluster: str
    ip: str
    port: int
    connection: str | None = None


@dataclass(frozen=True, slots=True)
class UpdateInstance:
    """``PUT /instance``: change the given fields of an instance.

    ``changes`` holds only the fields the client sent (``weight``, ``healthy``, ``enabled``,
    ``metadata``). With ``must_exist`` (Nacos does this for its Java client) an unknown instance is a
    400; otherwise it is registered with defaults for the missing fields.
    """

    key: ServiceKey
    cluster: str
    ip: str
    port: int
    changes: Mapping[str, Any] = field(default_factory=dict)
    must_exist: bool = False


@dataclass(frozen=True, slots=True)
class Beat:
    """``PUT /instance/beat``. ``instance`` is set for a full beat, which re-registers an unknown instance."""

    key: ServiceKey
    cluster: str
    ip: str
    port: int
    instance: Instance | None = None

    @property
    def entry_id(self) -> str:
        """The entry the beat is for (a full beat's own cluster, ip and port win over the parameters)."""
        if self.instance is not None:
            return self.instance.entry_id
        return instance_entry_id(self.cluster, self.ip, self.port)


@dataclass(frozen=True, slots=True)
class CreateService:
    """``POST /service``."""

    key: ServiceKey
    meta: ServiceMeta


@dataclass(frozen=True, slots=True)
class UpdateService:
    """``PUT /service``."""

    key: ServiceKey
    meta: ServiceMeta


@dataclass(frozen=True, slots=True)
class DeleteService:
    """``DELETE /service``: removes the service's settings and its clusters' settings; refused while the
    service still has instances (docs/api-naming.md says why)."""

    key: ServiceKey


@dataclass(frozen=True, slots=True)
class UpdateCluster:
    """``PUT /cluster``: a cluster's settings. A field left ``None`` keeps its current value (its default
    for a cluster without settings yet); ``metadata`` replaces the cluster's metadata."""

    key: ServiceKey
    cluster: str
    check_port: int | None = None
    use_instance_port: bool | None = None
    health_checker: HealthChecker | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CreateNamespace:
    """``POST /console/namespaces``: answers ``true``, or ``false`` when the id is taken or malformed."""

    namespace_id: str
    name: str
    desc: str = ""

    @property
    def key(self) -> ServiceKey:
        """Namespaces live under the reserved key; its owner takes the write."""
        return NAMESPACES_KEY


@dataclass(frozen=True, slots=True)
class UpdateNamespace:
    """``PUT /console/namespaces``: a namespace's show name and description (``true`` even when unknown)."""

    namespace_id: str
    name: str
    desc: str = ""

    @property
    def key(self) -> ServiceKey:
        """Namespaces live under the reserved key; its owner takes the write."""
        return NAMESPACES_KEY


@dataclass(frozen=True, slots=True)
class DeleteNamespace:
    """``DELETE /console/namespaces``: ``true`` (also for an unknown id). The namespace's services stay."""

    namespace_id: str

    @property
    def key(self) -> ServiceKey:
        """Namespaces live under the reserved key; its owner takes the write."""
        return NAMESPACES_KEY


@dataclass(frozen=True, slots=True)
class PutSetting:
    """A registry-wide setting (cluster data, like the namespaces): ``text`` replaces it, ``None`` removes it.
    Answers ``ok``; its owner writes it, every node holds it (``DistroNode.settings()``), and a node with a
    data folder keeps it across restarts."""

    name: str
    text: str | None

    @property
    def key(self) -> ServiceKey:
        """Settings live under the reserved key; its owner takes the write."""
        return SETTINGS_KEY


ClientRequest = (
    Register
    | Deregister
    | UpdateInstance
    | Beat
    | CreateService
    | UpdateService
    | DeleteService
    | UpdateCluster
    | CreateNamespace
    | UpdateNamespace
    | DeleteNamespace
    | PutSetting
)

CLUSTER_DATA_REQUESTS = (
    CreateService,
    UpdateService,
    DeleteService,
    UpdateCluster,
    CreateNamespace,
    UpdateNamespace,
    DeleteNamespace,
    PutSetting,
)
"""Requests about cluster data: on a node that keeps a data folder, their answer waits until every
cluster-data write applied so far is on disk (:mod:`distro.durability`)."""


@dataclass(frozen=True, slots=True)
class Result:
    """The answer to a client request: an HTTP status and a body (``"ok"``, a text, or a JSON object)."""

    status: int
    body: str | dict[str, Any]

    @property
    def ok(self) -> bool:
        """True for a 2xx status."""
        return 200 <= self.status < 300


OK = Result(200, "ok")

# Nacos response codes carried inside beat answers.
CODE_OK = 10200
CODE_RESOURCE_NOT_FOUND = 20404
