"""Entry: a versioned value that keeps its version's parts in its own slots, and behaves like the pair."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from distro.datum import Entry, entry_hash, newer
from distro.model import Instance
from distro.versions import HybridClock, Version

versions = st.builds(Version, st.integers(0, 5), st.integers(0, 3), st.sampled_from(["", "n1", "n2"]))


@given(versions, versions)
def test_newer_than_orders_as_versions_do(a: Version, b: Version) -> None:
    assert Entry(a, None).newer_than(Entry(b, None)) == (a > b)
    assert newer(Entry(a, None), Entry(b, None)).version == max(a, b)


def test_entry_reads_unpacks_and_compares_as_the_pair() -> None:
    version = Version(1_700_000_000_000, 3, "n2")
    inst = Instance("10.0.0.1", 80)
    entry = Entry(version, inst)
    assert entry.version == version and entry.value is inst and not entry.is_tombstone
    got_version, got_value = entry
    assert (got_version, got_value) == (version, inst)
    assert entry == Entry(Version(1_700_000_000_000, 3, "n2"), Instance("10.0.0.1", 80))
    assert entry != Entry(Version(1_700_000_000_000, 4, "n2"), inst)
    assert entry != (version, inst)  # an entry is not a tuple any more
    assert Entry(version, None).is_tombstone
    assert hash(Entry(version, None)) == hash(Entry(Version(*version), None))
    assert entry._replace(value=None) == Entry(version, None)
    assert entry._replace(version=Version(9, 0, "n1")).version == Version(9, 0, "n1")
    assert entry_hash("c/1:2", entry) == entry_hash("c/1:2", version)
    assert repr(entry).startswith("Entry(version=Version(ms=1700000000000, counter=3, node='n2'), value=Instance(")


def test_the_clock_observes_an_entry_as_its_version() -> None:
    by_entry, by_version = HybridClock("n1", 0), HybridClock("n1", 0)
    version = Version(50, 7, "n2")
    by_entry.observe(Entry(version, None))
    by_version.observe(version)
    assert by_entry.last == by_version.last == (50, 7)
