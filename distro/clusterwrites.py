"""Writes of cluster data other than a service's own settings: cluster settings, namespaces, settings.

What ``PUT /nacos/v1/ns/cluster`` and the namespaces API (``/nacos/v1/console/namespaces``) mean on the node
that owns their key, with Nacos 1.4.2's answers: the namespace calls answer ``true`` or ``false`` (a taken
or malformed id at creation), never an error for an unknown namespace. Every change is an entry write
through the node's rule (:data:`distro.writes.Write`), so it replicates, and persists, like any other.
"""

from __future__ import annotations

from distro.clusterdata import (
    MAX_SETTING_TEXT,
    NAMESPACES_KEY,
    PUBLIC_NAMESPACE_ID,
    SETTINGS_KEY,
    ClusterMeta,
    NamespaceInfo,
    SettingText,
    cluster_entry_id,
    valid_custom_namespace_id,
    valid_setting_name,
)
from distro.config import DistroConfig
from distro.datum import EntryValue
from distro.errors import ValidationError
from distro.model import validate_cluster
from distro.requests import (
    OK,
    CreateNamespace,
    DeleteNamespace,
    PutSetting,
    Result,
    UpdateCluster,
    UpdateNamespace,
)
from distro.store import DatumStore
from distro.writes import Write

__all__ = ["FALSE", "TRUE", "ClusterDataRequest", "ClusterDataWrites", "namespaces", "settings"]

TRUE = Result(200, "true")
FALSE = Result(200, "false")

ClusterDataRequest = UpdateCluster | CreateNamespace | UpdateNamespace | DeleteNamespace | PutSetting


def namespaces(store: DatumStore) -> list[tuple[str, NamespaceInfo]]:
    """Every namespace created through the API, oldest first (then by id): ``(id, info)``."""
    found = [
        (entry_id, entry.value)
        for entry_id, entry in store.items(NAMESPACES_KEY)
        if isinstance(entry.value, NamespaceInfo)
    ]
    return sorted(found, key=lambda item: (item[1].created_ms, item[0]))


def settings(store: DatumStore) -> dict[str, str]:
    """Every registry-wide setting, by name."""
    return {
        entry_id: entry.value.text
        for entry_id, entry in store.items(SETTINGS_KEY)
        if isinstance(entry.value, SettingText)
    }


class ClusterDataWrites:
    """Applies cluster-settings and namespace requests to a node's store through the node's ``write``."""

    __slots__ = ("_config", "_store", "_write")

    def __init__(self, config: DistroConfig, store: DatumStore, write: Write) -> None:
        self._config = config
        self._store = store
        self._write = write

    def apply(self, request: ClusterDataRequest, now_ms: int) -> Result:
        """Apply one request here; a refusal comes back as its 4xx :class:`Result`."""
        try:
            return self._apply(request, now_ms)
        except ValidationError as exc:
            return Result(exc.status, exc.message)

    def _apply(self, request: ClusterDataRequest, now_ms: int) -> Result:
        if isinstance(request, UpdateCluster):
            return self._update_cluster(request, now_ms)
        if isinstance(request, CreateNamespace):
            return self._create_namespace(request, now_ms)
        if isinstance(request, PutSetting):
            return self._put_setting(request, now_ms)
        if isinstance(request, UpdateNamespace):
            current = self._namespace(request.namespace_id)
            if current is not None:
                updated = NamespaceInfo(request.name, request.desc, current.created_ms)
                if updated != current:
                    self._put(request.namespace_id, updated, now_ms)
            return TRUE
        if self._namespace(request.namespace_id) is not None:
            self._put(request.namespace_id, None, now_ms)
        return TRUE

    # -- clusters --------------------------------------------------------------------------------
    def _update_cluster(self, request: UpdateCluster, now_ms: int) -> Result:
        key = request.key
        store = self._store
        if not store.service_exists(key):
            raise ValidationError(f"service not found:{key.grouped_name}")
        entry_id = cluster_entry_id(validate_cluster(request.cluster))
        entry = store.entry(key, entry_id)
        current = entry.value if entry is not None and isinstance(entry.value, ClusterMeta) else None
        base = current or ClusterMeta()
        updated = ClusterMeta(
            base.check_port if request.check_port is None else request.check_port,
            base.use_instance_port if request.use_instance_port is None else request.use_instance_port,
            base.health_checker if request.health_checker is None else request.health_checker,
            dict(request.metadata),
        )
        # Only the cluster's own entry is written, never the service's settings (``#meta``): a default
        # ``#meta`` written here, where the service's settings may not have arrived yet (a partition, a
        # forward that fell back), would be newer than the acknowledged settings and replace them everywhere.
        # A configured cluster keeps its service anyway: the cleaner spares it, and its entry is on disk.
        if updated != current:
            self._write(key, entry_id, updated, now_ms)
        return OK

    # -- settings --------------------------------------------------------------------------------
    def _put_setting(self, request: PutSetting, now_ms: int) -> Result:
        if not valid_setting_name(request.name):
            raise ValidationError(f"setting name {request.name[:128]!r} is illegal: [A-Za-z0-9_.:/-], 1 to 128")
        if request.text is not None and len(request.text) > MAX_SETTING_TEXT:
            raise ValidationError(f"setting {request.name} is too large: at most {MAX_SETTING_TEXT} characters")
        entry = self._store.entry(SETTINGS_KEY, request.name)
        current = entry.value if entry is not None and isinstance(entry.value, SettingText) else None
        wanted = None if request.text is None else SettingText(request.text)
        if wanted != current:
            self._write(SETTINGS_KEY, request.name, wanted, now_ms)
        return OK

    # -- namespaces ------------------------------------------------------------------------------
    def _namespace(self, namespace_id: str) -> NamespaceInfo | None:
        entry = self._store.entry(NAMESPACES_KEY, namespace_id)
        return entry.value if entry is not None and isinstance(entry.value, NamespaceInfo) else None

    def _create_namespace(self, request: CreateNamespace, now_ms: int) -> Result:
        namespace_id = request.namespace_id
        if namespace_id == PUBLIC_NAMESPACE_ID or not valid_custom_namespace_id(namespace_id):
            return FALSE
        if self._namespace(namespace_id) is not None:
            return FALSE
        limit = self._config.max_namespaces
        if len(namespaces(self._store)) >= limit:
            raise ValidationError(
                f"cannot create namespace {namespace_id}: this registry already holds {limit} namespaces, "
                "the most it may hold (max_namespaces)"
            )
        self._put(namespace_id, NamespaceInfo(request.name, request.desc, now_ms), now_ms)
        return TRUE

    def _put(self, namespace_id: str, value: EntryValue, now_ms: int) -> None:
        self._write(NAMESPACES_KEY, namespace_id, value, now_ms)
