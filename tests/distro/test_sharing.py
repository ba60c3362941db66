"""distro/sharing.py: equal repeated values become one object, the tables stay bounded, nothing changes."""

from __future__ import annotations

import math

import msgpack
import pytest

from distro import sharing
from distro.codec import decode_message, encode_message
from distro.datum import Entry
from distro.messages import SyncBatch
from distro.model import Instance, make_instance, service_key
from distro.versions import Version


def _fresh(text: str) -> str:
    return "".join(list(text))  # a new string object with the same value


def test_equal_values_share_one_object() -> None:
    assert sharing.share_str(_fresh("DEFAULT")) is sharing.share_str(_fresh("DEFAULT"))
    port = int(_fresh("8080"))
    assert sharing.share_port(port) is sharing.share_port(int(_fresh("8080")))
    assert sharing.share_weight(float(_fresh("2.5"))) is sharing.share_weight(float(_fresh("2.5")))
    one = sharing.share_metadata({_fresh("k"): _fresh("v")})
    assert one is sharing.share_metadata({"k": "v"})
    assert one == {"k": "v"}
    assert sharing.share_metadata({}) is sharing.EMPTY_METADATA


def test_shared_metadata_is_read_only_and_keeps_its_order() -> None:
    shared = sharing.share_metadata({"b": "1", "a": "2"})
    with pytest.raises(TypeError):
        shared["c"] = "3"  # type: ignore[index]
    assert list(shared) == ["b", "a"]
    assert sharing.share_metadata({"a": "2", "b": "1"}) == shared  # equal, whatever the order


def test_nan_is_not_kept() -> None:
    before = len(sharing._weights)
    assert math.isnan(sharing.share_weight(float("nan")))
    assert len(sharing._weights) == before


def test_tables_are_bounded() -> None:
    for port in range(sharing.MAX_SHARED_VALUES + 10):
        sharing.share_port(port)
    assert len(sharing._ports) <= sharing.MAX_SHARED_VALUES
    for n in range(sharing.MAX_SHARED_VALUES + 10):
        sharing.share_metadata({"n": str(n)})
    assert len(sharing._metadata) <= sharing.MAX_SHARED_VALUES
    big = {"k": "x" * (sharing.MAX_SHARED_METADATA_CHARS + 1)}
    assert sharing.share_metadata(big) is not sharing.share_metadata(dict(big))  # too large to keep


def test_instances_made_and_decoded_share_their_repeated_values() -> None:
    made = [make_instance(_fresh(f"10.0.0.{i}"), 9000, cluster=_fresh("c1"), metadata={"env": _fresh("prod")})
            for i in range(1, 3)]
    assert made[0].cluster is made[1].cluster
    assert made[0].port is made[1].port
    assert made[0].metadata is made[1].metadata
    assert make_instance("10.0.0.3", 1).metadata is sharing.EMPTY_METADATA
    key = service_key(None, None, "svc")
    items = tuple((key, inst.entry_id, Entry(Version(1_700_000_000_000, i, "n1"), inst)) for i, inst in enumerate(made))
    wire = msgpack.packb(encode_message(SyncBatch(items)), use_bin_type=True)
    decoded = decode_message(msgpack.unpackb(wire, raw=False))
    assert isinstance(decoded, SyncBatch)
    (_, _, first), (_, _, second) = decoded.items
    assert first == items[0][2] and second == items[1][2]  # nothing changed but the number of copies
    a, b = first.value, second.value
    assert isinstance(a, Instance) and isinstance(b, Instance)
    assert a.cluster is made[0].cluster and a.metadata is b.metadata is made[0].metadata
    assert first.version.node is second.version.node
    assert first.version.ms is second.version.ms
    assert a.entry_id is decoded.items[0][1]  # the instance keeps the item's entry id, no second copy
