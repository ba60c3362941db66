"""The snapshot's instance blocks on the wire (``distro.codec``): one key's live instances as columns.

- A snapshot chunk with blocks survives the msgpack round trip unchanged, whatever its instances carry
  (metadata, a gRPC connection, an assigned id, an orphan mark).
- A block decodes to exactly the entries that the same instances sent as items decode to, and shares
  repeated values (cluster names, metadata mappings, version milliseconds) as the item path does.
- A block's digest (the XOR of its entries' hashes, when the sender gives it) travels as it was given.
- Each malformed block (wrong arity or column length, a value of the wrong type or out of range, a reserved
  key, an entry id twice, a digest that is no uint64) is refused with a clear ``ProtocolError``, never the
  safety net's.
"""

from __future__ import annotations

import copy
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distro.codec import INTERNAL_ERROR_PREFIX, ProtocolError, decode_message, encode_message
from distro.datum import Entry, datum_digest
from distro.messages import SnapshotChunk, SyncBatch
from distro.model import Instance, ServiceKey
from distro.versions import Version
from tests.distro.test_codec import instances, keys, versions

KEY = ServiceKey("public", "DEFAULT_GROUP", "svc")


def round_trip(obj: Any) -> Any:
    return msgpack.unpackb(msgpack.packb(obj, use_bin_type=True), raw=False)


extras = st.tuples(st.sampled_from(["", "conn-1"]), st.sampled_from(["", "1234"]), st.sampled_from([0, 1, 2**40]))


Block = tuple[ServiceKey, dict[str, Entry], int | None]


@st.composite
def blocks(draw: st.DrawFn) -> Block:
    datum: dict[str, Entry] = {}
    for inst in draw(st.lists(instances, max_size=6)):
        connection, assigned_id, orphaned_ms = draw(extras)
        inst = inst.replace(connection=connection, assigned_id=assigned_id, orphaned_ms=orphaned_ms)
        datum[inst.entry_id] = Entry(draw(versions), inst)
    digest = draw(st.sampled_from([None, datum_digest(datum.items()), 0, 2**64 - 1]))
    return draw(keys), datum, digest


@settings(max_examples=100, deadline=None)
@given(st.lists(blocks(), max_size=3), st.booleans())
def test_a_chunk_with_blocks_survives_the_round_trip(parts: list[Block], last: bool) -> None:
    chunk = SnapshotChunk(True, 7, 0, 1 if last else 2, (), tuple(parts))
    decoded = decode_message(round_trip(encode_message(chunk)))
    assert decoded == chunk
    assert isinstance(decoded, SnapshotChunk)
    assert decoded.entry_count == sum(len(datum) for _, datum, _ in parts)
    assert [digest for _, _, digest in decoded.blocks] == [digest for _, _, digest in parts]


@settings(max_examples=100, deadline=None)
@given(blocks())
def test_a_block_decodes_to_what_the_same_items_decode_to(block: Block) -> None:
    key, datum, _ = block
    as_block = decode_message(round_trip(encode_message(SnapshotChunk(True, 1, 0, 1, (), (block,)))))
    as_items = decode_message(round_trip(encode_message(SyncBatch(tuple((key, e, entry) for e, entry in datum.items())))))
    assert isinstance(as_block, SnapshotChunk) and isinstance(as_items, SyncBatch)
    assert [(k, e, entry) for k, d, _ in as_block.blocks for e, entry in d.items()] == list(as_items.items)


def test_repeated_values_are_shared() -> None:
    entries = {
        f"DEFAULT/10.0.0.{i}:8080": Entry(Version(1_800_000_000_000, i, "n1"),
                                          Instance(f"10.0.0.{i}", 8080, "DEFAULT", metadata={"zone": "a"}))
        for i in range(3)
    }
    decoded = decode_message(round_trip(encode_message(SnapshotChunk(True, 1, 0, 1, (), ((KEY, entries, None),)))))
    assert isinstance(decoded, SnapshotChunk)
    got = list(decoded.blocks[0][1].values())
    first = got[0]
    for entry in got[1:]:
        assert entry.ms is first.ms and entry.node is first.node
        inst, other = entry.value, first.value
        assert isinstance(inst, Instance) and isinstance(other, Instance)
        assert inst.cluster is other.cluster and inst.metadata is other.metadata and inst.weight is other.weight


GOOD_BLOCK = ["public##DEFAULT_GROUP@@svc", ["10.0.0.1", "10.0.0.2"], [80, 81], ["DEFAULT", "DEFAULT"], [1.0, 2.0],
              [True, False], [True, True], [0, 0], [{}], [5, 5], [0, 1], ["n1", "n2"], []]


def snap(block: list[Any]) -> list[Any]:
    return ["snap", True, 1, 0, 1, [], [block]]


def with_field(index: int, value: Any) -> list[Any]:
    block = copy.deepcopy(GOOD_BLOCK)
    block[index] = value
    return snap(block)


BAD: dict[str, Any] = {
    "blocks not a list": ["snap", True, 1, 0, 1, [], 5],
    "block arity": snap(GOOD_BLOCK[:12]),
    "reserved key": with_field(0, "__namespaces__"),
    "key not canonical": with_field(0, "svc"),
    "ips not a list": with_field(1, "10.0.0.1"),
    "ip empty": with_field(1, ["", "10.0.0.2"]),
    "ip int": with_field(1, [1, "10.0.0.2"]),
    "ports short": with_field(2, [80]),
    "port out of range": with_field(2, [80, 70000]),
    "port bool": with_field(2, [80, True]),
    "cluster invalid": with_field(3, ["DEFAULT", "a/b"]),
    "weight int": with_field(4, [1.0, 2]),
    "weight bool": with_field(4, [1.0, True]),
    "weight negative": with_field(4, [1.0, -1.0]),
    "weight nan": with_field(4, [1.0, float("nan")]),
    "healthy int": with_field(5, [True, 1]),
    "enabled none": with_field(6, [True, None]),
    "metadata index out of range": with_field(7, [0, 1]),
    "metadata index negative": with_field(7, [0, -1]),
    "metadata table not maps": with_field(8, ["a"]),
    "metadata value int": with_field(8, [{"a": 1}]),
    "metadata table longer than the block": with_field(8, [{}, {}, {}]),
    "ms negative": with_field(9, [5, -5]),
    "ms float": with_field(9, [5, 5.0]),
    "counter too large": with_field(10, [0, 2**64]),
    "node too long": with_field(11, ["n1", "x" * 2000]),
    "node int": with_field(11, ["n1", 5]),
    "node a list": with_field(11, ["n1", ["n2"]]),
    "cluster int": with_field(3, ["DEFAULT", 1]),
    "cluster a list": with_field(3, [["DEFAULT"], "DEFAULT"]),
    "ms bool": with_field(9, [1, True]),
    "port float": with_field(2, [80, 80.0]),
    "ip too long": with_field(1, ["10.0.0.1", "1" * 254]),
    "extra arity": with_field(12, [[0, "c"]]),
    "extra index out of range": with_field(12, [[2, "c", "", 0]]),
    "extra connection int": with_field(12, [[0, 5, "", 0]]),
    "extra orphaned negative": with_field(12, [[0, "c", "", -1]]),
    "entry id twice": snap([GOOD_BLOCK[0], ["10.0.0.1", "10.0.0.1"], [80, 80], *GOOD_BLOCK[3:]]),
    "digest negative": snap([*GOOD_BLOCK, -1]),
    "digest over 64 bits": snap([*GOOD_BLOCK, 2**64]),
    "digest a string": snap([*GOOD_BLOCK, "12"]),
    "digest a float": snap([*GOOD_BLOCK, 1.0]),
    "block arity 15": snap([*GOOD_BLOCK, 1, 2]),
}


@pytest.mark.parametrize("obj", list(BAD.values()), ids=list(BAD))
def test_rejects(obj: Any) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_message(obj)
    reason = str(info.value)
    assert reason and len(reason) < 250
    assert not reason.startswith(INTERNAL_ERROR_PREFIX), reason


def test_the_rejection_cases_are_one_edit_from_valid() -> None:
    decoded = decode_message(snap(GOOD_BLOCK))
    assert isinstance(decoded, SnapshotChunk) and decoded.entry_count == 2
    (key, datum, digest), = decoded.blocks
    assert key == KEY and digest is None
    with_digest = decode_message(snap([*GOOD_BLOCK, 2**64 - 1]))
    assert isinstance(with_digest, SnapshotChunk) and with_digest.blocks[0][2] == 2**64 - 1
    assert datum["DEFAULT/10.0.0.2:81"] == Entry(Version(5, 1, "n2"), Instance("10.0.0.2", 81, weight=2.0, healthy=False))
