"""distro.codec: round trips for every message type, and decode as a schema check for hostile input."""

from __future__ import annotations

import math
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distro.clusterdata import (
    NAMESPACES_KEY,
    SETTINGS_KEY,
    ClusterMeta,
    HealthChecker,
    NamespaceInfo,
    SettingText,
    cluster_entry_id,
)
from distro.codec import (
    DECODE_ENTRY_BYTES,
    INTERNAL_ERROR_PREFIX,
    MAX_ITEMS,
    MAX_METADATA_CHARS,
    MAX_STRING,
    DecodeCache,
    ProtocolError,
    decode_message,
    encode_message,
)
from distro.datum import META_ENTRY_ID, Entry
from distro.messages import (
    Digest,
    Forward,
    ForwardReply,
    Item,
    Message,
    Ping,
    Repair,
    SnapshotChunk,
    SnapshotRequest,
    SyncBatch,
)
from distro.model import Instance, ServiceKey, ServiceMeta, make_instance, service_key
from distro.requests import (
    OK,
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
from distro.versions import Version

EXAMPLES = settings(max_examples=200, deadline=None)

# ------------------------------------------------------------------------------------------------
# Strategies for valid messages
# ------------------------------------------------------------------------------------------------

# '@' is left out of group and service names: a group ending in '@' (allowed by the model) makes
# "ns##g@@@s" ambiguous, and ServiceKey.parse reads it back as group "g", service "@s".
names = st.from_regex(r"[0-9a-zA-Z._:-]{1,20}", fullmatch=True)
keys = st.builds(
    service_key,
    st.from_regex(r"[0-9a-zA-Z_.:-]{1,16}", fullmatch=True),
    names,
    names,
)
clusters = st.from_regex(r"[0-9a-zA-Z-]{1,16}", fullmatch=True)
ips = st.ip_addresses(v=4).map(str) | st.from_regex(
    r"[a-z][a-z0-9-]{0,10}(\.[a-z0-9-]{1,10}){0,2}", fullmatch=True
)
ports = st.integers(0, 65535)
weights = st.floats(0.0, 10000.0, allow_nan=False)
short_text = st.text(max_size=12)
metadata = st.dictionaries(short_text, st.text(max_size=24), max_size=5)
instances = st.builds(
    Instance,
    ip=ips,
    port=ports,
    cluster=clusters,
    weight=weights,
    healthy=st.booleans(),
    enabled=st.booleans(),
    metadata=metadata,
)
metas = st.builds(
    ServiceMeta,
    protect_threshold=st.floats(0.0, 1.0, allow_nan=False),
    metadata=metadata,
    selector_type=short_text,
    implicit=st.booleans(),
)
checkers = st.builds(
    HealthChecker,
    type=st.sampled_from(["TCP", "HTTP", "MYSQL", "NONE"]),
    path=short_text,
    headers=short_text,
    expected_response_code=st.integers(100, 999),
    user=short_text,
    pwd=short_text,
    cmd=short_text,
)
cluster_metas = st.builds(ClusterMeta, ports, st.booleans(), checkers, metadata)
namespace_ids = st.from_regex(r"[A-Za-z0-9_-]{1,40}", fullmatch=True)
namespace_infos = st.builds(NamespaceInfo, short_text, short_text, st.integers(0, 2**62))
versions = st.builds(Version, st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1), short_text)


@st.composite
def items(draw: st.DrawFn) -> Item:
    key = draw(keys)
    kind = draw(st.sampled_from(["instance", "meta", "tombstone", "cluster", "namespace", "setting"]))
    version = draw(versions)
    if kind == "instance":
        inst = draw(instances)
        return (key, inst.entry_id, Entry(version, inst))
    if kind == "meta":
        return (key, META_ENTRY_ID, Entry(version, draw(metas)))
    if kind == "cluster":
        return (key, cluster_entry_id(draw(clusters)), Entry(version, draw(cluster_metas)))
    if kind == "namespace":
        return (NAMESPACES_KEY, draw(namespace_ids), Entry(version, draw(namespace_infos)))
    if kind == "setting":
        return (SETTINGS_KEY, draw(namespace_ids), Entry(version, SettingText(draw(st.text(max_size=40)))))
    entry_id = draw(st.just(META_ENTRY_ID) | st.text(min_size=1, max_size=40))
    return (key, entry_id, Entry(version, None))


item_tuples = st.lists(items(), max_size=8).map(tuple)

changes = st.fixed_dictionaries(
    {},
    optional={"weight": weights, "healthy": st.booleans(), "enabled": st.booleans(), "metadata": metadata},
)

requests: st.SearchStrategy[ClientRequest] = st.one_of(
    st.builds(Register, keys, instances),
    st.builds(Deregister, keys, clusters, ips, ports),
    st.builds(UpdateInstance, keys, clusters, ips, ports, changes, st.booleans()),
    st.builds(Beat, keys, clusters, ips, ports, st.none() | instances),
    st.builds(CreateService, keys, metas),
    st.builds(UpdateService, keys, metas),
    st.builds(DeleteService, keys),
    st.builds(
        UpdateCluster,
        keys,
        clusters,
        st.none() | ports,
        st.none() | st.booleans(),
        st.none() | checkers,
        metadata,
    ),
    st.builds(CreateNamespace, short_text, short_text, short_text),
    st.builds(UpdateNamespace, short_text, short_text, short_text),
    st.builds(DeleteNamespace, short_text),
    st.builds(PutSetting, short_text, st.none() | st.text(max_size=40)),
)

body_values = st.one_of(
    st.text(max_size=20),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)
results = st.builds(
    Result,
    st.integers(100, 999),
    st.text(max_size=40) | st.dictionaries(st.text(max_size=12), body_values, max_size=5),
)


@st.composite
def snapshot_chunks(draw: st.DrawFn) -> SnapshotChunk:
    total = draw(st.integers(1, 1000))
    return SnapshotChunk(
        draw(st.booleans()),
        draw(st.integers(0, 2**63 - 1)),
        draw(st.integers(0, total - 1)),
        total,
        draw(item_tuples),
    )


messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(Ping, st.booleans(), st.text(max_size=30)),
    st.builds(Forward, st.integers(0, 2**63 - 1), requests),
    st.builds(ForwardReply, st.integers(0, 2**63 - 1), results),
    st.builds(SyncBatch, item_tuples),
    st.builds(
        Digest,
        st.lists(st.tuples(keys, st.integers(0, 2**64 - 1)), max_size=6).map(tuple),
        st.none() | short_text,
        st.none() | short_text,
    ),
    st.builds(Repair, item_tuples, st.lists(keys, max_size=5).map(tuple)),
    st.just(SnapshotRequest()),
    snapshot_chunks(),
)


def packed_round_trip(message: Message) -> Message:
    wire = msgpack.packb(encode_message(message), use_bin_type=True)
    return decode_message(msgpack.unpackb(wire, raw=False))


def check_decode(obj: Any) -> Message | None:
    """decode_message(obj): a Message, or None after a ProtocolError from an explicit check."""
    try:
        message = decode_message(obj)
    except ProtocolError as exc:
        assert not str(exc).startswith(INTERNAL_ERROR_PREFIX), f"unanticipated input slipped through: {exc}"
        return None
    # Anything accepted must survive a round trip unchanged.
    assert decode_message(encode_message(message)) == message
    return message


# ------------------------------------------------------------------------------------------------
# Round trips
# ------------------------------------------------------------------------------------------------


@EXAMPLES
@given(messages)
def test_round_trip(message: Message) -> None:
    assert decode_message(encode_message(message)) == message


@EXAMPLES
@given(messages)
def test_round_trip_through_msgpack(message: Message) -> None:
    decoded = packed_round_trip(message)
    assert decoded == message
    assert type(decoded) is type(message)


@pytest.mark.parametrize(
    "strategy",
    [
        st.builds(Ping, st.booleans(), short_text),
        st.builds(Forward, st.integers(0, 10), requests),
        st.builds(ForwardReply, st.integers(0, 10), results),
        st.builds(SyncBatch, item_tuples),
        st.builds(
            Digest,
            st.lists(st.tuples(keys, st.integers(0, 2**64 - 1)), max_size=3).map(tuple),
            st.none(),
            short_text,
        ),
        st.builds(Repair, item_tuples, st.lists(keys, max_size=3).map(tuple)),
        snapshot_chunks(),
    ],
    ids=["ping", "forward", "forward-reply", "sync", "digest", "repair", "snapshot-chunk"],
)
@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_round_trip_each_type(strategy: st.SearchStrategy[Message], data: st.DataObject) -> None:
    """Every message type separately (the union above could starve one of them)."""
    message = data.draw(strategy)
    assert packed_round_trip(message) == message


@settings(max_examples=100, deadline=None)
@given(requests)
def test_round_trip_every_request(request: ClientRequest) -> None:
    message = Forward(7, request)
    decoded = packed_round_trip(message)
    assert decoded == message
    assert isinstance(decoded, Forward)
    assert type(decoded.request) is type(request)


def test_decoded_collections_are_tuples() -> None:
    key = service_key("public", None, "svc")
    inst = make_instance("10.0.0.1", 80, metadata={"k": "v"})
    item = (key, inst.entry_id, Entry(Version(5, 1, "n1"), inst))
    decoded = packed_round_trip(Repair((item,), (key,)))
    assert isinstance(decoded, Repair)
    assert type(decoded.items) is tuple and type(decoded.items[0]) is tuple
    assert type(decoded.want) is tuple
    assert decoded.items[0][2].version == Version(5, 1, "n1")
    assert type(decoded.items[0][2]) is Entry and type(decoded.items[0][2].version) is Version
    digest = packed_round_trip(Digest(((key, 2**64 - 1),), "a", None))
    assert isinstance(digest, Digest)
    assert type(digest.digests) is tuple and type(digest.digests[0]) is tuple
    assert digest.digests[0] == (key, 2**64 - 1)


def test_layout_is_compact() -> None:
    assert encode_message(Ping(True, "10.0.0.1:8848", 7)) == ["ping", True, "10.0.0.1:8848", 7]
    assert decode_message(["ping", True, "a"]) == Ping(True, "a", 0)  # from a node that sends no start
    with pytest.raises(ProtocolError):
        decode_message(["ping", True, "a", -1])
    assert encode_message(SnapshotRequest()) == ["snapreq"]
    key = service_key("public", None, "svc")
    inst = make_instance("10.0.0.1", 80)
    item = (key, inst.entry_id, Entry(Version(5, 1, "n1"), None))
    assert encode_message(SyncBatch((item,))) == [
        "sync",
        [["public##DEFAULT_GROUP@@svc", "DEFAULT/10.0.0.1:80", 5, 1, "n1", None]],
    ]
    assert encode_message(ForwardReply(3, OK)) == ["fwdr", 3, 200, "ok"]


def test_encode_rejects_non_messages() -> None:
    with pytest.raises(TypeError):
        encode_message("ping")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# Specific rejections
# ------------------------------------------------------------------------------------------------

KEY = "public##DEFAULT_GROUP@@svc"
INST = ["i", "10.0.0.1", 80, "DEFAULT", 1.0, True, True, {}]
GOOD_ITEM = [KEY, "DEFAULT/10.0.0.1:80", 1, 0, "n1", INST]


def sync(*items: Any) -> list[Any]:
    return ["sync", list(items)]


def with_inst(index: int, value: Any) -> list[Any]:
    inst = list(INST)
    inst[index] = value
    return [KEY, "DEFAULT/10.0.0.1:80", 1, 0, "n1", inst]


BAD: dict[str, Any] = {
    "not a list": {"ping": True},
    "empty": [],
    "unknown tag": ["pong", True, "a"],
    "tag not a string": [1, True, "a"],
    "ping arity": ["ping", True],
    "ping ready not bool": ["ping", 1, "a"],
    "ping address too long": ["ping", True, "x" * (MAX_STRING + 1)],
    "snapreq arity": ["snapreq", 1],
    "negative request id": ["fwd", -1, ["dsvc", KEY]],
    "bool request id": ["fwd", True, ["dsvc", KEY]],
    "oversized request id": ["fwd", 2**63, ["dsvc", KEY]],
    "unknown request": ["fwd", 1, ["nuke", KEY]],
    "request not a list": ["fwd", 1, "dsvc"],
    "bad key separators": ["fwd", 1, ["dsvc", "public-DEFAULT_GROUP-svc"]],
    "key not canonical": ["fwd", 1, ["dsvc", "public##g@@a@@b"]],
    "key bad charset": ["fwd", 1, ["dsvc", "public##g@@a b"]],
    "key empty namespace": ["fwd", 1, ["dsvc", "##g@@a"]],
    "key too long": ["fwd", 1, ["dsvc", "public##g@@" + "a" * MAX_STRING]],
    "register bad ip": ["fwd", 1, ["reg", KEY, ["i", "300.1.1.1", 80, "DEFAULT", 1.0, True, True, {}]]],
    "register nan weight": [
        "fwd",
        1,
        ["reg", KEY, ["i", "1.1.1.1", 80, "DEFAULT", math.nan, True, True, {}]],
    ],
    "deregister port range": ["fwd", 1, ["dereg", KEY, "DEFAULT", "1.1.1.1", 65536]],
    "deregister bad cluster": ["fwd", 1, ["dereg", KEY, "a/b", "1.1.1.1", 80]],
    "update unknown change": ["fwd", 1, ["upd", KEY, "DEFAULT", "1.1.1.1", 80, {"ip": "2.2.2.2"}, False]],
    "update weight type": ["fwd", 1, ["upd", KEY, "DEFAULT", "1.1.1.1", 80, {"weight": "1"}, False]],
    "update weight range": ["fwd", 1, ["upd", KEY, "DEFAULT", "1.1.1.1", 80, {"weight": 10001}, False]],
    "update healthy type": ["fwd", 1, ["upd", KEY, "DEFAULT", "1.1.1.1", 80, {"healthy": 1}, False]],
    "update metadata type": ["fwd", 1, ["upd", KEY, "DEFAULT", "1.1.1.1", 80, {"metadata": {"a": 1}}, False]],
    "update changes not a map": ["fwd", 1, ["upd", KEY, "DEFAULT", "1.1.1.1", 80, [], False]],
    "beat instance not a list": ["fwd", 1, ["beat", KEY, "DEFAULT", "1.1.1.1", 80, "x"]],
    "service meta threshold": ["fwd", 1, ["csvc", KEY, ["m", 1.5, {}, "none"]]],
    "service meta nan": ["fwd", 1, ["usvc", KEY, ["m", math.nan, {}, "none"]]],
    "reply status range": ["fwdr", 1, 1000, "ok"],
    "reply body type": ["fwdr", 1, 200, ["ok"]],
    "reply body nested": ["fwdr", 1, 200, {"a": {"b": 1}}],
    "reply body nan": ["fwdr", 1, 200, {"a": math.nan}],
    "reply body infinity": ["fwdr", 1, 200, {"a": -math.inf}],
    "reply body too long": ["fwdr", 1, 200, "x" * (MAX_METADATA_CHARS + 1)],
    "items not a list": ["sync", {"a": 1}],
    "too many items": ["sync", [None] * (MAX_ITEMS + 1)],
    "item arity": sync(GOOD_ITEM[:5]),
    "item is a string": sync("abcdef"),
    "negative ms": sync([KEY, "DEFAULT/10.0.0.1:80", -1, 0, "n1", None]),
    "float ms": sync([KEY, "DEFAULT/10.0.0.1:80", 1.0, 0, "n1", None]),
    "oversized counter": sync([KEY, "DEFAULT/10.0.0.1:80", 1, 2**63, "n1", None]),
    "empty entry id": sync([KEY, "", 1, 0, "n1", None]),
    "entry id not a string": sync([KEY, 5, 1, 0, "n1", None]),
    "node not a string": sync([KEY, "x", 1, 0, None, None]),
    "value unknown": sync([KEY, "x", 1, 0, "n1", ["z"]]),
    "value empty": sync([KEY, "x", 1, 0, "n1", []]),
    "value is a string": sync([KEY, "x", 1, 0, "n1", "i"]),
    "instance arity": sync([KEY, "DEFAULT/10.0.0.1:80", 1, 0, "n1", INST[:7]]),
    "instance ip type": sync(with_inst(1, 7)),
    "instance empty ip": sync(
        [KEY, "DEFAULT/:80", 1, 0, "n1", ["i", "", 80, "DEFAULT", 1.0, True, True, {}]]
    ),
    "instance port negative": sync(with_inst(2, -1)),
    "instance port bool": sync(with_inst(2, True)),
    "instance cluster charset": sync(with_inst(3, "a_b")),
    "instance weight nan": sync(with_inst(4, math.nan)),
    "instance weight inf": sync(with_inst(4, math.inf)),
    "instance weight negative": sync(with_inst(4, -0.5)),
    "instance weight string": sync(with_inst(4, "1")),
    "instance healthy int": sync(with_inst(5, 1)),
    "instance enabled none": sync(with_inst(6, None)),
    "instance metadata list": sync(with_inst(7, [])),
    "instance metadata value int": sync(with_inst(7, {"a": 1})),
    "instance metadata key int": sync(with_inst(7, {1: "a"})),
    "instance metadata too large": sync(with_inst(7, {"a": "x" * MAX_METADATA_CHARS})),
    "entry id mismatch": sync([KEY, "DEFAULT/10.0.0.2:80", 1, 0, "n1", INST]),
    "meta under instance id": sync([KEY, "DEFAULT/10.0.0.1:80", 1, 0, "n1", ["m", 0.5, {}, "none"]]),
    "digest pair arity": ["digest", [[KEY]], None, None],
    "digest negative": ["digest", [[KEY, -1]], None, None],
    "digest oversized": ["digest", [[KEY, 2**64]], None, None],
    "digest low type": ["digest", [], 5, None],
    "repair want not keys": ["repair", [], [5]],
    "snapshot total zero": ["snap", True, 1, 0, 0, []],
    "snapshot seq past total": ["snap", True, 1, 3, 3, []],
    "snapshot ready type": ["snap", "yes", 1, 0, 1, []],
}


@pytest.mark.parametrize("obj", list(BAD.values()), ids=list(BAD))
def test_rejects(obj: Any) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_message(obj)
    reason = str(info.value)
    assert reason and len(reason) < 250
    assert not reason.startswith(INTERNAL_ERROR_PREFIX), reason


def test_the_rejection_cases_are_one_edit_from_valid() -> None:
    """Guard for the table above: the valid originals it mutates do decode."""
    assert decode_message(sync(GOOD_ITEM)) == SyncBatch(
        (
            (
                ServiceKey("public", "DEFAULT_GROUP", "svc"),
                "DEFAULT/10.0.0.1:80",
                Entry(Version(1, 0, "n1"), make_instance("10.0.0.1", 80)),
            ),
        )
    )
    assert isinstance(decode_message(["fwd", 1, ["dsvc", KEY]]), Forward)
    assert isinstance(
        decode_message(["fwd", 1, ["upd", KEY, "DEFAULT", "1.1.1.1", 80, {"weight": 2}, False]]), Forward
    )
    assert decode_message(["snap", True, 1, 2, 3, []]) == SnapshotChunk(True, 1, 2, 3, ())
    assert decode_message(["digest", [[KEY, 2**64 - 1]], None, None]) == Digest(
        ((ServiceKey("public", "DEFAULT_GROUP", "svc"), 2**64 - 1),), None, None
    )


def test_integer_weight_is_accepted_as_float() -> None:
    message = decode_message(sync(with_inst(4, 3)))
    assert isinstance(message, SyncBatch)
    inst = message.items[0][2].value
    assert isinstance(inst, Instance)
    assert inst.weight == 3.0 and type(inst.weight) is float


def test_max_items_is_accepted() -> None:
    item = [KEY, "#meta", 1, 0, "n1", None]
    message = decode_message(["sync", [item] * MAX_ITEMS])
    assert isinstance(message, SyncBatch)
    assert len(message.items) == MAX_ITEMS


# ------------------------------------------------------------------------------------------------
# Fuzzing
# ------------------------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=20),
    st.binary(max_size=10),
    st.sampled_from(
        [
            "ping",
            "fwd",
            "fwdr",
            "sync",
            "digest",
            "repair",
            "snapreq",
            "snap",
            "i",
            "m",
            "reg",
            "dereg",
            "upd",
            "beat",
            "csvc",
            "usvc",
            "dsvc",
            KEY,
            "#meta",
            "DEFAULT",
            "DEFAULT/10.0.0.1:80",
            "weight",
            "metadata",
        ]
    ),
)
json_like = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=8)
        | st.lists(children, max_size=8).map(tuple)
        | st.dictionaries(st.text(max_size=8) | st.integers(), children, max_size=5)
    ),
    max_leaves=40,
)
small_json = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=6,
)
tagged = st.builds(
    lambda tag, rest: [tag, *rest],
    st.sampled_from(["ping", "fwd", "fwdr", "sync", "digest", "repair", "snapreq", "snap"]),
    st.lists(json_like, max_size=6),
)


@settings(max_examples=300, deadline=None)
@given(json_like | tagged)
def test_fuzz_arbitrary_structures(obj: Any) -> None:
    check_decode(obj)


def paths(obj: Any, prefix: tuple[int | str, ...] = ()) -> list[tuple[int | str, ...]]:
    """Every position inside nested lists and dicts (not the root)."""
    found: list[tuple[int | str, ...]] = []
    if isinstance(obj, list):
        for i, child in enumerate(obj):
            found.append((*prefix, i))
            found.extend(paths(child, (*prefix, i)))
    elif isinstance(obj, dict):
        for k, child in obj.items():
            found.append((*prefix, k))
            found.extend(paths(child, (*prefix, k)))
    return found


def mutate(obj: Any, path: tuple[int | str, ...], how: str, value: Any) -> None:
    parent = obj
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if how == "drop":
        del parent[last]
    elif how == "replace":
        parent[last] = value
    elif isinstance(parent, list):  # insert
        parent.insert(int(last), value)
    else:
        parent[f"{last}x"] = value


@settings(max_examples=400, deadline=None)
@given(messages, st.data())
def test_fuzz_mutated_encodings(message: Message, data: st.DataObject) -> None:
    obj = msgpack.unpackb(msgpack.packb(encode_message(message), use_bin_type=True), raw=False)
    for _ in range(data.draw(st.integers(1, 3))):
        candidates = paths(obj)
        if not candidates:
            break
        path = data.draw(st.sampled_from(candidates))
        how = data.draw(st.sampled_from(["drop", "replace", "insert"]))
        mutate(obj, path, how, data.draw(small_json))
    check_decode(obj)


# ------------------------------------------------------------------------------------------------
# DecodeCache: keys and cluster names validated once across messages
# ------------------------------------------------------------------------------------------------


def test_decode_cache_hands_out_one_key_object_across_messages() -> None:
    cache = DecodeCache()
    first = decode_message(sync(GOOD_ITEM), cache)
    second = decode_message(["fwd", 7, ["dsvc", KEY]], cache)
    assert isinstance(first, SyncBatch) and isinstance(second, Forward)
    assert first.items[0][0] is second.request.key
    assert first.items[0][0] == ServiceKey("public", "DEFAULT_GROUP", "svc")
    assert decode_message(sync(GOOD_ITEM)) == first  # the same message without a cache


@pytest.mark.parametrize("name", ["key not canonical", "key bad charset", "key empty namespace"])
def test_decode_cache_never_keeps_what_failed(name: str) -> None:
    cache = DecodeCache()
    for _ in range(2):  # the second time too: a bad key is checked again, not remembered
        with pytest.raises(ProtocolError):
            decode_message(BAD[name], cache)
    assert cache.keys == {}


def test_decode_cache_is_bounded_in_bytes() -> None:
    cache = DecodeCache(max_bytes=DECODE_ENTRY_BYTES * 10)
    for i in range(100):
        decode_message(["fwd", i, ["dsvc", f"public##DEFAULT_GROUP@@svc-{i}"]], cache)
        assert cache.used_bytes <= cache.max_bytes
        assert len(cache.keys) + len(cache.clusters) < 10
    assert "public##DEFAULT_GROUP@@svc-99" in cache.keys
