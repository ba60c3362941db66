"""distro.model validation: every Nacos error text the model can answer with is reached by some input, valid
inputs are accepted (and normalised where Nacos normalises), and ``service_key`` resolves grouped names."""

from __future__ import annotations

import math
from dataclasses import FrozenInstanceError

import pytest

from distro.model import (
    DEFAULT_GROUP,
    DEFAULT_NAMESPACE,
    META_BEAT_INTERVAL,
    META_BEAT_TIMEOUT,
    META_DELETE_TIMEOUT,
    Instance,
    ServiceKey,
    ValidationError,
    instance_entry_id,
    instances_from_columns,
    make_instance,
    parse_metadata,
    service_key,
    validate_cluster,
    validate_ip,
    validate_namespace,
    validate_port,
    validate_protect_threshold,
    validate_weight,
)

BAD_IP = "instance format invalid: Your IP address is spelled incorrectly"


def error_of(fn, *args, **kwargs) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        fn(*args, **kwargs)
    assert info.value.status == 400
    assert str(info.value) == info.value.message
    return info.value


# ------------------------------------------------------------------------------------------------
# service_key
# ------------------------------------------------------------------------------------------------
def test_service_key_defaults() -> None:
    key = service_key(None, None, "svc")
    assert key == ServiceKey(DEFAULT_NAMESPACE, DEFAULT_GROUP, "svc")
    assert key.grouped_name == "DEFAULT_GROUP@@svc"
    assert str(key) == "public##DEFAULT_GROUP@@svc"
    assert service_key("", "", "svc") == key


def test_service_key_without_separator_uses_group_param() -> None:
    assert service_key("ns-1", "orders", "api.v1:x_y-z") == ServiceKey("ns-1", "orders", "api.v1:x_y-z")


def test_service_key_with_separator_overrides_group_param() -> None:
    key = service_key(None, "ignored", "grp@@svc")
    assert key == ServiceKey("public", "grp", "svc")
    assert key.grouped_name == "grp@@svc"


@pytest.mark.parametrize(
    ("name", "group", "text"),
    [
        ("", None, "Param 'serviceName' is required."),
        ("s" * 257, None, "Param 'serviceName' is too long: at most 256 characters"),
        ("a@@b@@c", None, "Param 'serviceName' is illegal, it should be format as 'groupName@@serviceName'"),
        ("grp@@", None, "Param 'serviceName' is illegal, it should be format as 'groupName@@serviceName'"),
        ("@@svc", None, "Param 'serviceName' is illegal, groupName can't be empty"),
        ("svc", "a@@b", "Param 'groupName' is illegal"),
        ("svc", "g@", "Param 'groupName' is illegal, it can't end with '@'"),
        ("@svc", "g", "Param 'serviceName' is illegal, it can't start with '@'"),
        ("g@@@svc", None, "Param 'serviceName' is illegal, it can't start with '@'"),
        ("svc name", None, "dom name can only have these characters: 0-9a-zA-Z-._:, current: DEFAULT_GROUP@@svc name"),
        ("svc", "gr/p", "dom name can only have these characters: 0-9a-zA-Z-._:, current: gr/p@@svc"),
        ("g p@@svc", None, "dom name can only have these characters: 0-9a-zA-Z-._:, current: g p@@svc"),
    ],
)
def test_service_key_errors(name: str, group: str | None, text: str) -> None:
    assert error_of(service_key, None, group, name).message == text


GROUPED_TOO_LONG = "Param 'serviceName' is too long: groupName@@serviceName has at most 256 characters"


def test_grouped_name_round_trips() -> None:
    # a single '@' inside a name is fine; only the ambiguous "@@@" boundary is refused
    key = service_key(None, "g@x", "s@y")
    assert ServiceKey.parse(str(key)) == key
    assert service_key(None, None, key.grouped_name) == key


def test_grouped_name_length_limit() -> None:
    bare = "s" * (256 - len("DEFAULT_GROUP@@"))
    assert len(service_key(None, None, bare).grouped_name) == 256
    assert error_of(service_key, None, None, bare + "s").message == GROUPED_TOO_LONG
    assert error_of(service_key, None, "g" * 252, "svc").message == GROUPED_TOO_LONG
    assert service_key(None, "g" * 251, "svc").grouped_name == "g" * 251 + "@@svc"
    assert service_key(None, None, "g" * 200 + "@@" + "s" * 54).service == "s" * 54


@pytest.mark.parametrize("namespace", ["a b", "n" * 129, "ns/1", "ns#"])
def test_namespace_errors(namespace: str) -> None:
    message = error_of(service_key, namespace, None, "svc").message
    assert message.startswith(
        "Param 'namespaceId' is illegal, it can only have these characters: 0-9a-zA-Z-._: (at most 128), current: "
    )
    assert message.endswith(namespace[:128])


def test_namespace_accepted() -> None:
    assert validate_namespace("n" * 128) == "n" * 128
    assert validate_namespace("a-b_c.d:e") == "a-b_c.d:e"


def test_service_key_parse_round_trip_and_errors() -> None:
    key = ServiceKey("ns", "g", "s")
    assert ServiceKey.parse(str(key)) == key
    for bad in ("ns@@g", "ns##g", "plain"):
        assert error_of(ServiceKey.parse, bad).message == f"bad service key: {bad}"


# ------------------------------------------------------------------------------------------------
# cluster, ip, port, weight
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["", "c_1", "c.1", "c 1", "c/1", "c" * 257])
def test_cluster_errors(name: str) -> None:
    assert error_of(validate_cluster, name).message == (
        f"cluster name can only have these characters: 0-9a-zA-Z-, current: {name}"
    )


def test_cluster_accepted() -> None:
    assert validate_cluster("DEFAULT") == "DEFAULT"
    assert validate_cluster("az-1") == "az-1"
    assert validate_cluster("c" * 256) == "c" * 256


def test_ip_required() -> None:
    assert error_of(validate_ip, "").message == "Param 'ip' is required."


@pytest.mark.parametrize(
    "ip", ["1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.999", "0001.2.3.4", "1..2.3", "1.2.3.", "a b", "h/x", "x" * 254]
)
def test_ip_spelled_incorrectly(ip: str) -> None:
    assert error_of(validate_ip, ip).message == BAD_IP


@pytest.mark.parametrize("ip", ["10.0.0.1", "0.0.0.0", "255.255.255.255", "host-1.example.com", "::1", "[fe80::1%eth0]"])
def test_ip_accepted(ip: str) -> None:
    assert validate_ip(ip) == ip


@pytest.mark.parametrize("port", [-1, 65536])
def test_port_errors(port: int) -> None:
    assert error_of(validate_port, port).message == (
        f"Param 'port' is illegal, it must be an integer in [0, 65535], current: {port}"
    )


def test_port_accepted() -> None:
    assert validate_port(0) == 0
    assert validate_port(65535) == 65535


@pytest.mark.parametrize("weight", [-0.5, 10000.5, math.nan, math.inf])
def test_weight_errors(weight: float) -> None:
    assert error_of(validate_weight, weight).message == "instance format invalid: The weights range from 0.0 to 10000.0"


def test_weight_bounds_and_rounding() -> None:
    assert validate_weight(0.0) == 0.0
    assert validate_weight(10000.0) == 10000.0
    assert validate_weight(0.001) == 0.01
    assert validate_weight(2.5) == 2.5


def test_make_instance_validates_every_field() -> None:
    inst = make_instance(" 10.0.0.1 ", 8080, cluster="c1", weight=0.001, metadata={"a": "b"})
    assert inst == Instance("10.0.0.1", 8080, "c1", 0.01, True, True, {"a": "b"})
    assert inst.entry_id == instance_entry_id("c1", "10.0.0.1", 8080) == "c1/10.0.0.1:8080"
    assert inst.instance_id(ServiceKey("public", "g", "s")) == "10.0.0.1#8080#c1#g@@s"
    assert error_of(make_instance, "300.0.0.1", 1).message == BAD_IP
    assert error_of(make_instance, "10.0.0.1", 70000).message.startswith("Param 'port' is illegal")
    assert error_of(make_instance, "10.0.0.1", 1, cluster="a_b").message.startswith("cluster name can only")
    assert error_of(make_instance, "10.0.0.1", 1, weight=-1).message.startswith("instance format invalid: The weights")


# ------------------------------------------------------------------------------------------------
# metadata
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", {}),
        ("   ", {}),
        ('{"a": "1", "b": 2, "c": true, "d": false, "e": null, "f": 1.5}', {"a": "1", "b": "2", "c": "true", "d": "false", "f": "1.5"}),
        ("a=1,b=2", {"a": "1", "b": "2"}),
        (" a = 1 , ,b=, c=x=y ", {"a": "1", "b": "", "c": "x=y"}),
    ],
)
def test_metadata_accepted(raw: str, expected: dict[str, str]) -> None:
    assert parse_metadata(raw) == expected


@pytest.mark.parametrize("raw", ["{bad", '{"a": {"b": 1}}', '{"a": [1]}', "a", "a=1,b", "=v", " =v", "[1, 2]", '{"a":' + "[" * 2000])
def test_metadata_format_incorrect(raw: str) -> None:
    assert error_of(parse_metadata, raw).message == f"metadata format incorrect:{raw.strip()}"


@pytest.mark.parametrize("raw", ['{"k": "\\ud800"}', '{"\\udfff": "v"}', '{"k": "a\\ud83d"}'])
def test_metadata_with_a_lone_surrogate_escape_is_refused(raw: str) -> None:
    # json.loads accepts these escapes, but UTF-8 (the peer link's msgpack, the HTTP response) cannot carry them
    assert "not valid Unicode" in error_of(parse_metadata, raw).message
    assert parse_metadata('{"k": "\\ud83d\\ude00"}') == {"k": "\U0001f600"}  # a proper pair is fine


def test_metadata_bounds() -> None:
    assert len(parse_metadata(",".join(f"k{i}=v" for i in range(64)))) == 64
    assert error_of(parse_metadata, ",".join(f"k{i}=v" for i in range(65))).message == (
        "metadata has too many keys: at most 64"
    )
    assert error_of(parse_metadata, "a=1", max_keys=0).message == "metadata has too many keys: at most 0"
    assert parse_metadata("a=" + "x" * 4094) == {"a": "x" * 4094}
    assert error_of(parse_metadata, "a=" + "x" * 4095).message == "metadata is too large: at most 4096 bytes"
    # bytes, not characters
    assert error_of(parse_metadata, "a=" + "\u00e9" * 2048).message == "metadata is too large: at most 4096 bytes"
    assert error_of(parse_metadata, "a=12345", max_bytes=4).message == "metadata is too large: at most 4 bytes"


def test_metadata_timings_override_defaults_only_when_all_digits() -> None:
    inst = make_instance(
        "10.0.0.1", 1, metadata={META_BEAT_INTERVAL: "1000", META_BEAT_TIMEOUT: "3000", META_DELETE_TIMEOUT: "9000"}
    )
    assert (inst.beat_interval_ms(5), inst.heartbeat_timeout_ms(15), inst.expire_ms(30)) == (1000, 3000, 9000)
    for bad in ("-1", "1e3", "", "12 "):
        odd = make_instance("10.0.0.1", 1, metadata={META_BEAT_TIMEOUT: bad})
        assert odd.heartbeat_timeout_ms(15) == 15
    plain = make_instance("10.0.0.1", 1)
    assert (plain.beat_interval_ms(5), plain.heartbeat_timeout_ms(15), plain.expire_ms(30)) == (5, 15, 30)


@pytest.mark.parametrize("key", [META_BEAT_TIMEOUT, META_DELETE_TIMEOUT])
@pytest.mark.parametrize("value", ["999999999999", "3600001", "999", "0", "9" * 40])
def test_expiry_timings_out_of_range_are_refused_with_the_range(key: str, value: str) -> None:
    # Issue 14, finding 5: preserved.ip.delete.timeout=999999999999 kept a silent instance for ever.
    error = error_of(make_instance, "10.0.0.1", 1, metadata={key: value})
    assert error.message == f"metadata {key} must be a whole number of milliseconds in 1000..3600000, got {value[:20]}"


def test_expiry_timings_at_the_bounds_are_taken_and_stored_extremes_are_clamped() -> None:
    edge = make_instance("10.0.0.1", 1, metadata={META_BEAT_TIMEOUT: "1000", META_DELETE_TIMEOUT: "3600000"})
    assert (edge.heartbeat_timeout_ms(15), edge.expire_ms(30)) == (1000, 3_600_000)
    # An entry that bypassed validation (replicated by an older node) is clamped where it is read.
    stored = Instance("10.0.0.1", 1, metadata={META_BEAT_TIMEOUT: "5", META_DELETE_TIMEOUT: "999999999999"})
    assert (stored.heartbeat_timeout_ms(15), stored.expire_ms(30)) == (1000, 3_600_000)
    assert Instance("10.0.0.1", 1, metadata={META_DELETE_TIMEOUT: "\u0661\u0662"}).expire_ms(30) == 30


# ------------------------------------------------------------------------------------------------
# protect threshold
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [-0.01, 1.01, math.nan])
def test_protect_threshold_errors(value: float) -> None:
    assert error_of(validate_protect_threshold, value).message == (
        "Param 'protectThreshold' is illegal, it must be a number in [0, 1]"
    )


@pytest.mark.parametrize("value", [0.0, 0.5, 1.0])
def test_protect_threshold_accepted(value: float) -> None:
    assert validate_protect_threshold(value) == value


# -- Instance keeps its entry id, not a separate ip -------------------------------------------------------------
@pytest.mark.parametrize(
    ("ip", "port", "cluster"),
    [("10.0.0.1", 8080, "DEFAULT"), ("::1", 0, "c-1"), ("[fe80::1%eth0]", 65535, "x"), ("host.example", 1, "DEFAULT")],
)
def test_instance_reads_its_ip_back_out_of_its_entry_id(ip: str, port: int, cluster: str) -> None:
    inst = Instance(ip, port, cluster)
    assert (inst.ip, inst.port, inst.cluster) == (ip, port, cluster)
    assert inst.entry_id == f"{cluster}/{ip}:{port}"
    moved = inst.replace(ip="10.9.9.9", port=7, cluster="other")
    assert (moved.ip, moved.port, moved.cluster, moved.entry_id) == ("10.9.9.9", 7, "other", "other/10.9.9.9:7")


def test_instance_is_an_immutable_value() -> None:
    inst = Instance("10.0.0.1", 80, metadata={"k": "v"})
    same = Instance("10.0.0.1", 80, metadata={"k": "v"})
    assert inst == same and inst != same.replace(weight=2.0) and inst != same.replace(port=81)
    assert inst != same.replace(connection="c") and inst != same.replace(assigned_id="1")
    assert inst != same.replace(orphaned_ms=5)
    assert inst.replace(healthy=False) == inst.with_health(False) != inst
    assert inst.replace(weight=2.0).entry_id is inst.entry_id  # the id is shared while ip, port and cluster stay
    with pytest.raises(FrozenInstanceError):
        inst.port = 81  # type: ignore[misc]
    with pytest.raises(TypeError):
        hash(inst)
    with pytest.raises(TypeError, match="no field 'colour'"):
        inst.replace(colour="red")
    assert repr(inst) == (
        "Instance(ip='10.0.0.1', port=80, cluster='DEFAULT', weight=1.0, healthy=True, enabled=True, "
        "metadata={'k': 'v'}, connection='', assigned_id='', orphaned_ms=0)"
    )


def test_service_keys_hash_compare_and_sort_by_their_fields() -> None:
    a = ServiceKey("public", "DEFAULT_GROUP", "a")
    b = ServiceKey("public", "DEFAULT_GROUP", "b")
    assert a == ServiceKey("public", "DEFAULT_GROUP", "a") and hash(a) == hash(ServiceKey(*a))
    assert sorted([b, ServiceKey("ns", "g", "z"), a]) == [ServiceKey("ns", "g", "z"), a, b]
    assert {a: 1}[ServiceKey("public", "DEFAULT_GROUP", "a")] == 1
    assert (a.namespace, a.group, a.service, a.grouped_name) == ("public", "DEFAULT_GROUP", "a", "DEFAULT_GROUP@@a")
    with pytest.raises(AttributeError):
        a.service = "x"  # type: ignore[misc]


def test_instances_built_from_columns_are_the_instances_the_constructor_makes() -> None:
    """The bulk builder (a snapshot's instance blocks) makes real, immutable ``Instance`` s equal to the
    constructor's, with no connection, assigned id or orphan mark; columns of different lengths are refused."""
    rows = [("10.0.0.1", 80, "DEFAULT", 1.0, True, True, {}), ("10.0.0.2", 81, "east", 2.5, False, True, {"k": "v"}),
            ("10.0.0.3", 82, "east", 0.0, True, False, {})]
    ids = [instance_entry_id(cluster, ip, port) for ip, port, cluster, *_ in rows]
    columns = [list(col) for col in zip(*rows, strict=True)][1:]
    built = instances_from_columns(ids, *columns)
    expected = [Instance(ip, port, cluster, weight, up, on, meta) for ip, port, cluster, weight, up, on, meta in rows]
    assert built == expected
    assert all(type(inst) is Instance for inst in built)
    assert [(i.ip, i.connection, i.assigned_id, i.orphaned_ms) for i in built] == [(r[0], "", "", 0) for r in rows]
    assert built[1].checksum_digest() == expected[1].checksum_digest()
    with pytest.raises(FrozenInstanceError):
        built[0].port = 81  # type: ignore[misc]
    with pytest.raises(ValueError, match="different lengths"):
        instances_from_columns(ids, *columns[:-1], columns[-1][:2])
