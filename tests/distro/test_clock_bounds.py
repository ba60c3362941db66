"""Versions from the future cannot poison the hybrid clock (issue 14, finding 4b).

Before: one entry with counter 2^63-1 (or a millisecond part years ahead) was merged like any other; the
clock then issued counter 2^63, which every peer's decoder refuses, so links flapped and replicas diverged.

Now:
- a merge refuses (and counts) every version whose milliseconds are beyond ``now_ms + max_clock_skew_ms``;
- the clock never issues a version the codec cannot carry: when its counter would pass
  :data:`~distro.versions.MAX_COUNTER` it moves to the next millisecond instead.
"""

from __future__ import annotations

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from distro.codec import MAX_INT64, decode_message, encode_message
from distro.config import DistroConfig
from distro.datum import Entry
from distro.messages import Message, SyncBatch
from distro.model import make_instance
from distro.requests import Register
from distro.testing.harness import Harness
from distro.versions import MAX_COUNTER, MAX_MS, HybridClock, Version
from tests.distro import PROPERTIES
from tests.distro.test_node import key_owned_by, started

SKEW_MS = DistroConfig().max_clock_skew_ms
INST = make_instance("10.0.0.1", 8080)
OTHER = make_instance("10.0.0.2", 8080)


def wire_roundtrip(message: Message) -> Message:
    """What a peer's decoder makes of a message (raises ProtocolError when it refuses it)."""
    packed = msgpack.packb(encode_message(message), use_bin_type=True)
    return decode_message(msgpack.unpackb(packed, raw=False, strict_map_key=True))


def inject(h: Harness, target: str, *entries: Entry, sender: str = "n2") -> None:
    key = key_owned_by("n1")
    items = tuple((key, INST.entry_id, entry) for entry in entries)
    h[target].handle_peer(sender, SyncBatch(items), h.now_ms)
    h.collect(target)


def test_a_counter_at_the_codec_limit_does_not_make_the_node_issue_undecodable_versions() -> None:
    h = started()
    inject(h, "n1", Entry(Version(h.now_ms, MAX_INT64, "n2"), INST))
    key = key_owned_by("n1")
    _, result = h.client("n1", Register(key, OTHER))
    assert result is not None and result.status == 200
    h.advance(0, deliver=False)
    assert h.wire, "the write must be replicated"
    for wire in h.wire:
        wire_roundtrip(wire.message)  # the finding: ProtocolError "version counter" here
    ms, counter = h["n1"].clock.last
    assert counter <= MAX_INT64 and ms == h.now_ms + 1  # the counter would overflow: next millisecond
    h.advance(2 * h.config.verify_interval_ms)  # replication, then anti-entropy for the injected entry
    assert h["n2"].store.datum(key) == h["n1"].store.datum(key) == h["n3"].store.datum(key)
    assert len(h["n1"].store.datum(key) or {}) == 3  # both instances and the implicit service settings


def test_a_version_from_beyond_the_skew_is_refused_and_counted() -> None:
    h = started()
    future = Entry(Version(h.now_ms + 10 * 365 * 86_400_000, 0, "n2"), INST)
    inject(h, "n1", future)
    node = h["n1"]
    assert node.store.datum(key_owned_by("n1")) is None
    assert node.statistics().future_entries_refused == 1
    assert node.clock.last[0] <= h.now_ms + SKEW_MS  # the clock did not follow it


def test_a_version_within_the_skew_is_merged() -> None:
    h = started()
    edge = Entry(Version(h.now_ms + SKEW_MS, 7, "n2"), INST)
    inject(h, "n1", edge)
    assert h["n1"].store.datum(key_owned_by("n1")) == {INST.entry_id: edge}
    assert h["n1"].statistics().future_entries_refused == 0
    assert h["n1"].clock.last == (h.now_ms + SKEW_MS, 7)


def test_the_skew_is_a_knob() -> None:
    h = started(DistroConfig(cluster_size=3, max_clock_skew_ms=10))
    inject(h, "n1", Entry(Version(h.now_ms + 11, 0, "n2"), INST))
    assert h["n1"].statistics().future_entries_refused == 1
    inject(h, "n1", Entry(Version(h.now_ms + 10, 0, "n2"), INST))
    assert h["n1"].statistics().future_entries_refused == 1
    assert h["n1"].store.datum(key_owned_by("n1")) is not None


def test_the_clock_bounds_match_the_codec() -> None:
    assert MAX_COUNTER == MAX_INT64 and MAX_MS < MAX_INT64


# ------------------------------------------------------------------------------------------------
# Properties
# ------------------------------------------------------------------------------------------------
BIG = st.integers(0, MAX_INT64)
NEAR = st.integers(-2 * SKEW_MS, 2 * SKEW_MS)


@PROPERTIES
@given(st.lists(st.tuples(st.integers(0, 3 * SKEW_MS), NEAR, st.one_of(st.integers(0, 5), BIG)), max_size=12))
def test_a_merge_never_accepts_a_version_beyond_now_plus_skew(batches: list[tuple[int, int, int]]) -> None:
    h = started()
    node = h["n1"]
    key = key_owned_by("n1")
    for advance_ms, offset_ms, counter in batches:
        h.now_ms += advance_ms
        ms = max(0, h.now_ms + offset_ms)
        entry = Entry(Version(ms, counter, "n2"), make_instance("10.0.0.9", 1 + counter % 60_000))
        node.handle_peer("n2", SyncBatch(((key, entry.value.entry_id, entry),)), h.now_ms)  # type: ignore[union-attr]
        node.take_effects()
        for stored in (node.store.datum(key) or {}).values():
            assert stored.version.ms <= h.now_ms + SKEW_MS
        assert node.clock.last[0] <= h.now_ms + SKEW_MS + 1


clock_ops = st.lists(
    st.one_of(
        st.tuples(st.just("next"), BIG),
        st.tuples(st.just("observe"), st.tuples(BIG, BIG)),
        st.tuples(st.just("observe"), st.tuples(st.just(MAX_MS), st.just(MAX_COUNTER))),
    ),
    max_size=40,
)


@PROPERTIES
@given(st.integers(0, MAX_INT64), clock_ops)
def test_the_clock_never_issues_an_undecodable_version(start_ms: int, ops: list[tuple[str, object]]) -> None:
    clock = HybridClock("n1", start_ms)
    issued: list[Version] = []
    for op, arg in ops:
        if op == "next":
            assert isinstance(arg, int)
            version = clock.next(arg)
            assert 0 <= version.counter <= MAX_COUNTER and 0 <= version.ms <= MAX_MS + 1 < MAX_INT64
            if issued:
                assert version > issued[-1]
            issued.append(version)
            wire_roundtrip(SyncBatch(((key_owned_by("n1"), INST.entry_id, Entry(version, INST)),)))
        else:
            assert isinstance(arg, tuple)
            clock.observe(Version(arg[0], arg[1], "n2"))
