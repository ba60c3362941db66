"""Wire codec for peer messages: :mod:`distro.messages` <-> plain Python structures.

Pure: no IO and no msgpack here. :func:`encode_message` turns a message into nested lists of ``str``,
``int``, ``float``, ``bool``, ``None`` and ``dict[str, ...]``; the runtime packs that with
``msgpack.packb(..., use_bin_type=True)`` and unpacks with ``msgpack.unpackb(..., raw=False)``.

Layout (compact: a type tag and positional fields, never field names)::

    ["ping", ready, address (, started_ms)]           started_ms: absent from older nodes (0)
    ["fwd", request_id, request]
    ["fwdr", request_id, status, body]                 body: str | {str: str|int|float|bool}
    ["sync", items]
    ["digest", [[key, digest], ...], low, high]        low/high: str | None
    ["repair", items, [key, ...]]
    ["snapreq"]
    ["snap", ready, snapshot_id, seq, total, items (, [block, ...])]   blocks: only when the chunk has any
    ["subq", query_id, key]
    ["subr", query_id, [[addr, agent, app, ip, port, clusters, protocol], ...]]
    ["conq", query_id, key | None]
    ["conr", query_id, version, started_ms, now_ms, [[entry_id, last_beat_ms], ...]]
    ["renew", [[key, entry_id, connection], ...]]
    ["renewr", [[key, entry_id, connection], ...], [[key, entry_id, connection, version_ms], ...]]   missing, taken

    item     = [key, entry_id, ms, counter, node, value]
    value    = None (tombstone)
             | ["i", ip, port, cluster, weight, healthy, enabled, metadata (, connection (, assigned id
                                                                                    (, orphaned ms)))]
                                                       connection only when the instance has one (or an
                                                       assigned id, the snowflake generator's, follows;
                                                       orphaned ms only when its owner found it orphaned)
             | ["m", protect_threshold, metadata, selector_type, implicit]   (under "#meta" or "#implicit")
             | ["c", check_port, use_instance_port, checker, metadata]       (under "#cluster/<name>")
             | ["n", name, desc, created_ms]                                 (a namespace, reserved key)
             | ["s", text]                                                   (a registry setting, reserved key)
    block    = [key, ips, ports, clusters, weights, healthy, enabled, metadata_index, metadata_table, ms,
                counters, nodes, extras (, digest)]   one column per field; extras = [[i, connection,
                                                       assigned_id, orphaned_ms], ...]; digest (uint64, the
                                                       XOR of the entries' hashes) when the sender gave it
    checker  = [type, path, headers, expected_response_code, user, pwd, cmd]
    request  = ["reg", key, instance]                  instance = ["i", ...] as above
             | ["dereg", key, cluster, ip, port (, connection)]
             | ["upd", key, cluster, ip, port, changes, must_exist]
             | ["beat", key, cluster, ip, port, instance | None]
             | ["csvc", key, meta] | ["usvc", key, meta]   meta = ["m", ...] as above
             | ["dsvc", key]
             | ["ucl", key, cluster, check_port | None, use_instance_port | None, checker | None, metadata]
             | ["cns", namespace_id, name, desc] | ["uns", namespace_id, name, desc] | ["dns", namespace_id]
             | ["set", name, text | None]
    key      = str(ServiceKey)                         "namespace##group@@service", or a reserved key

:func:`decode_message` is a schema check for untrusted input: any deviation (wrong type or arity,
unknown tag, number out of range, string or collection over its bound, a value the model would
refuse) raises :class:`ProtocolError` with a short reason, and nothing else. Lists and tuples are both
accepted wherever a sequence is expected (msgpack gives lists); the result holds the tuples the
dataclasses declare.

Decoding items is the hot path (replication moves thousands of entries a second), so it uses type
checks, range checks and length bounds, and runs the model's regex validation once per distinct
service key and cluster name in a message (cached for that message), never per entry.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from distro.clusterdata import (
    HEALTH_CHECKER_TYPES,
    MAX_CHECKER_FIELD,
    MAX_NAMESPACE_DESC,
    MAX_NAMESPACE_NAME,
    MAX_SETTING_TEXT,
    NAMESPACES_KEY,
    RESERVED_KEYS,
    SETTINGS_KEY,
    ClusterMeta,
    HealthChecker,
    NamespaceInfo,
    SettingText,
    cluster_name_of,
    valid_custom_namespace_id,
    valid_setting_name,
)
from distro.datum import IMPLICIT_ENTRY_ID, META_ENTRY_ID, Datum, Entry, EntryValue
from distro.errors import ProtocolError  # defined in distro.errors, re-exported here (see __all__)
from distro.messages import (
    ConsoleQuery,
    ConsoleReply,
    Digest,
    Forward,
    ForwardReply,
    InstanceBlock,
    Item,
    Items,
    Message,
    Ping,
    Renew,
    RenewItem,
    RenewReply,
    Repair,
    SnapshotChunk,
    SnapshotRequest,
    SubscriberRow,
    SubscribersQuery,
    SubscribersReply,
    SyncBatch,
    TakenItem,
)
from distro.model import (
    MAX_WEIGHT,
    Instance,
    ServiceKey,
    ServiceMeta,
    ValidationError,
    instance_entry_id,
    instances_from_columns,
    service_key,
    validate_cluster,
    validate_ip,
)
from distro.requests import (
    Beat,
    ClientRequest,
    CreateNamespace,
    CreateService,
    DeleteNamespace,
    DeleteService,
    Deregister,
    PutSetting,
    Register,
    Result,
    UpdateCluster,
    UpdateInstance,
    UpdateNamespace,
    UpdateService,
)
from distro.sharing import share_metadata, share_port, share_str, share_weight
from distro.versions import Version

__all__ = [
    "DECODE_CACHE_BYTES",
    "DECODE_ENTRY_BYTES",
    "INTERNAL_ERROR_PREFIX",
    "MAX_ITEMS",
    "MAX_METADATA_CHARS",
    "MAX_STRING",
    "DecodeCache",
    "ProtocolError",
    "decode_message",
    "encode_message",
    "encode_value",
]

MAX_STRING = 1024
"""Longest name, id, address or other single string field (in characters)."""
MAX_METADATA_CHARS = 65536
"""Longest metadata map or result body: keys plus values, in characters."""
MAX_METADATA_KEYS = 4096
MAX_ASSIGNED_ID = 64
"""Longest instance id an owner assigns (a snowflake id is a small decimal number)."""
MAX_ITEMS = 100_000
"""Most items, digests or wanted keys in one message."""
MAX_INT64 = 2**63 - 1
MAX_UINT64 = 2**64 - 1
MAX_SNAPSHOT_PARTS = 1_000_000_000

_SEQ = (list, tuple)


# ================================================================================================
# Encoding (trusted input: no checks)
# ================================================================================================


def _enc_instance(inst: Instance) -> list[Any]:
    metadata = inst.metadata
    out = ["i", inst.ip, inst.port, inst.cluster, inst.weight, inst.healthy, inst.enabled, dict(metadata) if metadata else {}]
    if inst.orphaned_ms:
        out.extend((inst.connection, inst.assigned_id, inst.orphaned_ms))
    elif inst.assigned_id:
        out.extend((inst.connection, inst.assigned_id))
    elif inst.connection:
        out.append(inst.connection)
    return out


def _enc_meta(meta: ServiceMeta) -> list[Any]:
    return ["m", meta.protect_threshold, dict(meta.metadata), meta.selector_type, meta.implicit]


def _enc_checker(c: HealthChecker) -> list[Any]:
    return [c.type, c.path, c.headers, c.expected_response_code, c.user, c.pwd, c.cmd]


def _enc_cluster(c: ClusterMeta) -> list[Any]:
    return ["c", c.check_port, c.use_instance_port, _enc_checker(c.health_checker), dict(c.metadata)]


def encode_value(value: EntryValue) -> Any:
    """One entry value as plain lists (``None`` for a tombstone): the ``value`` of an item."""
    if value is None:
        return None
    if type(value) is Instance:
        return _enc_instance(value)
    if type(value) is ServiceMeta:
        return _enc_meta(value)
    if type(value) is ClusterMeta:
        return _enc_cluster(value)
    if type(value) is NamespaceInfo:
        return ["n", value.name, value.desc, value.created_ms]
    if type(value) is SettingText:
        return ["s", value.text]
    raise TypeError(f"not an entry value: {type(value).__name__}")


def _enc_items(items: Items) -> list[Any]:
    out: list[Any] = []
    append = out.append
    for key, entry_id, entry in items:
        value = entry.value
        enc = _enc_instance(value) if type(value) is Instance else encode_value(value)
        append([str(key), entry_id, entry.ms, entry.counter, entry.node, enc])
    return out


def _enc_request(req: ClientRequest) -> list[Any]:
    key = str(req.key)
    if isinstance(req, Register):
        return ["reg", key, _enc_instance(req.instance)]
    if isinstance(req, Deregister):
        if req.connection is not None:
            return ["dereg", key, req.cluster, req.ip, req.port, req.connection]
        return ["dereg", key, req.cluster, req.ip, req.port]
    if isinstance(req, UpdateInstance):
        changes = dict(req.changes)
        if "metadata" in changes:
            changes["metadata"] = dict(changes["metadata"])
        return ["upd", key, req.cluster, req.ip, req.port, changes, req.must_exist]
    if isinstance(req, Beat):
        inst = None if req.instance is None else _enc_instance(req.instance)
        return ["beat", key, req.cluster, req.ip, req.port, inst]
    if isinstance(req, CreateService):
        return ["csvc", key, _enc_meta(req.meta)]
    if isinstance(req, UpdateService):
        return ["usvc", key, _enc_meta(req.meta)]
    if isinstance(req, DeleteService):
        return ["dsvc", key]
    if isinstance(req, UpdateCluster):
        checker = None if req.health_checker is None else _enc_checker(req.health_checker)
        return ["ucl", key, req.cluster, req.check_port, req.use_instance_port, checker, dict(req.metadata)]
    if isinstance(req, CreateNamespace):
        return ["cns", req.namespace_id, req.name, req.desc]
    if isinstance(req, UpdateNamespace):
        return ["uns", req.namespace_id, req.name, req.desc]
    if isinstance(req, DeleteNamespace):
        return ["dns", req.namespace_id]
    if isinstance(req, PutSetting):
        return ["set", req.name, req.text]
    raise TypeError(f"not a client request: {type(req).__name__}")


def _enc_ping(m: Ping) -> list[Any]:
    return ["ping", m.ready, m.address, m.started_ms]


def _enc_forward(m: Forward) -> list[Any]:
    return ["fwd", m.request_id, _enc_request(m.request)]


def _enc_forward_reply(m: ForwardReply) -> list[Any]:
    body = m.result.body
    return ["fwdr", m.request_id, m.result.status, body if isinstance(body, str) else dict(body)]


def _enc_sync(m: SyncBatch) -> list[Any]:
    return ["sync", _enc_items(m.items)]


def _enc_digest(m: Digest) -> list[Any]:
    return ["digest", [[str(key), digest] for key, digest in m.digests], m.low, m.high]


def _enc_repair(m: Repair) -> list[Any]:
    return ["repair", _enc_items(m.items), [str(key) for key in m.want]]


def _enc_snapshot_request(m: SnapshotRequest) -> list[Any]:
    return ["snapreq"]


def _enc_snapshot_chunk(m: SnapshotChunk) -> list[Any]:
    out = ["snap", m.ready, m.snapshot_id, m.seq, m.total, _enc_items(m.items)]
    if m.blocks:
        out.append([_enc_block(key, datum, digest) for key, datum, digest in m.blocks])
    return out


def _enc_block(key: ServiceKey, datum: Datum, digest: int | None) -> list[Any]:
    """One key's live instances as columns (see the layout in this module's docstring)."""
    entries = list(datum.values())
    insts: list[Instance] = [entry.value for entry in entries]  # type: ignore[misc]
    table: dict[int, int] = {}  # id(metadata mapping) -> its index in metas (instances share mappings)
    metas: list[dict[str, str]] = []
    meta_index: list[int] = []
    extras: list[list[Any]] = []
    for i, inst in enumerate(insts):
        metadata = inst.metadata
        index = table.get(id(metadata))
        if index is None:
            index = table[id(metadata)] = len(metas)
            metas.append(dict(metadata))
        meta_index.append(index)
        if inst.connection or inst.assigned_id or inst.orphaned_ms:
            extras.append([i, inst.connection, inst.assigned_id, inst.orphaned_ms])
    out: list[Any] = [
        str(key), [inst.ip for inst in insts], [inst.port for inst in insts], [inst.cluster for inst in insts],
        [inst.weight for inst in insts], [inst.healthy for inst in insts], [inst.enabled for inst in insts],
        meta_index, metas, [e.ms for e in entries], [e.counter for e in entries], [e.node for e in entries], extras,
    ]
    if digest is not None:
        out.append(digest)
    return out


def _enc_subscribers_query(m: SubscribersQuery) -> list[Any]:
    return ["subq", m.query_id, str(m.key)]


def _enc_subscribers_reply(m: SubscribersReply) -> list[Any]:
    return ["subr", m.query_id, [list(row) for row in m.rows]]


def _enc_console_query(m: ConsoleQuery) -> list[Any]:
    return ["conq", m.query_id, None if m.key is None else str(m.key)]


def _enc_console_reply(m: ConsoleReply) -> list[Any]:
    return ["conr", m.query_id, m.version, m.started_ms, m.now_ms, [list(beat) for beat in m.beats]]


def _enc_renew_items(items: tuple[RenewItem, ...]) -> list[Any]:
    return [[str(key), entry_id, connection] for key, entry_id, connection in items]


def _enc_renew(m: Renew) -> list[Any]:
    return ["renew", _enc_renew_items(m.items)]


def _enc_renew_reply(m: RenewReply) -> list[Any]:
    return ["renewr", _enc_renew_items(m.missing), [[str(key), e, c, ms] for key, e, c, ms in m.taken]]


_ENCODERS: dict[type, Callable[[Any], list[Any]]] = {
    Ping: _enc_ping,
    Forward: _enc_forward,
    ForwardReply: _enc_forward_reply,
    SyncBatch: _enc_sync,
    Digest: _enc_digest,
    Repair: _enc_repair,
    SnapshotRequest: _enc_snapshot_request,
    SnapshotChunk: _enc_snapshot_chunk,
    SubscribersQuery: _enc_subscribers_query,
    SubscribersReply: _enc_subscribers_reply,
    ConsoleQuery: _enc_console_query,
    ConsoleReply: _enc_console_reply,
    Renew: _enc_renew,
    RenewReply: _enc_renew_reply,
}


def encode_message(message: Message) -> list[Any]:
    """The message as nested plain lists (see the module docstring for the layout)."""
    encoder = _ENCODERS.get(type(message))
    if encoder is None:
        raise TypeError(f"not a peer message: {type(message).__name__}")
    return encoder(message)


# ================================================================================================
# Decoding (untrusted input: every check explicit)
# ================================================================================================


DECODE_CACHE_BYTES = 4 * 1024 * 1024
"""The default bound on a :class:`DecodeCache`: its strings' characters plus :data:`DECODE_ENTRY_BYTES` each."""
DECODE_ENTRY_BYTES = 200
"""What one cached key or cluster name costs beyond its characters (dict slot, string, key tuple)."""


class DecodeCache:
    """Service keys and cluster names already validated, kept across messages (one per peer link set).

    Without it every message parsed and validated each key it carried again (a ``SyncBatch`` of 64 items
    over 64 services: 64 parses and regex checks per message on every replica). With it a known key costs
    one dict look-up, and every message decodes the same (interned) :class:`ServiceKey` object for it.
    Only what passed the checks is kept. Bounded in bytes: past ``max_bytes`` it starts again empty.
    """

    __slots__ = ("clusters", "keys", "max_bytes", "used_bytes")

    def __init__(self, max_bytes: int = DECODE_CACHE_BYTES) -> None:
        self.keys: dict[str, ServiceKey] = {}
        self.clusters: set[str] = set()
        self.max_bytes = max_bytes
        self.used_bytes = 0

    def add_key(self, text: str, key: ServiceKey) -> None:
        """Remember a validated key (after starting again empty if it would not fit)."""
        self._make_room(text)
        self.keys[text] = key

    def add_cluster(self, name: str) -> None:
        """Remember a validated cluster name (after starting again empty if it would not fit)."""
        self._make_room(name)
        self.clusters.add(name)

    def _make_room(self, text: str) -> None:
        cost = len(text) + DECODE_ENTRY_BYTES
        if self.used_bytes + cost > self.max_bytes:
            self.keys = {}
            self.clusters = set()
            self.used_bytes = 0
        self.used_bytes += cost


class _Ctx:
    """Caches of already validated service keys and cluster names: per message, or a :class:`DecodeCache`'s."""

    __slots__ = ("cache", "clusters", "keys")

    def __init__(self, cache: DecodeCache | None = None) -> None:
        self.cache = cache
        if cache is None:
            self.keys: dict[str, ServiceKey] = {}
            self.clusters: set[str] = set()
        else:
            self.keys = cache.keys
            self.clusters = cache.clusters

    def add_key(self, text: str, key: ServiceKey) -> None:
        cache = self.cache
        if cache is None:
            self.keys[text] = key
        else:
            cache.add_key(text, key)
            self.keys = cache.keys  # a new dict if the cache started again

    def add_cluster(self, name: str) -> None:
        cache = self.cache
        if cache is None:
            self.clusters.add(name)
        else:
            cache.add_cluster(name)
            self.clusters = cache.clusters


def _seq(obj: Any, n: int, what: str) -> list[Any] | tuple[Any, ...]:
    if type(obj) not in _SEQ:
        raise ProtocolError(f"{what}: expected a list")
    if len(obj) != n:
        raise ProtocolError(f"{what}: expected {n} fields, got {len(obj)}")
    return obj  # type: ignore[no-any-return]


def _list(obj: Any, what: str, limit: int = MAX_ITEMS) -> list[Any] | tuple[Any, ...]:
    if type(obj) not in _SEQ:
        raise ProtocolError(f"{what}: expected a list")
    if len(obj) > limit:
        raise ProtocolError(f"{what}: more than {limit} elements")
    return obj  # type: ignore[no-any-return]


def _str(obj: Any, what: str, limit: int = MAX_STRING) -> str:
    if type(obj) is not str:
        raise ProtocolError(f"{what}: expected a string")
    if len(obj) > limit:
        raise ProtocolError(f"{what}: longer than {limit} characters")
    return obj


def _opt_str(obj: Any, what: str) -> str | None:
    return None if obj is None else _str(obj, what)


def _int(obj: Any, what: str, low: int = 0, high: int = MAX_INT64) -> int:
    if type(obj) is not int:
        raise ProtocolError(f"{what}: expected an integer")
    if not low <= obj <= high:
        raise ProtocolError(f"{what}: out of range")
    return obj


def _bool(obj: Any, what: str) -> bool:
    if type(obj) is not bool:
        raise ProtocolError(f"{what}: expected a boolean")
    return obj


def _float(obj: Any, what: str, low: float, high: float) -> float:
    t = type(obj)
    if t is float:
        value: float = obj
    elif t is int:
        if not low <= obj <= high:
            raise ProtocolError(f"{what}: out of range")
        value = float(obj)
    else:
        raise ProtocolError(f"{what}: expected a number")
    if not low <= value <= high:  # also false for NaN
        raise ProtocolError(f"{what}: out of range")
    return value


def _metadata(obj: Any, what: str) -> dict[str, str]:
    if type(obj) is not dict:
        raise ProtocolError(f"{what}: expected a map")
    if not obj:
        return {}
    if len(obj) > MAX_METADATA_KEYS:
        raise ProtocolError(f"{what}: more than {MAX_METADATA_KEYS} keys")
    total = 0
    for k, v in obj.items():
        if type(k) is not str or type(v) is not str:
            raise ProtocolError(f"{what}: keys and values must be strings")
        total += len(k) + len(v)
    if total > MAX_METADATA_CHARS:
        raise ProtocolError(f"{what}: larger than {MAX_METADATA_CHARS} characters")
    return obj


def _key(obj: Any, ctx: _Ctx) -> ServiceKey:
    """A service key or a reserved key (items, digests, wants)."""
    if type(obj) is not str:
        raise ProtocolError("service key: expected a string")
    key = ctx.keys.get(obj)
    if key is not None:
        return key
    reserved = RESERVED_KEYS.get(obj)
    if reserved is not None:
        ctx.add_key(obj, reserved)
        return reserved
    if len(obj) > MAX_STRING:
        raise ProtocolError("service key: too long")
    try:
        key = ServiceKey.parse(obj)
        valid = service_key(key.namespace, key.group, key.service) == key
    except ValidationError as exc:
        raise ProtocolError(f"service key: {exc.message[:100]}") from None
    if not valid:
        raise ProtocolError("service key: not in canonical form")
    ctx.add_key(obj, key)
    return key


def _cluster(obj: Any, ctx: _Ctx) -> str:
    if type(obj) is not str:
        raise ProtocolError("cluster: expected a string")
    if obj in ctx.clusters:
        return obj
    try:
        validate_cluster(obj)
    except ValidationError:
        raise ProtocolError("cluster: invalid name") from None
    ctx.add_cluster(obj)
    return obj


def _ip(obj: Any) -> str:
    if type(obj) is not str:
        raise ProtocolError("ip: expected a string")
    try:
        return validate_ip(obj)
    except ValidationError:
        raise ProtocolError("ip: invalid") from None


def _port(obj: Any) -> int:
    if type(obj) is not int or not 0 <= obj <= 65535:
        raise ProtocolError("port: expected an integer in [0, 65535]")
    return obj


def _instance(obj: Any, ctx: _Ctx, *, check_ip: bool) -> Instance:
    if type(obj) not in _SEQ or len(obj) not in (8, 9, 10, 11) or obj[0] != "i":
        raise ProtocolError(
            "instance: expected ['i', ip, port, cluster, weight, healthy, enabled, metadata "
            "(, connection (, assigned id (, orphaned ms)))]"
        )
    _, ip, port, cluster, weight, healthy, enabled, metadata = obj[:8]
    connection = _str(obj[8], "connection") if len(obj) >= 9 else ""
    assigned_id = _str(obj[9], "assigned id", MAX_ASSIGNED_ID) if len(obj) >= 10 else ""
    orphaned_ms = _orphaned_ms(obj[10]) if len(obj) == 11 else 0
    if check_ip:
        ip = _ip(ip)
    elif type(ip) is not str or not ip or len(ip) > 253:
        raise ProtocolError("ip: expected a string of 1..253 characters")
    return Instance(
        ip,
        share_port(_port(port)),
        share_str(_cluster(cluster, ctx)),
        share_weight(_float(weight, "weight", 0.0, MAX_WEIGHT)),
        _bool(healthy, "healthy"),
        _bool(enabled, "enabled"),
        share_metadata(_metadata(metadata, "metadata")),
        connection,
        assigned_id,
        orphaned_ms,
    )


def _orphaned_ms(obj: Any, what: str = "orphaned ms") -> int:
    if type(obj) is not int or not 0 <= obj <= MAX_INT64:
        raise ProtocolError(f"{what}: expected a non-negative 64-bit integer")
    return obj


def _client_key(obj: Any, ctx: _Ctx) -> ServiceKey:
    """The key of a client request: a service's, never a reserved one."""
    key = _key(obj, ctx)
    if not key.group:
        raise ProtocolError("request: a reserved key")
    return key


def _meta(obj: Any) -> ServiceMeta:
    if type(obj) not in _SEQ or len(obj) not in (4, 5) or obj[0] != "m":
        raise ProtocolError("service meta: expected ['m', protect_threshold, metadata, selector_type, implicit]")
    threshold, metadata, selector = obj[1], obj[2], obj[3]
    return ServiceMeta(
        _float(threshold, "protect threshold", 0.0, 1.0),
        _metadata(metadata, "metadata"),
        _str(selector, "selector type"),
        _bool(obj[4], "implicit") if len(obj) == 5 else False,
    )


def _checker(obj: Any) -> HealthChecker:
    kind, path, headers, code, user, pwd, cmd = _seq(obj, 7, "health checker")
    if kind not in HEALTH_CHECKER_TYPES:
        raise ProtocolError("health checker: unknown type")
    return HealthChecker(
        kind,
        _str(path, "checker path", MAX_CHECKER_FIELD),
        _str(headers, "checker headers", MAX_CHECKER_FIELD),
        _int(code, "expected response code", 100, 999),
        _str(user, "checker user", MAX_CHECKER_FIELD),
        _str(pwd, "checker pwd", MAX_CHECKER_FIELD),
        _str(cmd, "checker cmd", MAX_CHECKER_FIELD),
    )


def _cluster_meta(obj: Any) -> ClusterMeta:
    _, port, use_port, checker, metadata = _seq(obj, 5, "cluster settings")
    return ClusterMeta(_port(port), _bool(use_port, "use instance port"), _checker(checker), _metadata(metadata, "metadata"))


def _namespace_id(obj: Any) -> str:
    if type(obj) is not str or not valid_custom_namespace_id(obj):
        raise ProtocolError("namespace id: expected [A-Za-z0-9_-]{1,128}")
    return obj


def _namespace(obj: Any) -> NamespaceInfo:
    _, name, desc, created_ms = _seq(obj, 4, "namespace")
    return NamespaceInfo(
        _str(name, "namespace name", MAX_NAMESPACE_NAME),
        _str(desc, "namespace desc", MAX_NAMESPACE_DESC),
        _int(created_ms, "namespace created ms"),
    )


def _settings_value(key: ServiceKey, entry_id: str, value: Any, ctx: _Ctx) -> EntryValue:
    """A value other than an instance, checked against the entry id it is stored under."""
    tag = value[0] if type(value) in _SEQ and value else None
    if key is NAMESPACES_KEY:
        if tag != "n":
            raise ProtocolError("item: the namespaces key holds namespaces only")
        _namespace_id(entry_id)
        return _namespace(value)
    if key is SETTINGS_KEY:
        if tag != "s" or not valid_setting_name(entry_id):
            raise ProtocolError("item: the settings key holds named settings only")
        _, text = _seq(value, 2, "setting")
        return SettingText(_str(text, "setting text", MAX_SETTING_TEXT))
    if tag == "m":
        if entry_id not in (META_ENTRY_ID, IMPLICIT_ENTRY_ID):
            raise ProtocolError("item: service meta under an instance entry id")
        return _meta(value)
    if tag == "c":
        cluster = cluster_name_of(entry_id)
        if cluster is None:
            raise ProtocolError("item: cluster settings under another entry id")
        _cluster(cluster, ctx)
        return _cluster_meta(value)
    raise ProtocolError("item: value must be None, an instance, a service meta, cluster settings or a namespace")


def _items(obj: Any, ctx: _Ctx) -> Items:
    """The hot path: checks inlined, the instance's ip only bounded (the writer validated it).

    Repeated values are shared (distro/sharing.py): a replica keeps what it decodes here, and msgpack makes
    fresh objects for every item. Versions of one message often share their millisecond: one int for them.
    """
    seq = _list(obj, "items")
    last_ms = -1
    out: list[Item] = []
    append = out.append
    keys = ctx.keys
    clusters = ctx.clusters
    seq_types = _SEQ
    max_int = MAX_INT64
    max_str = MAX_STRING
    for item in seq:
        if type(item) not in seq_types or len(item) != 6:
            raise ProtocolError("item: expected [key, entry_id, ms, counter, node, value]")
        key_s, entry_id, ms, counter, node, value = item
        key = keys.get(key_s) if type(key_s) is str else None
        if key is None:
            key = _key(key_s, ctx)
        if type(entry_id) is not str or not entry_id or len(entry_id) > max_str:
            raise ProtocolError("entry id: expected a non-empty string")
        if type(ms) is not int or not 0 <= ms <= max_int:
            raise ProtocolError("version ms: expected a non-negative 64-bit integer")
        if type(counter) is not int or not 0 <= counter <= max_int:
            raise ProtocolError("version counter: expected a non-negative 64-bit integer")
        if type(node) is not str or len(node) > max_str:
            raise ProtocolError("version node: expected a string")
        if ms == last_ms:
            ms = last_ms  # the same int object
        else:
            last_ms = ms
        if value is None:
            entry_value: EntryValue = None
        elif type(value) in seq_types and 8 <= len(value) <= 11 and value[0] == "i" and key.group:
            _, ip, port, cluster, weight, healthy, enabled, metadata = value[:8]
            connection = value[8] if len(value) >= 9 else ""
            if type(connection) is not str or len(connection) > max_str:
                raise ProtocolError("connection: expected a string")
            assigned_id = value[9] if len(value) >= 10 else ""
            if type(assigned_id) is not str or len(assigned_id) > MAX_ASSIGNED_ID:
                raise ProtocolError("assigned id: expected a string")
            orphaned_ms = _orphaned_ms(value[10]) if len(value) == 11 else 0
            if type(ip) is not str or not ip or len(ip) > 253:
                raise ProtocolError("ip: expected a string of 1..253 characters")
            if type(port) is not int or not 0 <= port <= 65535:
                raise ProtocolError("port: expected an integer in [0, 65535]")
            if type(cluster) is not str or cluster not in clusters:
                _cluster(cluster, ctx)
            if type(weight) is not float or not 0.0 <= weight <= MAX_WEIGHT:
                weight = _float(weight, "weight", 0.0, MAX_WEIGHT)
            if type(healthy) is not bool or type(enabled) is not bool:
                raise ProtocolError("healthy/enabled: expected booleans")
            if type(metadata) is not dict or metadata:
                metadata = _metadata(metadata, "metadata")
            if entry_id != instance_entry_id(cluster, ip, port):
                raise ProtocolError("item: entry id does not match the instance")
            entry_value = Instance(
                ip, share_port(port), share_str(cluster), share_weight(weight), healthy, enabled,
                share_metadata(metadata), connection, assigned_id, orphaned_ms, entry_id=entry_id,
            )
        else:
            entry_value = _settings_value(key, entry_id, value, ctx)
        append((key, entry_id, Entry(Version(ms, counter, share_str(node)), entry_value)))
    return tuple(out)


_CHANGE_KEYS = frozenset({"weight", "healthy", "enabled", "metadata"})


def _changes(obj: Any) -> dict[str, Any]:
    if type(obj) is not dict:
        raise ProtocolError("changes: expected a map")
    out: dict[str, Any] = {}
    for k, v in obj.items():
        if k == "weight":
            out[k] = _float(v, "weight", 0.0, MAX_WEIGHT)
        elif k == "healthy" or k == "enabled":
            out[k] = _bool(v, k)
        elif k == "metadata":
            out[k] = _metadata(v, "metadata")
        else:
            raise ProtocolError("changes: only weight, healthy, enabled and metadata may change")
    return out


def _request(obj: Any, ctx: _Ctx) -> ClientRequest:
    if type(obj) not in _SEQ or not obj:
        raise ProtocolError("request: expected a non-empty list")
    tag = obj[0]
    if tag == "reg":
        _, key, inst = _seq(obj, 3, "register")
        return Register(_client_key(key, ctx), _instance(inst, ctx, check_ip=True))
    if tag == "dereg":
        if type(obj) in _SEQ and len(obj) == 6:
            _, key, cluster, ip, port, connection = obj
            return Deregister(_key(key, ctx), _cluster(cluster, ctx), _ip(ip), _port(port),
                              _str(connection, "connection"))
        _, key, cluster, ip, port = _seq(obj, 5, "deregister")
        return Deregister(_client_key(key, ctx), _cluster(cluster, ctx), _ip(ip), _port(port))
    if tag == "upd":
        _, key, cluster, ip, port, changes, must_exist = _seq(obj, 7, "update")
        return UpdateInstance(
            _client_key(key, ctx),
            _cluster(cluster, ctx),
            _ip(ip),
            _port(port),
            _changes(changes),
            _bool(must_exist, "must_exist"),
        )
    if tag == "beat":
        _, key, cluster, ip, port, inst = _seq(obj, 6, "beat")
        return Beat(
            _client_key(key, ctx),
            _cluster(cluster, ctx),
            _ip(ip),
            _port(port),
            None if inst is None else _instance(inst, ctx, check_ip=True),
        )
    if tag == "csvc":
        _, key, meta = _seq(obj, 3, "create service")
        return CreateService(_client_key(key, ctx), _meta(meta))
    if tag == "usvc":
        _, key, meta = _seq(obj, 3, "update service")
        return UpdateService(_client_key(key, ctx), _meta(meta))
    if tag == "dsvc":
        _, key = _seq(obj, 2, "delete service")
        return DeleteService(_client_key(key, ctx))
    return _cluster_data_request(tag, obj, ctx)


def _cluster_data_request(tag: Any, obj: list[Any] | tuple[Any, ...], ctx: _Ctx) -> ClientRequest:
    if tag == "ucl":
        _, key, cluster, port, use_port, checker, metadata = _seq(obj, 7, "update cluster")
        return UpdateCluster(
            _client_key(key, ctx),
            _cluster(cluster, ctx),
            None if port is None else _port(port),
            None if use_port is None else _bool(use_port, "use instance port"),
            None if checker is None else _checker(checker),
            _metadata(metadata, "metadata"),
        )
    if tag in ("cns", "uns"):
        _, namespace_id, name, desc = _seq(obj, 4, "namespace request")
        request = CreateNamespace if tag == "cns" else UpdateNamespace
        return request(
            _str(namespace_id, "namespace id", MAX_STRING),
            _str(name, "namespace name", MAX_NAMESPACE_NAME),
            _str(desc, "namespace desc", MAX_NAMESPACE_DESC),
        )
    if tag == "dns":
        _, namespace_id = _seq(obj, 2, "delete namespace")
        return DeleteNamespace(_str(namespace_id, "namespace id", MAX_STRING))
    if tag == "set":
        _, name, text = _seq(obj, 3, "put setting")
        return PutSetting(_str(name, "setting name"), None if text is None else _str(text, "text", MAX_SETTING_TEXT))
    raise ProtocolError("request: unknown type")


def _body(obj: Any) -> str | dict[str, Any]:
    if type(obj) is str:
        if len(obj) > MAX_METADATA_CHARS:
            raise ProtocolError("result body: too long")
        return obj
    if type(obj) is not dict:
        raise ProtocolError("result body: expected a string or a map")
    if len(obj) > MAX_METADATA_KEYS:
        raise ProtocolError("result body: too many keys")
    total = 0
    for k, v in obj.items():
        if type(k) is not str:
            raise ProtocolError("result body: keys must be strings")
        t = type(v)
        if t is str:
            total += len(v)
        elif t is float:
            if not math.isfinite(v):
                raise ProtocolError("result body: NaN or infinity")
        elif t is int:
            if not -MAX_INT64 - 1 <= v <= MAX_UINT64:
                raise ProtocolError("result body: integer out of range")
        elif t is not bool:
            raise ProtocolError("result body: values must be strings, numbers or booleans")
        total += len(k)
    if total > MAX_METADATA_CHARS:
        raise ProtocolError("result body: too large")
    return obj


def _dec_ping(obj: list[Any] | tuple[Any, ...], ctx: _Ctx) -> Message:
    if type(obj) in _SEQ and len(obj) == 3:
        obj = [*obj, 0]
    _, ready, address, started_ms = _seq(obj, 4, "ping")
    return Ping(_bool(ready, "ready"), _str(address, "address"), _orphaned_ms(started_ms, "started ms"))


def _dec_forward(obj: list[Any] | tuple[Any, ...], ctx: _Ctx) -> Message:
    _, request_id, request = _seq(obj, 3, "forward")
    return Forward(_int(request_id, "request id"), _request(request, ctx))


def _dec_forward_reply(obj: list[Any] | tuple[Any, ...], ctx: _Ctx) -> Message:
    _, request_id, status, body = _seq(obj, 4, "forward reply")
    return ForwardReply(_int(request_id, "request id"), Result(_int(status, "status", 100, 999), _body(body)))


def _dec_sync(obj: list[Any] | tuple[Any, ...], ctx: _Ctx) -> Message:
    _, items = _seq(obj, 2, "sync batch")
    return SyncBatch(_items(items, ctx))


def _dec_digest(obj: list[Any] | tuple[Any, ...], ctx: _Ctx) -> Message:
    _, digests, low, high = _seq(obj, 4, "digest")
    out: list[tuple[ServiceKey, int]] = []
    for pair in _list(digests, "digests"):
        key, digest = _seq(pair, 2, "digest entry")
        out.append((_key(key, ctx), _int(digest, "digest", 0, MAX_UINT64)))
    return Digest(tuple(out), _opt_str(low, "low"), _opt_str(high, "high"))


def _dec_repair(obj: list[Any] | tuple[Any, ...], ctx: _Ctx) -> Message:
    _, items, want = _seq(obj, 3, "repair")
    decoded = _items(items, ctx)
    return Repair(decoded, tuple(_key(key, ctx) for key in _list(want, "want")))


def _dec_snapshot_request(obj: list[Any] | tuple[Any, ...], ctx: _Ctx) -> Message:
    _seq(obj, 1, "snapshot request")
    return SnapshotRequest()


def _dec_snapshot_chunk(obj: list[Any] | tuple[Any, ...], ctx: _Ctx) -> Message:
    if type(obj) in _SEQ and len(obj) == 7:
        _, ready, snapshot_id, seq, total, items, blocks = obj
        decoded = tuple(_instance_block(block, ctx) for block in _list(blocks, "instance blocks"))
    else:
        _, ready, snapshot_id, seq, total, items = _seq(obj, 6, "snapshot chunk")
        decoded = ()
    total = _int(total, "total", 1, MAX_SNAPSHOT_PARTS)
    return SnapshotChunk(
        _bool(ready, "ready"),
        _int(snapshot_id, "snapshot id"),
        _int(seq, "seq", 0, total - 1),
        total,
        _items(items, ctx),
        decoded,
    )


_INT_TYPES = frozenset({int})
_STR_TYPES = frozenset({str})
_BOOL_TYPES = frozenset({bool})
_FLOAT_TYPES = frozenset({float})


def _column(obj: Any, n: int, what: str, types: frozenset[type]) -> list[Any] | tuple[Any, ...]:
    """A column of ``n`` values of the given types, checked at C speed (one set of the values' types)."""
    if type(obj) not in _SEQ or len(obj) != n:
        raise ProtocolError(f"{what}: expected a list of {n} values")
    if n and not types.issuperset(map(type, obj)):
        raise ProtocolError(f"{what}: expected {' or '.join(sorted(t.__name__ for t in types))} values")
    return obj  # type: ignore[no-any-return]


def _int_column(obj: Any, n: int, what: str, low: int, high: int) -> list[Any] | tuple[Any, ...]:
    col = _column(obj, n, what, _INT_TYPES)
    if n and (min(col) < low or max(col) > high):
        raise ProtocolError(f"{what}: out of range")
    return col


def _str_column(obj: Any, n: int, what: str, shortest: int, longest: int) -> list[Any] | tuple[Any, ...]:
    col = _column(obj, n, what, _STR_TYPES)
    lengths = set(map(len, col))  # one walk (a few distinct lengths), not one for min and one for max
    if n and (min(lengths) < shortest or max(lengths) > longest):
        raise ProtocolError(f"{what}: expected strings of {shortest}..{longest} characters")
    return col


def _int_values(obj: Any, n: int, what: str, low: int, high: int) -> set[int]:
    """The distinct values of a column of ``n`` integers (each value's type checked, the range on the
    distinct ones: a column of few distinct values, as ports or version milliseconds, is walked twice)."""
    values = set(_column(obj, n, what, _INT_TYPES))
    if values and (min(values) < low or max(values) > high):
        raise ProtocolError(f"{what}: out of range")
    return values


def _str_values(obj: Any, n: int, what: str, shortest: int, longest: int) -> set[str]:
    """The distinct values of a column of ``n`` strings, each distinct one checked (a value equal to a
    string is a string: only those are, so no other type can hide behind one): one walk of the column."""
    if type(obj) not in _SEQ or len(obj) != n:
        raise ProtocolError(f"{what}: expected a list of {n} values")
    try:
        values = set(obj)
    except TypeError:
        raise ProtocolError(f"{what}: expected str values") from None
    if not _STR_TYPES.issuperset(map(type, values)):
        raise ProtocolError(f"{what}: expected str values")
    if values and (min(map(len, values)) < shortest or max(map(len, values)) > longest):
        raise ProtocolError(f"{what}: expected strings of {shortest}..{longest} characters")
    return values


def _instance_block(obj: Any, ctx: _Ctx) -> InstanceBlock:
    """One key's live instances from columns: each column checked as a whole, each distinct value (cluster
    name, weight, writer node, metadata) once, then the instances built in bulk. Equal to what
    :func:`_items` makes of the same entries, at about a third of its cost per entry."""
    if type(obj) in _SEQ and len(obj) == 14:
        digest: int | None = _int(obj[13], "block digest", 0, MAX_UINT64)
        obj = obj[:13]
    else:
        digest = None
    (key_s, ips, ports, clusters, weights, healthy, enabled, meta_index, metas, ms, counters, nodes,
     extras) = _seq(obj, 13, "instance block")
    key = _key(key_s, ctx)
    if not key.group:
        raise ProtocolError("instance block: a reserved key holds no instances")
    n = len(_list(ips, "instance block"))
    _str_column(ips, n, "ips", 1, 253)
    port_of = {p: share_port(p) for p in _int_values(ports, n, "ports", 0, 65535)}
    cluster_of = {c: share_str(_cluster(c, ctx)) for c in _str_values(clusters, n, "clusters", 0, MAX_STRING)}
    weight_of = {w: share_weight(_float(w, "weight", 0.0, MAX_WEIGHT))
                 for w in set(_column(weights, n, "weights", _FLOAT_TYPES))}
    _column(healthy, n, "healthy", _BOOL_TYPES)
    _column(enabled, n, "enabled", _BOOL_TYPES)
    table = [share_metadata(_metadata(m, "metadata")) for m in _list(metas, "metadata table", max(1, n))]
    _int_values(meta_index, n, "metadata index", 0, len(table) - 1)
    _int_column(ms, n, "version ms", 0, MAX_INT64)  # mostly distinct: a set of them would cost more
    _int_column(counters, n, "version counter", 0, MAX_INT64)
    node_of = {x: share_str(x) for x in _str_values(nodes, n, "version node", 0, MAX_STRING)}
    shared_ms: dict[int, int] = {}  # one int object per millisecond
    cluster_col = list(map(cluster_of.__getitem__, clusters))
    port_col = list(map(port_of.__getitem__, ports))
    if len(cluster_of) == 1 and len(port_of) == 1:  # the usual service: one cluster, one port
        prefix, suffix = f"{cluster_col[0]}/", f":{port_col[0]}"
        entry_ids = [f"{prefix}{ip}{suffix}" for ip in ips]
    else:
        entry_ids = [f"{c}/{ip}:{p}" for c, ip, p in zip(cluster_col, ips, port_col, strict=True)]
    insts = instances_from_columns(entry_ids, port_col, cluster_col, list(map(weight_of.__getitem__, weights)),
                                   healthy, enabled, list(map(table.__getitem__, meta_index)))
    for extra in _list(extras, "instance extras", n):
        i, connection, assigned_id, orphaned_ms = _seq(extra, 4, "instance extra")
        i = _int(i, "instance extra index", 0, n - 1)
        inst = insts[i]
        insts[i] = Instance(ips[i], inst.port, inst.cluster, inst.weight, inst.healthy, inst.enabled, inst.metadata,
                            _str(connection, "connection"), _str(assigned_id, "assigned id", MAX_ASSIGNED_ID),
                            _orphaned_ms(orphaned_ms), entry_id=entry_ids[i])
    # every column holds n values (checked above): map and zip in C, no comprehension frame per entry
    versions = zip(map(shared_ms.setdefault, ms, ms), counters, map(node_of.__getitem__, nodes), strict=True)
    datum = dict(zip(entry_ids, map(Entry, versions, insts), strict=True))
    if len(datum) != n:
        raise ProtocolError("instance block: an entry id twice")
    return key, datum, digest


def _dec_subscribers_query(obj: list[Any] | tuple[Any, ...], ctx: _Ctx) -> Message:
    _, query_id, key = _seq(obj, 3, "subscribers query")
    return SubscribersQuery(_int(query_id, "query id"), _key(key, ctx))


def _dec_subscribers_reply(obj: list[Any] | tuple[Any, ...], ctx: _Ctx) -> Message:
    _, query_id, rows = _seq(obj, 3, "subscribers reply")
    out: list[SubscriberRow] = []
    for row in _list(rows, "subscribers"):
        addr, agent, app, ip, port, clusters, protocol = _seq(row, 7, "subscriber")
        out.append((
            _str(addr, "subscriber address"),
            _str(agent, "subscriber agent"),
            _str(app, "subscriber app"),
            _str(ip, "subscriber ip"),
            _port(port),
            _str(clusters, "subscriber clusters", MAX_METADATA_CHARS),
            _str(protocol, "subscriber protocol"),
        ))
    return SubscribersReply(_int(query_id, "query id"), tuple(out))


def _dec_console_query(obj: list[Any] | tuple[Any, ...], ctx: _Ctx) -> Message:
    _, query_id, key = _seq(obj, 3, "console query")
    return ConsoleQuery(_int(query_id, "query id"), None if key is None else _key(key, ctx))


def _dec_console_reply(obj: list[Any] | tuple[Any, ...], ctx: _Ctx) -> Message:
    _, query_id, version, started_ms, now_ms, beats = _seq(obj, 6, "console reply")
    out: list[tuple[str, int]] = []
    for beat in _list(beats, "beats"):
        entry_id, last_ms = _seq(beat, 2, "beat")
        out.append((_str(entry_id, "entry id"), _int(last_ms, "last beat")))
    return ConsoleReply(
        _int(query_id, "query id"),
        _str(version, "version", 64),
        _int(started_ms, "started ms"),
        _int(now_ms, "now ms"),
        tuple(out),
    )


def _renew_items(obj: Any, ctx: _Ctx) -> tuple[RenewItem, ...]:
    out: list[RenewItem] = []
    for item in _list(obj, "renew items"):
        key, entry_id, connection = _seq(item, 3, "renew item")
        out.append((_key(key, ctx), _str(entry_id, "entry id"), _str(connection, "connection")))
    return tuple(out)


def _dec_renew(obj: list[Any] | tuple[Any, ...], ctx: _Ctx) -> Message:
    _, items = _seq(obj, 2, "renew")
    return Renew(_renew_items(items, ctx))


def _dec_renew_reply(obj: list[Any] | tuple[Any, ...], ctx: _Ctx) -> Message:
    _, missing, taken = _seq(obj, 3, "renew reply")
    out: list[TakenItem] = []
    for item in _list(taken, "taken items"):
        key, entry_id, connection, version_ms = _seq(item, 4, "taken item")
        out.append((_key(key, ctx), _str(entry_id, "entry id"), _str(connection, "connection"),
                    _int(version_ms, "version ms")))
    return RenewReply(_renew_items(missing, ctx), tuple(out))


_DECODERS: dict[str, Callable[[list[Any] | tuple[Any, ...], _Ctx], Message]] = {
    "ping": _dec_ping,
    "fwd": _dec_forward,
    "fwdr": _dec_forward_reply,
    "sync": _dec_sync,
    "digest": _dec_digest,
    "repair": _dec_repair,
    "snapreq": _dec_snapshot_request,
    "snap": _dec_snapshot_chunk,
    "subq": _dec_subscribers_query,
    "subr": _dec_subscribers_reply,
    "conq": _dec_console_query,
    "conr": _dec_console_reply,
    "renew": _dec_renew,
    "renewr": _dec_renew_reply,
}

INTERNAL_ERROR_PREFIX = "malformed message ("
"""Reasons starting with this come from the safety net, not from an explicit check (tests look for it)."""


def decode_message(obj: Any, cache: DecodeCache | None = None) -> Message:
    """Check and convert one unpacked message; raises :class:`ProtocolError` (only) when malformed.

    ``cache``: keys and cluster names validated by earlier messages (a peer link's); without it each
    message validates its own."""
    if type(obj) not in _SEQ or not obj:
        raise ProtocolError("message: expected a non-empty list")
    tag = obj[0]
    decoder = _DECODERS.get(tag) if type(tag) is str else None
    if decoder is None:
        raise ProtocolError("message: unknown type")
    try:
        return decoder(obj, _Ctx(cache))
    except ProtocolError:
        raise
    except ValidationError as exc:  # a model rule this module did not anticipate
        raise ProtocolError(exc.message[:200]) from None
    except Exception as exc:  # safety net: untrusted input must never raise anything else
        raise ProtocolError(f"{INTERNAL_ERROR_PREFIX}{type(exc).__name__})") from None
