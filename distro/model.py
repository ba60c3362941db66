"""The registry's data model: service keys, instances and service metadata, with Nacos's validation.

Everything here is a plain value. Validation raises :class:`ValidationError` carrying the text Nacos
answers with (see docs/api.md), so the HTTP layer can return it unchanged as a 400.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import FrozenInstanceError, dataclass, field
from hashlib import blake2b
from typing import Any, NamedTuple

from distro.errors import ValidationError  # defined in distro.errors, re-exported here (see __all__)
from distro.sharing import EMPTY_METADATA, share_metadata, share_port, share_str, share_weight

__all__ = [
    "DEFAULT_CLUSTER",
    "DEFAULT_GROUP",
    "DEFAULT_NAMESPACE",
    "GROUP_SEPARATOR",
    "MAX_NAME_LENGTH",
    "MAX_WEIGHT",
    "META_BEAT_INTERVAL",
    "META_BEAT_TIMEOUT",
    "META_DELETE_TIMEOUT",
    "META_ID_GENERATOR",
    "NAMESPACE_SEPARATOR",
    "Instance",
    "ServiceKey",
    "ServiceMeta",
    "ValidationError",
    "instance_entry_id",
    "instances_from_columns",
    "make_instance",
    "parse_metadata",
    "service_key",
    "validate_cluster",
    "validate_ip",
    "validate_namespace",
    "validate_port",
    "validate_protect_threshold",
    "validate_weight",
]

DEFAULT_NAMESPACE = "public"
DEFAULT_GROUP = "DEFAULT_GROUP"
DEFAULT_CLUSTER = "DEFAULT"
GROUP_SEPARATOR = "@@"
NAMESPACE_SEPARATOR = "##"

# Nacos metadata keys that change an instance's timings (values must be all digits).
META_BEAT_INTERVAL = "preserved.heart.beat.interval"
META_BEAT_TIMEOUT = "preserved.heart.beat.timeout"
META_DELETE_TIMEOUT = "preserved.ip.delete.timeout"
META_ID_GENERATOR = "preserved.instance.id.generator"
# The range a client may set the two expiry timings to (a silent instance must not live for ever).
TIMING_RANGE_MS: dict[str, tuple[int, int]] = {
    META_BEAT_TIMEOUT: (1_000, 3_600_000),
    META_DELETE_TIMEOUT: (1_000, 3_600_000),
}

_SERVICE_NAME_RE = re.compile(r"[0-9a-zA-Z@.:_-]+")
_CLUSTER_NAME_RE = re.compile(r"[0-9a-zA-Z-]+")
_NAMESPACE_RE = re.compile(r"[0-9a-zA-Z_.:-]+")
_IPV4_CHARS_RE = re.compile(r"[0-9.]+")
_OCTET = r"(?:[01]?[0-9]?[0-9]|2[0-4][0-9]|25[0-5])"  # 1-3 digits (leading zeros allowed), at most 255
_IPV4_RE = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}")
_HOST_RE = re.compile(r"[0-9a-zA-Z.:_%\[\]-]+")
_DIGITS_RE = re.compile(r"\d+")

MAX_NAME_LENGTH = 256
MAX_WEIGHT = 10000.0


class ServiceKey(NamedTuple):
    """Identifies a service: namespace, group and bare service name. ``str()`` gives ``ns##group@@name``.

    A named tuple (it was a frozen dataclass): every write looks its key up in a dozen dicts on every node
    (store, notifier, replication, health clocks, catalog, push), and a tuple's hash and equality run in C,
    where the dataclass's generated ``__hash__`` built a tuple in Python on every call (about 530 -> 200 ns
    per dict look-up with an equal key; scripts/bench --quick --only register, docs/benchmarks.md). Keys
    compare and sort field by field, as the dataclass did (``order=True``). Keys are never mixed with plain
    tuples: one equal to a 3-tuple of strings is a caller's mistake.
    """

    namespace: str
    group: str
    service: str

    @property
    def grouped_name(self) -> str:
        """``group@@service``, the name Nacos keys everything by."""
        return f"{self.group}{GROUP_SEPARATOR}{self.service}"

    def __str__(self) -> str:
        return f"{self.namespace}{NAMESPACE_SEPARATOR}{self.group}{GROUP_SEPARATOR}{self.service}"

    @classmethod
    def parse(cls, text: str) -> ServiceKey:
        """Inverse of ``str()``."""
        namespace, sep, grouped = text.partition(NAMESPACE_SEPARATOR)
        group, sep2, service = grouped.partition(GROUP_SEPARATOR)
        if not sep or not sep2:
            raise ValidationError(f"bad service key: {text}")
        return cls(namespace, group, service)


def service_key(namespace: str | None, group: str | None, service_name: str) -> ServiceKey:
    """Build a validated key from API parameters; ``service_name`` may already be ``group@@name``."""
    namespace = validate_namespace(namespace or DEFAULT_NAMESPACE)
    if not service_name:
        raise ValidationError("Param 'serviceName' is required.")
    if len(service_name) > MAX_NAME_LENGTH:
        raise ValidationError(f"Param 'serviceName' is too long: at most {MAX_NAME_LENGTH} characters")
    if GROUP_SEPARATOR in service_name:
        parts = service_name.split(GROUP_SEPARATOR)
        if len(parts) != 2 or not parts[1]:
            raise ValidationError(
                "Param 'serviceName' is illegal, it should be format as 'groupName@@serviceName'"
            )
        if not parts[0]:
            raise ValidationError("Param 'serviceName' is illegal, groupName can't be empty")
        group_part, bare = parts
    else:
        group_part, bare = (group or DEFAULT_GROUP), service_name
    if GROUP_SEPARATOR in group_part or not group_part:
        raise ValidationError("Param 'groupName' is illegal")
    # "g@" + "@@" + "s" and "g" + "@@" + "@s" would both be "g@@@s": keep group@@service unambiguous
    if group_part.endswith("@"):
        raise ValidationError("Param 'groupName' is illegal, it can't end with '@'")
    if bare.startswith("@"):
        raise ValidationError("Param 'serviceName' is illegal, it can't start with '@'")
    grouped = f"{group_part}{GROUP_SEPARATOR}{bare}"
    if len(grouped) > MAX_NAME_LENGTH:
        raise ValidationError(
            f"Param 'serviceName' is too long: groupName@@serviceName has at most {MAX_NAME_LENGTH} characters"
        )
    if not _SERVICE_NAME_RE.fullmatch(grouped):
        raise ValidationError(f"dom name can only have these characters: 0-9a-zA-Z-._:, current: {grouped}")
    return ServiceKey(namespace, group_part, bare)


def validate_namespace(namespace: str) -> str:
    """Namespace ids: Nacos accepts any id; we keep ids printable and bounded."""
    if len(namespace) > 128 or not _NAMESPACE_RE.fullmatch(namespace):
        raise ValidationError(
            f"Param 'namespaceId' is illegal, it can only have these characters: 0-9a-zA-Z-._: "
            f"(at most 128), current: {namespace[:128]}"
        )
    return namespace


def validate_cluster(name: str) -> str:
    """Cluster names follow Nacos: ``[0-9a-zA-Z-]+``."""
    if not name or len(name) > MAX_NAME_LENGTH or not _CLUSTER_NAME_RE.fullmatch(name):
        raise ValidationError(f"cluster name can only have these characters: 0-9a-zA-Z-, current: {name}")
    return name


def validate_ip(ip: str) -> str:
    """An IPv4 address (checked strictly, as Nacos does) or a host name / IPv6 literal."""
    if not ip:
        raise ValidationError("Param 'ip' is required.")
    if len(ip) > 253:
        raise ValidationError("instance format invalid: Your IP address is spelled incorrectly")
    if _IPV4_CHARS_RE.fullmatch(ip):
        if not _IPV4_RE.fullmatch(ip):  # four dotted octets of 1-3 digits, each at most 255
            raise ValidationError("instance format invalid: Your IP address is spelled incorrectly")
    elif not _HOST_RE.fullmatch(ip):
        raise ValidationError("instance format invalid: Your IP address is spelled incorrectly")
    return ip


def validate_port(port: int) -> int:
    """Ports are 0..65535 (Nacos treats 0 as a wildcard; we store it as given)."""
    if not 0 <= port <= 65535:
        raise ValidationError(f"Param 'port' is illegal, it must be an integer in [0, 65535], current: {port}")
    return port


def validate_weight(weight: float) -> float:
    """Weights range over 0..10000 (Nacos's text)."""
    if math.isnan(weight) or not 0.0 <= weight <= MAX_WEIGHT:
        raise ValidationError("instance format invalid: The weights range from 0.0 to 10000.0")
    if 0.0 < weight < 0.01:
        return 0.01
    return weight


def parse_metadata(raw: str, *, max_keys: int = 64, max_bytes: int = 4096) -> dict[str, str]:
    """Metadata as Nacos accepts it: a JSON object, or ``k1=v1,k2=v2``. Bounded in keys and bytes."""
    raw = raw.strip()
    if not raw:
        return {}
    if len(raw.encode("utf-8", "replace")) > max_bytes:
        raise ValidationError(f"metadata is too large: at most {max_bytes} bytes")
    result: dict[str, str] = {}
    if raw.startswith("{"):
        try:
            parsed: Any = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the interpreter allows
            raise ValidationError(f"metadata format incorrect:{raw}") from None
        if not isinstance(parsed, dict):
            raise ValidationError(f"metadata format incorrect:{raw}")
        return validate_metadata(parsed, max_keys=max_keys, max_bytes=max_bytes, raw=raw)
    else:
        for item in raw.split(","):
            if not item.strip():
                continue
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ValidationError(f"metadata format incorrect:{raw}")
            result[key.strip()] = value.strip()
    if len(result) > max_keys:
        raise ValidationError(f"metadata has too many keys: at most {max_keys}")
    return result


def validate_metadata(
    parsed: Mapping[str, Any], *, max_keys: int = 64, max_bytes: int = 4096, raw: str | None = None
) -> dict[str, str]:
    """Metadata given as a JSON object (already decoded): scalar values as strings, nulls dropped.

    Bounded in keys and (encoded) bytes; a nested value is refused. ``raw`` is the text the client sent,
    quoted in the error when there is one.
    """
    result: dict[str, str] = {}
    size = 0
    for key, value in parsed.items():
        if isinstance(value, dict | list):
            shown = raw if raw is not None else json.dumps(parsed, ensure_ascii=False, default=str)[:512]
            raise ValidationError(f"metadata format incorrect:{shown}")
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        key, value = str(key), str(value)
        if _has_lone_surrogate(key) or _has_lone_surrogate(value):  # only JSON escapes can make one
            raise ValidationError(
                "metadata format incorrect: a key or value is not valid Unicode (a lone UTF-16 surrogate escape)"
            )
        size += len(key.encode()) + len(value.encode())
        if size > max_bytes:
            raise ValidationError(f"metadata is too large: at most {max_bytes} bytes")
        result[key] = value
        if len(result) > max_keys:
            raise ValidationError(f"metadata has too many keys: at most {max_keys}")
    return result


def _has_lone_surrogate(text: str) -> bool:
    """Whether ``text`` holds a code point that UTF-8 cannot carry (``json.loads`` lets ``"\\ud800"`` through)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _timing(metadata: Mapping[str, str], key: str, default: int) -> int:
    value = metadata.get(key)
    if value is None or not value.isascii() or not _DIGITS_RE.fullmatch(value) or len(value) > 12:
        return default
    bounds = TIMING_RANGE_MS.get(key)
    if bounds is None:
        return int(value)
    return min(max(int(value), bounds[0]), bounds[1])  # clamped: entries replicated by an older node


def validate_timing_metadata(metadata: Mapping[str, str]) -> None:
    """Refuse expiry timings outside :data:`TIMING_RANGE_MS` (a 400 that says the range).

    As in Nacos, a value that is not all digits is ignored (the default applies); digits out of range
    are refused rather than clamped, so that the client learns its setting has no effect.
    """
    for key, (low, high) in TIMING_RANGE_MS.items():
        value = metadata.get(key)
        if value is None or not value.isascii() or not _DIGITS_RE.fullmatch(value):
            continue
        if not low <= int(value) <= high:
            raise ValidationError(
                f"metadata {key} must be a whole number of milliseconds in {low}..{high}, got {value[:20]}"
            )


class Instance:
    """One registered instance. Identified by ``ip:port`` within its cluster (see :attr:`entry_id`).

    An immutable value, built as ``Instance(ip, port, cluster, weight, healthy, enabled, metadata,
    connection, assigned_id)`` and copied with changes by :meth:`replace`. It keeps its entry id
    (``cluster/ip:port``, the key of its entry in the datum, the same string object) instead of a separate
    ``ip`` string: a node holds every instance of the cluster, and the ip was a second copy of part of the
    id (about 60 bytes per instance). :attr:`ip` is read back out of the id.
    """

    __slots__ = (
        "_digest",
        "assigned_id",
        "cluster",
        "connection",
        "enabled",
        "entry_id",
        "healthy",
        "metadata",
        "orphaned_ms",
        "port",
        "weight",
    )
    entry_id: str
    """The identity of this instance inside its service's datum: ``cluster/ip:port``."""
    port: int
    cluster: str
    weight: float
    healthy: bool
    enabled: bool
    metadata: Mapping[str, str]
    """Read-only in use; instances with equal metadata share one mapping (distro/sharing.py)."""
    connection: str
    """The gRPC connection this instance lives by ("" for an instance that lives by heartbeats): set by the
    node holding the connection (distro/connections.py), replicated with the entry, never shown to clients."""
    assigned_id: str
    """The instance id its owner assigned when metadata asked for another generator than ``simple``
    (``preserved.instance.id.generator=snowflake``); "" for the simple id. Kept when the instance is
    registered again, replicated with the entry."""
    orphaned_ms: int
    """When its owner found this gRPC-bound instance an orphan (its holder seen down, docs/protocol.md
    "Orphaned connections"): its expiry counts from here on every owner; 0 while its holder is (believed)
    alive. Replicated with the entry, never shown to clients, outside the checksum."""
    _digest: bytes | None
    # What this instance adds to its service's checksum (:meth:`checksum_digest`), made on first use and
    # kept: instances are immutable, so a view change re-hashes only the instances that changed. 8 bytes of
    # slot for every instance, plus a 16-byte digest (49 bytes) once its service's checksum is asked for.

    def __init__(
        self,
        ip: str,
        port: int,
        cluster: str = DEFAULT_CLUSTER,
        weight: float = 1.0,
        healthy: bool = True,
        enabled: bool = True,
        metadata: Mapping[str, str] = EMPTY_METADATA,
        connection: str = "",
        assigned_id: str = "",
        orphaned_ms: int = 0,
        *,
        entry_id: str | None = None,
    ) -> None:
        """``entry_id``, when given, must be ``instance_entry_id(cluster, ip, port)`` (a caller that holds
        that string already, such as the codec, passes it so that the instance and its datum share it)."""
        init = object.__setattr__
        init(self, "entry_id", instance_entry_id(cluster, ip, port) if entry_id is None else entry_id)
        init(self, "port", port)
        init(self, "cluster", cluster)
        init(self, "weight", weight)
        init(self, "healthy", healthy)
        init(self, "enabled", enabled)
        init(self, "metadata", metadata)
        init(self, "connection", connection)
        init(self, "assigned_id", assigned_id)
        init(self, "orphaned_ms", orphaned_ms)
        init(self, "_digest", None)

    @property
    def ip(self) -> str:
        """The address: the part of :attr:`entry_id` between ``cluster/`` and ``:port``."""
        entry_id = self.entry_id
        return entry_id[len(self.cluster) + 1 : entry_id.rindex(":")]

    def replace(self, **changes: Any) -> Instance:
        """A copy with the given fields changed (``ip``, ``port``, ``cluster``, ``weight``, ``healthy``,
        ``enabled``, ``metadata``, ``connection``, ``assigned_id``, ``orphaned_ms``), like :func:`dataclasses.replace`."""
        unknown = changes.keys() - _INSTANCE_FIELDS
        if unknown:
            raise TypeError(f"Instance has no field {sorted(unknown)[0]!r}")
        same_id = not changes.keys() & {"ip", "port", "cluster"}
        return Instance(
            changes.get("ip", self.ip) if not same_id else "",
            changes.get("port", self.port),
            changes.get("cluster", self.cluster),
            changes.get("weight", self.weight),
            changes.get("healthy", self.healthy),
            changes.get("enabled", self.enabled),
            changes.get("metadata", self.metadata),
            changes.get("connection", self.connection),
            changes.get("assigned_id", self.assigned_id),
            changes.get("orphaned_ms", self.orphaned_ms),
            entry_id=self.entry_id if same_id else None,
        )

    def _fields(self) -> tuple[Any, ...]:
        return (
            self.entry_id, self.weight, self.healthy, self.enabled, self.metadata, self.connection,
            self.assigned_id, self.orphaned_ms,
        )

    def __eq__(self, other: object) -> bool:
        if type(other) is not Instance:
            return NotImplemented
        return self is other or self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # unhashable, as the dataclass was (its metadata is a mapping)

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __repr__(self) -> str:
        return (
            f"Instance(ip={self.ip!r}, port={self.port!r}, cluster={self.cluster!r}, weight={self.weight!r}, "
            f"healthy={self.healthy!r}, enabled={self.enabled!r}, metadata={dict(self.metadata)!r}, "
            f"connection={self.connection!r}, assigned_id={self.assigned_id!r}, orphaned_ms={self.orphaned_ms!r})"
        )

    def checksum_digest(self) -> bytes:
        """A 16-byte hash of everything a client sees of this instance (the same on every node)."""
        digest = self._digest
        if digest is None:
            meta = ",".join(f"{k}:{v}" for k, v in sorted(self.metadata.items()))
            line = f"{self.cluster}/{self.ip}:{self.port}_{self.weight!r}_{self.healthy}_{self.enabled}_{meta}"
            digest = blake2b(line.encode("utf-8", "surrogatepass"), digest_size=16).digest()
            object.__setattr__(self, "_digest", digest)
        return digest

    def instance_id(self, key: ServiceKey) -> str:
        """The assigned id (``snowflake``), else Nacos's ``simple`` id: ``ip#port#cluster#group@@service``."""
        if self.assigned_id:
            return self.assigned_id
        return f"{self.ip}#{self.port}#{self.cluster}#{key.grouped_name}"

    @property
    def id_generator(self) -> str:
        """``preserved.instance.id.generator`` (``simple`` when absent), as Nacos shows it."""
        return self.metadata.get(META_ID_GENERATOR, "simple")

    @property
    def wants_snowflake_id(self) -> bool:
        """Whether the metadata asks for Nacos's ``snowflake`` generator (any case)."""
        return self.id_generator.lower() == "snowflake"

    def beat_interval_ms(self, default: int) -> int:
        """Client beat interval, overridable by ``preserved.heart.beat.interval``."""
        return _timing(self.metadata, META_BEAT_INTERVAL, default)

    def heartbeat_timeout_ms(self, default: int) -> int:
        """Unhealthy after this long without a beat; ``preserved.heart.beat.timeout`` overrides."""
        return _timing(self.metadata, META_BEAT_TIMEOUT, default)

    def expire_ms(self, default: int) -> int:
        """Deleted after this long without a beat; ``preserved.ip.delete.timeout`` overrides."""
        return _timing(self.metadata, META_DELETE_TIMEOUT, default)

    def with_health(self, healthy: bool) -> Instance:
        """A copy with another health flag."""
        return self.replace(healthy=healthy)


_INSTANCE_FIELDS = frozenset(
    {"ip", "port", "cluster", "weight", "healthy", "enabled", "metadata", "connection", "assigned_id", "orphaned_ms"}
)


def instance_entry_id(cluster: str, ip: str, port: int) -> str:
    """``cluster/ip:port``; cluster names cannot contain ``/`` so this is unambiguous."""
    return f"{cluster}/{ip}:{port}"


class _InstanceBuilder:
    """An :class:`Instance` being built in bulk: the same slots without the immutability guard, so its
    ``__init__`` fills them with plain attribute stores (CPython's quickest way into a slot, where
    ``object.__setattr__`` or a slot's ``__set__`` costs a call each), and its last store makes it an
    ``Instance`` (``__class__`` may change between classes of the same layout: same base, same slots)."""

    __slots__ = Instance.__slots__

    def __init__(self, entry_id: str, port: int, cluster: str, weight: float, healthy: bool, enabled: bool,
                 metadata: Mapping[str, str]) -> None:
        self.entry_id = entry_id
        self.port = port
        self.cluster = cluster
        self.weight = weight
        self.healthy = healthy
        self.enabled = enabled
        self.metadata = metadata
        self.connection = ""
        self.assigned_id = ""
        self.orphaned_ms = 0
        self._digest = None
        self.__class__ = Instance  # type: ignore[assignment]


def instances_from_columns(
    entry_ids: Sequence[str],
    ports: Sequence[int],
    clusters: Sequence[str],
    weights: Sequence[float],
    healthy: Sequence[bool],
    enabled: Sequence[bool],
    metadata: Sequence[Mapping[str, str]],
) -> list[Instance]:
    """Instances built in bulk from columns (a snapshot's instance blocks, :mod:`distro.codec`): equal to
    ``Instance(ip, port, cluster, weight, healthy, enabled, metadata, entry_id=entry_id)`` for each row, with
    no connection, assigned id or orphan mark. About 5 times cheaper per instance (plain slot stores in a
    builder that becomes an ``Instance``, rather than ``object.__setattr__`` by name), which is most of what
    loading a million-entry snapshot costs. No checks but the columns' lengths: the caller validated every
    column, and each ``entry_ids[i]`` is ``instance_entry_id(clusters[i], ip, ports[i])``."""
    n = len(entry_ids)
    if not n == len(ports) == len(clusters) == len(weights) == len(healthy) == len(enabled) == len(metadata):
        raise ValueError("instances_from_columns: columns of different lengths")
    built: list[Instance] = list(map(_InstanceBuilder, entry_ids, ports, clusters, weights, healthy,  # type: ignore[arg-type]
                                     enabled, metadata))
    return built


def make_instance(
    ip: str,
    port: int,
    *,
    cluster: str = DEFAULT_CLUSTER,
    weight: float = 1.0,
    healthy: bool = True,
    enabled: bool = True,
    metadata: Mapping[str, str] | None = None,
) -> Instance:
    """Build a validated instance (its repeated values shared with other instances: distro/sharing.py)."""
    if metadata:
        validate_timing_metadata(metadata)
    return Instance(
        ip=validate_ip(ip.strip()),
        port=share_port(validate_port(port)),
        cluster=share_str(validate_cluster(cluster)),
        weight=share_weight(validate_weight(weight)),
        healthy=healthy,
        enabled=enabled,
        metadata=share_metadata(metadata or EMPTY_METADATA),
    )


@dataclass(frozen=True, slots=True)
class ServiceMeta:
    """Service-level settings (``POST /nacos/v1/ns/service``): protect threshold, metadata, selector.

    ``implicit`` marks the marker a registration writes into a service it creates (stored under its own entry
    id, ``#implicit``, never ``#meta``): it keeps the service after its last instance until the empty-service
    cleaner removes it, and it is never written to disk (see :mod:`distro.clusterdata`).
    """

    protect_threshold: float = 0.0
    metadata: Mapping[str, str] = field(default_factory=dict)
    selector_type: str = "none"
    implicit: bool = False


def validate_protect_threshold(value: float) -> float:
    """Protect thresholds are ratios in [0, 1]."""
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValidationError("Param 'protectThreshold' is illegal, it must be a number in [0, 1]")
    return value
