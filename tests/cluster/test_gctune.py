"""cluster/node/gctune.py: when the frozen heap is collected (a pure function of block and entry counts)."""

from __future__ import annotations

from cluster.node.gctune import FrozenHeapWatch

BASE = 200_000  # the program's blocks before any data


def watch() -> FrozenHeapWatch:
    return FrozenHeapWatch(BASE, growth=0.25, min_excess_blocks=1_000_000)


def test_a_registry_that_grows_never_collects() -> None:
    w = watch()
    for entries in range(0, 2_000_001, 100_000):
        # 5 blocks per entry, plus up to 300k transient blocks that come and go
        transient = 300_000 if entries % 200_000 else 0
        assert not w.observe(BASE + 5 * entries + transient, entries)
    assert w.per_entry is not None and 5.0 <= w.per_entry < 5.5


def test_garbage_in_the_frozen_heap_is_collected_once_it_passes_the_growth_and_the_floor() -> None:
    w = watch()
    entries = 1_000_000
    assert not w.observe(BASE + 5 * entries, entries)
    # 25% of the entries' 5M blocks is 1.25M: below that, kept
    assert not w.observe(BASE + 5 * entries + 1_200_000, entries)
    assert w.observe(BASE + 5 * entries + 1_300_000, entries)


def test_a_small_registry_tolerates_the_absolute_floor() -> None:
    w = watch()
    assert not w.observe(BASE + 5 * 1_000, 1_000)
    assert not w.observe(BASE + 5 * 1_000 + 900_000, 1_000)  # 900k over, under the 1M floor
    assert w.observe(BASE + 5 * 1_000 + 1_100_000, 1_000)


def test_no_entries_yet_uses_the_floor_alone() -> None:
    w = watch()
    assert not w.observe(BASE + 999_999, 0)
    assert w.observe(BASE + 1_000_001, 0)


def test_a_lower_ratio_becomes_the_reference() -> None:
    w = watch()
    assert not w.observe(BASE + 8 * 100_000, 100_000)  # transients counted in: 8 per entry
    assert not w.observe(BASE + 5 * 1_000_000, 1_000_000)  # 5 per entry: the reference from now on
    assert w.per_entry == 5.0
    assert w.observe(BASE + 5 * 1_000_000 + 1_300_000, 1_000_000)


def test_after_a_collection_what_remains_is_the_reference() -> None:
    w = watch()
    assert not w.observe(BASE + 5 * 1_000_000, 1_000_000)
    w.collected(BASE + 6 * 1_000_000, 1_000_000)  # e.g. metadata grew: 6 per entry now explained
    assert w.per_entry == 6.0
    assert not w.observe(BASE + 6 * 1_000_000 + 1_400_000, 1_000_000)  # under 25% of 6M
    w.collected(BASE, 0)
    assert w.per_entry is None


def test_the_same_counts_give_the_same_decisions() -> None:
    counts = [(BASE + 5 * e + (e // 7) * 3, e) for e in range(0, 3_000_000, 37_000)]
    assert [watch().observe(*c) for c in counts] == [watch().observe(*c) for c in counts]
    a, b = watch(), watch()
    assert [a.observe(*c) for c in counts] == [b.observe(*c) for c in counts]
