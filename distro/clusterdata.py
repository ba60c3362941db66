"""Cluster data: namespaces, service settings and cluster settings, the registry's durable state.

Ephemeral instances live by their heartbeats and are kept in memory only. What an operator configures is
*cluster data*: it is replicated like every other entry (versioned, merged per entry, deleted by
tombstones, covered by digests and snapshots) and, on a node that has a data folder, kept on disk so that
a full restart keeps it (see :mod:`distro.durability`). Where it lives in the datum store:

    what                 key                               entry id            value
    namespace            NAMESPACES_KEY (reserved)         the namespace id    NamespaceInfo
    service settings     the service's key                 "#meta"             ServiceMeta (implicit=False)
    (implicit marker)    the service's key                 "#implicit"         ServiceMeta (implicit=True)
    cluster settings     the service's key                 "#cluster/<name>"   ClusterMeta
    registry setting     SETTINGS_KEY (reserved)           the setting's name  SettingText (e.g. switches)

The reserved keys are owned by hashing like any service key, so their writes go to their owner like any
other write. Clients cannot name them: their group is empty, which no API request can produce.

A service created by a registration gets an *implicit* marker (``ServiceMeta(implicit=True)`` under
``#implicit``): it keeps the service in existence after its last instance, until the empty-service cleaner
(:mod:`distro.cleaner`) removes it. The marker is not cluster data (nobody configured it) and is never
written to disk; it has an entry of its own so that a registration applied where the service's settings
have not arrived yet (a forward that fell back, a partition) can never replace those settings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from distro.errors import ValidationError
from distro.model import ServiceKey, ServiceMeta

__all__ = [
    "CLUSTER_ENTRY_PREFIX",
    "DEFAULT_CHECK_PORT",
    "HEALTH_CHECKER_TYPES",
    "IMPLICIT_ENTRY_ID",
    "MAX_CHECKER_FIELD",
    "MAX_NAMESPACE_DESC",
    "MAX_NAMESPACE_ID",
    "MAX_NAMESPACE_NAME",
    "MAX_SETTING_TEXT",
    "META_ENTRY_ID",
    "NAMESPACES_KEY",
    "PUBLIC_NAMESPACE_ID",
    "RESERVED_KEYS",
    "SETTINGS_KEY",
    "ClusterMeta",
    "HealthChecker",
    "NamespaceInfo",
    "SettingText",
    "cluster_entry_id",
    "cluster_name_of",
    "is_durable_slot",
    "is_durable_value",
    "is_reserved",
    "parse_health_checker",
    "valid_custom_namespace_id",
    "valid_setting_name",
    "validate_text",
]

NAMESPACES_KEY = ServiceKey("", "", "namespaces")
"""The reserved datum key holding every namespace (entry id = namespace id)."""
SETTINGS_KEY = ServiceKey("", "", "settings")
"""The reserved datum key holding registry-wide settings (entry id = setting name), e.g. the switches."""
RESERVED_KEYS: Mapping[str, ServiceKey] = {str(NAMESPACES_KEY): NAMESPACES_KEY, str(SETTINGS_KEY): SETTINGS_KEY}
"""Reserved keys by their string form (what the wire and the disk carry)."""
PUBLIC_NAMESPACE_ID = "public"
"""The default namespace of the naming API; the console calls it ``""``. It always exists and is not stored."""

META_ENTRY_ID = "#meta"
"""The entry id of a service's settings (``POST``/``PUT /service``)."""
IMPLICIT_ENTRY_ID = "#implicit"
"""The marker a registration writes into a service it creates (``ServiceMeta(implicit=True)``): it keeps the
service after its last instance until the empty-service cleaner removes it. Its own entry, so that it never
competes with settings someone configured (``#meta``) however the two writes race. Not cluster data."""
CLUSTER_ENTRY_PREFIX = "#cluster/"
DEFAULT_CHECK_PORT = 80
MAX_NAMESPACE_ID = 128  # Nacos's limit
MAX_NAMESPACE_NAME = 128  # Nacos's tenant_name column
MAX_NAMESPACE_DESC = 256  # Nacos's tenant_desc column
MAX_CHECKER_FIELD = 1024
MAX_SETTING_TEXT = 65_536
_SETTING_NAME_RE = re.compile(r"[A-Za-z0-9_.:/-]{1,128}")

_CUSTOM_ID_RE = re.compile(r"[A-Za-z0-9_-]+")  # Nacos: ^[\w-]+ (Java's \w is ASCII)

HEALTH_CHECKER_TYPES = ("TCP", "HTTP", "MYSQL", "NONE")


def is_reserved(key: ServiceKey) -> bool:
    """True for a key that holds cluster-wide data rather than a service."""
    return not key.group


def cluster_entry_id(cluster: str) -> str:
    """The entry id of a cluster's settings in its service's datum."""
    return CLUSTER_ENTRY_PREFIX + cluster


def cluster_name_of(entry_id: str) -> str | None:
    """The cluster name of a cluster-settings entry id, else None."""
    if entry_id.startswith(CLUSTER_ENTRY_PREFIX):
        return entry_id[len(CLUSTER_ENTRY_PREFIX) :]
    return None


@dataclass(frozen=True, slots=True)
class NamespaceInfo:
    """A namespace created through the namespaces API: its show name, description and creation time."""

    name: str
    desc: str = ""
    created_ms: int = 0


@dataclass(frozen=True, slots=True)
class SettingText:
    """A registry-wide setting: a text (JSON, typically) of at most ``MAX_SETTING_TEXT`` characters."""

    text: str


def valid_setting_name(name: str) -> bool:
    """Setting names: ``[A-Za-z0-9_.:/-]``, 1 to 128 characters."""
    return _SETTING_NAME_RE.fullmatch(name) is not None


@dataclass(frozen=True, slots=True)
class HealthChecker:
    """A cluster's health checker as Nacos 1.4.2 accepts it (``{"type": "TCP"}``, HTTP, MYSQL or NONE).

    Stored and shown, never run: Nacos probes only persistent instances with it, and every instance here
    is ephemeral (it lives by its heartbeats).
    """

    type: str = "TCP"
    path: str = ""
    headers: str = ""
    expected_response_code: int = 200
    user: str = ""
    pwd: str = ""
    cmd: str = ""

    def to_json(self) -> dict[str, Any]:
        """Nacos's JSON form: the type and only that type's fields."""
        if self.type == "HTTP":
            return {
                "type": "HTTP",
                "path": self.path,
                "headers": self.headers,
                "expectedResponseCode": self.expected_response_code,
            }
        if self.type == "MYSQL":
            return {"type": "MYSQL", "user": self.user, "pwd": self.pwd, "cmd": self.cmd}
        return {"type": self.type}


@dataclass(frozen=True, slots=True)
class ClusterMeta:
    """A cluster's settings (``PUT /nacos/v1/ns/cluster``): check port, instance-port flag, checker, metadata."""

    check_port: int = DEFAULT_CHECK_PORT
    use_instance_port: bool = True
    health_checker: HealthChecker = field(default_factory=HealthChecker)
    metadata: Mapping[str, str] = field(default_factory=dict)


def parse_health_checker(raw: str) -> HealthChecker:
    """A checker from its JSON text, as Nacos reads it: unknown fields are ignored, a missing type is NONE."""
    try:
        parsed: Any = json.loads(raw)
    except (ValueError, RecursionError):
        raise ValidationError(f"Param 'healthChecker' is illegal, it must be a JSON object: {raw[:200]}") from None
    if not isinstance(parsed, dict):
        raise ValidationError("Param 'healthChecker' is illegal, it must be a JSON object")
    kind = parsed.get("type", "NONE")
    if kind not in HEALTH_CHECKER_TYPES:
        raise ValidationError(
            f"Param 'healthChecker' is illegal, its type must be one of {', '.join(HEALTH_CHECKER_TYPES)}"
        )
    texts = {name: _checker_text(parsed, name) for name in ("path", "headers", "user", "pwd", "cmd")}
    code = parsed.get("expectedResponseCode", 200)
    if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 999:
        raise ValidationError("Param 'healthChecker' is illegal, expectedResponseCode must be an HTTP status")
    if kind == "HTTP":
        return HealthChecker("HTTP", texts["path"], texts["headers"], code)
    if kind == "MYSQL":
        return HealthChecker("MYSQL", user=texts["user"], pwd=texts["pwd"], cmd=texts["cmd"])
    return HealthChecker(kind)


def _checker_text(parsed: Mapping[str, Any], name: str) -> str:
    value = parsed.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValidationError(f"Param 'healthChecker' is illegal, {name} must be a string")
    if len(value) > MAX_CHECKER_FIELD:
        raise ValidationError(f"Param 'healthChecker' is illegal, {name} is longer than {MAX_CHECKER_FIELD}")
    return validate_text("healthChecker", value, MAX_CHECKER_FIELD)


def valid_custom_namespace_id(namespace_id: str) -> bool:
    """Whether a namespace id given at creation passes Nacos's check (``^[\\w-]+``, at most 128)."""
    return len(namespace_id) <= MAX_NAMESPACE_ID and _CUSTOM_ID_RE.fullmatch(namespace_id) is not None


def validate_text(param: str, value: str, limit: int) -> str:
    """A bounded text parameter (a namespace's show name, a checker's path...) that is valid Unicode."""
    if len(value) > limit:
        raise ValidationError(f"Param '{param}' is too long: at most {limit} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"Param '{param}' is not valid Unicode") from None
    return value


def is_durable_slot(key: ServiceKey, entry_id: str) -> bool:
    """Whether an entry id holds cluster data: a namespace or registry setting (the reserved keys), service
    settings or cluster settings. Not instances, nor the implicit marker."""
    return is_reserved(key) or (entry_id.startswith("#") and entry_id != IMPLICIT_ENTRY_ID)


def is_durable_value(value: object) -> bool:
    """Whether a value is cluster data that a node keeps on disk (not an instance, an implicit marker or None)."""
    if isinstance(value, ServiceMeta):
        return not value.implicit
    return isinstance(value, ClusterMeta | NamespaceInfo | SettingText)
