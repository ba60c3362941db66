"""Nacos gRPC requests parsed, in one pass, into typed calls that carry the core's validated values.

A Payload's ``type`` names the request (a Java class's simple name) and its body is the request as JSON.
:func:`parse_call` turns the pair into one of the frozen dataclasses below, validating every value with the
same rules the v1 HTTP API uses (:mod:`distro.model`: service names, ip, port, weight, cluster names,
metadata). A bad request raises :class:`CallError`, whose ``code`` and ``message`` go back to the client in
an ``ErrorResponse`` (Nacos answers handler failures that way).

Leniency, for the clients that differ (docs/grpc.md): unknown fields are ignored; ``healthOnly`` is read as
``healthyOnly`` (nacos-sdk-python 3.x); an empty ``module``, ``requestId``, ``namespace``, ``groupName`` or
``clusterName`` means the default; a JSON ``null`` is the same as an absent field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from distro.model import (
    DEFAULT_CLUSTER,
    DEFAULT_GROUP,
    Instance,
    ServiceKey,
    ValidationError,
    make_instance,
    service_key,
    validate_cluster,
    validate_metadata,
    validate_namespace,
)

# Nacos's error codes (com.alibaba.nacos.api.exception.NacosException and ResponseCode).
CODE_INVALID_PARAM = 400
CODE_NO_RIGHT = 403
CODE_SERVER_ERROR = 500
CODE_INVALID_SERVER_STATUS = 300
CODE_UNREGISTERED = 301
CODE_NO_HANDLER = 302

PERSISTENT_REFUSED = (
    "persistent instances are not supported: this registry keeps ephemeral instances only "
    "(an instance registered over gRPC lives as long as its connection); register with ephemeral=true"
)
MAX_BATCH_INSTANCES = 1000
MAX_PAGE_SIZE = 10_000


class CallError(Exception):
    """A request that cannot be served: ``code`` (Nacos's errorCode) and the message for the client."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class ServerCheck:
    """``ServerCheckRequest``: the first call on a channel; answered with the connection id."""

    request_id: str


@dataclass(frozen=True, slots=True)
class ConnectionSetup:
    """``ConnectionSetupRequest`` on the bi-stream: the connection is registered from now on."""

    request_id: str
    client_version: str
    tenant: str
    labels: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """``HealthCheckRequest``: the client's keep-alive."""

    request_id: str


@dataclass(frozen=True, slots=True)
class InstanceCall:
    """``InstanceRequest``: register (or replace) or deregister one instance of this connection."""

    request_id: str
    register: bool
    key: ServiceKey
    instance: Instance


@dataclass(frozen=True, slots=True)
class BatchRegister:
    """``BatchInstanceRequest``: this connection's instances of one service become exactly these."""

    request_id: str
    key: ServiceKey
    instances: tuple[Instance, ...]


@dataclass(frozen=True, slots=True)
class ServiceQuery:
    """``ServiceQueryRequest``: read a service's instances."""

    request_id: str
    key: ServiceKey
    clusters: tuple[str, ...]
    healthy_only: bool


@dataclass(frozen=True, slots=True)
class Subscribe:
    """``SubscribeServiceRequest``: start (``subscribe``) or stop pushes of a service to this connection."""

    request_id: str
    key: ServiceKey
    clusters: tuple[str, ...]
    subscribe: bool


@dataclass(frozen=True, slots=True)
class ServiceList:
    """``ServiceListRequest``: a page of service names of one namespace and group."""

    request_id: str
    namespace: str
    group: str
    page_no: int
    page_size: int


@dataclass(frozen=True, slots=True)
class ClientAnswer:
    """A client's response on the bi-stream to something the server sent (a push, a detection probe)."""

    request_id: str
    type: str


Call = (
    ServerCheck
    | ConnectionSetup
    | HealthCheck
    | InstanceCall
    | BatchRegister
    | ServiceQuery
    | Subscribe
    | ServiceList
    | ClientAnswer
)

# Response types a client sends back on the bi-stream (answers to the server's own requests).
CLIENT_ANSWERS = frozenset(
    {"NotifySubscriberResponse", "ClientDetectionResponse", "ConnectResetResponse", "SetupAckResponse"}
)

# The response type Nacos answers each request type with.
RESPONSE_TYPES = {
    "ServerCheckRequest": "ServerCheckResponse",
    "HealthCheckRequest": "HealthCheckResponse",
    "InstanceRequest": "InstanceResponse",
    "PersistentInstanceRequest": "InstanceResponse",
    "BatchInstanceRequest": "BatchInstanceResponse",
    "ServiceQueryRequest": "QueryServiceResponse",
    "SubscribeServiceRequest": "SubscribeServiceResponse",
    "ServiceListRequest": "ServiceListResponse",
}


# --------------------------------------------------------------------------------------------------
# JSON field readers (null == absent)
# --------------------------------------------------------------------------------------------------
def _text(body: Mapping[str, Any], name: str, default: str = "") -> str:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise ValidationError(f"Param '{name}' is illegal, it must be a string")


def _flag(body: Mapping[str, Any], name: str, default: bool) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValidationError(f"Param '{name}' is illegal, it must be true or false")


def _integer(body: Mapping[str, Any], name: str, default: int | None, low: int, high: int) -> int:
    value = body.get(name)
    if value is None:
        if default is None:
            raise ValidationError(f"Param '{name}' is required.")
        return default
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value) < 20:
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValidationError(f"Param '{name}' is illegal, it must be an integer in [{low}, {high}]")
    return value


def _number(body: Mapping[str, Any], name: str, default: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValidationError(f"Param '{name}' is illegal, it must be a number") from None
    if not isinstance(value, int | float) or isinstance(value, bool) or math.isinf(value):
        raise ValidationError(f"Param '{name}' is illegal, it must be a number")
    return float(value)


def _clusters(text: str) -> tuple[str, ...]:
    return tuple(validate_cluster(part.strip()) for part in text.split(",") if part.strip())


class _Memo:
    """Values already validated, by the raw JSON values they came from: a client registers the same instance
    in service after service, and calls the same services again and again, so each is validated once.
    Only successes are kept. Bounded: ``entries`` keys whose strings have at most ``MEMO_KEY_CHARS``
    characters together (anything longer is validated every time); emptied when full. At 1,024 entries of
    at most 512 characters (UCS-4 at worst) and their values, a memo holds at most about 3 MB."""

    __slots__ = ("entries", "values")

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self.values: dict[tuple[Any, ...], Any] = {}

    def put(self, key: tuple[Any, ...], value: Any) -> None:
        if len(self.values) >= self.entries:
            self.values.clear()
        self.values[key] = value


MEMO_KEY_CHARS = 512
_KEYS = _Memo(1024)  # (namespace, group, service) as sent -> ServiceKey
_INSTANCES = _Memo(1024)  # an instance without metadata, its fields as sent -> Instance


def _key(body: Mapping[str, Any]) -> ServiceKey:
    raw = (_text(body, "namespace"), _text(body, "groupName") or DEFAULT_GROUP, _text(body, "serviceName"))
    key: ServiceKey | None = _KEYS.values.get(raw)
    if key is None:
        key = service_key(*raw)
        if len(raw[0]) + len(raw[1]) + len(raw[2]) <= MEMO_KEY_CHARS:
            _KEYS.put(raw, key)
    return key


# --------------------------------------------------------------------------------------------------
# instances
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class InstanceLimits:
    """Bounds on an instance's metadata (the node's ``--metadata-max-*`` settings)."""

    metadata_max_keys: int = 64
    metadata_max_bytes: int = 4096


def _instance_memo_key(raw: dict[str, Any]) -> tuple[Any, ...] | None:
    """The memo key of an instance without metadata whose fields have exactly the JSON types that validate
    (so ``1`` never stands for ``true``, nor ``true`` for 1); None when it is not one."""
    ip, port, cluster = raw.get("ip"), raw.get("port"), raw.get("clusterName")
    weight, healthy, enabled, ephemeral = raw.get("weight"), raw.get("healthy"), raw.get("enabled"), raw.get("ephemeral")
    metadata = raw.get("metadata")
    if (
        not (metadata is None or (type(metadata) is dict and not metadata))
        or type(ip) is not str
        or type(port) is not int
        or not (cluster is None or type(cluster) is str)
        or not (weight is None or type(weight) is float or type(weight) is int)
        or not (healthy is None or type(healthy) is bool)
        or not (enabled is None or type(enabled) is bool)
        or not (ephemeral is None or type(ephemeral) is bool)
        or len(ip) + len(cluster or "") > MEMO_KEY_CHARS
    ):
        return None
    return (ip, port, cluster, weight, healthy, enabled, ephemeral)


def parse_instance(raw: Any, limits: InstanceLimits) -> Instance:
    """A Nacos ``Instance`` JSON object as a validated core :class:`~distro.model.Instance`."""
    if not isinstance(raw, dict):
        raise ValidationError("Param 'instance' is illegal, it must be a JSON object")
    memo_key = _instance_memo_key(raw)
    if memo_key is None:
        return _parse_instance(raw, limits)
    instance: Instance | None = _INSTANCES.values.get(memo_key)
    if instance is None:
        instance = _parse_instance(raw, limits)
        _INSTANCES.put(memo_key, instance)
    return instance


def _parse_instance(raw: Any, limits: InstanceLimits) -> Instance:
    if not isinstance(raw, dict):
        raise ValidationError("Param 'instance' is illegal, it must be a JSON object")
    if not _flag(raw, "ephemeral", True):
        raise ValidationError(PERSISTENT_REFUSED)
    metadata = raw.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise ValidationError("Param 'metadata' is illegal, it must be a JSON object")
    return make_instance(
        _text(raw, "ip"),
        _integer(raw, "port", None, 0, 65535),
        cluster=_text(raw, "clusterName") or DEFAULT_CLUSTER,
        weight=_number(raw, "weight", 1.0),
        healthy=_flag(raw, "healthy", True),
        enabled=_flag(raw, "enabled", True),
        metadata=validate_metadata(metadata, max_keys=limits.metadata_max_keys, max_bytes=limits.metadata_max_bytes)
        if metadata
        else {},
    )


# --------------------------------------------------------------------------------------------------
# one request
# --------------------------------------------------------------------------------------------------
def _parse_instance_request(body: Mapping[str, Any], request_id: str, limits: InstanceLimits) -> Call:
    key = _key(body)
    kind = _text(body, "type")
    if kind not in ("registerInstance", "deregisterInstance"):
        raise ValidationError(f"Param 'type' is illegal, it must be registerInstance or deregisterInstance: {kind[:64]}")
    return InstanceCall(request_id, kind == "registerInstance", key, parse_instance(body.get("instance"), limits))


def _parse_batch(body: Mapping[str, Any], request_id: str, limits: InstanceLimits) -> Call:
    key = _key(body)
    kind = _text(body, "type")
    if kind != "batchRegisterInstance":
        raise ValidationError(f"Param 'type' is illegal, it must be batchRegisterInstance: {kind[:64]}")
    raw = body.get("instances")
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise ValidationError("Param 'instances' is illegal, it must be a JSON array")
    if len(raw) > MAX_BATCH_INSTANCES:
        raise ValidationError(f"Param 'instances' is illegal: at most {MAX_BATCH_INSTANCES} instances")
    return BatchRegister(request_id, key, tuple(parse_instance(item, limits) for item in raw))


def _parse_labels(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        return {}
    return {str(k)[:256]: str(v)[:256] for k, v in list(raw.items())[:64] if v is not None}


def _parse_body(kind: str, body: Mapping[str, Any], request_id: str, limits: InstanceLimits) -> Call:
    if kind == "InstanceRequest":
        return _parse_instance_request(body, request_id, limits)
    if kind == "ServiceQueryRequest":
        healthy_only = _flag(body, "healthyOnly", _flag(body, "healthOnly", False))
        return ServiceQuery(request_id, _key(body), _clusters(_text(body, "cluster")), healthy_only)
    if kind == "SubscribeServiceRequest":
        return Subscribe(request_id, _key(body), _clusters(_text(body, "clusters")), _flag(body, "subscribe", True))
    if kind == "ServiceListRequest":
        namespace = validate_namespace(_text(body, "namespace") or "public")
        group = _text(body, "groupName") or DEFAULT_GROUP
        page_no = _integer(body, "pageNo", 1, 1, 2**31 - 1)
        page_size = _integer(body, "pageSize", 10, 1, MAX_PAGE_SIZE)
        return ServiceList(request_id, namespace, group, page_no, page_size)
    if kind == "BatchInstanceRequest":
        return _parse_batch(body, request_id, limits)
    if kind == "ConnectionSetupRequest":
        return ConnectionSetup(
            request_id, _text(body, "clientVersion")[:128], _text(body, "tenant")[:128], _parse_labels(body.get("labels"))
        )
    if kind == "ServerCheckRequest":
        return ServerCheck(request_id)
    if kind == "HealthCheckRequest":
        return HealthCheck(request_id)
    if kind in CLIENT_ANSWERS:
        return ClientAnswer(request_id, kind)
    if kind == "PersistentInstanceRequest":
        raise CallError(CODE_INVALID_PARAM, PERSISTENT_REFUSED)
    raise CallError(CODE_NO_HANDLER, f"RequestHandler Not Found: no handler for {kind[:128]!r}")


_JSON = json.JSONDecoder()


def _json_object(raw_body: bytes) -> Any:
    """``json.loads(raw_body)``; a body that starts as a JSON object does (UTF-8, as every Nacos client
    sends) skips ``json.loads``'s guess at the encoding (a few µs of every call)."""
    if raw_body[:1] == b"{":
        return _JSON.decode(raw_body.decode("utf-8", "surrogatepass"))
    return json.loads(raw_body)


def parse_call(kind: str, raw_body: bytes, limits: InstanceLimits | None = None) -> Call:
    """Parse one request (``kind`` = Payload type, ``raw_body`` = its JSON); raises :class:`CallError`."""
    if kind not in RESPONSE_TYPES and kind not in CLIENT_ANSWERS and kind != "ConnectionSetupRequest":
        raise CallError(CODE_NO_HANDLER, f"RequestHandler Not Found: no handler for {kind[:128]!r}")
    try:
        body: Any = _json_object(raw_body) if raw_body else {}
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise CallError(CODE_INVALID_PARAM, f"the body of a {kind} is not valid JSON") from None
    if not isinstance(body, dict):
        raise CallError(CODE_INVALID_PARAM, f"the body of a {kind} must be a JSON object")
    request_id = body.get("requestId")
    request_id = request_id[:64] if isinstance(request_id, str) else ""
    try:
        return _parse_body(kind, body, request_id, limits or InstanceLimits())
    except ValidationError as exc:
        raise CallError(CODE_INVALID_PARAM, exc.message) from None


__all__ = [
    "CLIENT_ANSWERS",
    "CODE_INVALID_PARAM",
    "CODE_INVALID_SERVER_STATUS",
    "CODE_NO_HANDLER",
    "CODE_NO_RIGHT",
    "CODE_SERVER_ERROR",
    "CODE_UNREGISTERED",
    "PERSISTENT_REFUSED",
    "RESPONSE_TYPES",
    "BatchRegister",
    "Call",
    "CallError",
    "ClientAnswer",
    "ConnectionSetup",
    "HealthCheck",
    "InstanceCall",
    "InstanceLimits",
    "ServerCheck",
    "ServiceList",
    "ServiceQuery",
    "Subscribe",
    "parse_call",
]
