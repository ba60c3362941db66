"""Hybrid logical clock and rendezvous ownership.

- ``HybridClock.next`` is strictly increasing whatever the wall clock does, and ``observe`` moves it past
  every version it has seen.
- ``owner_of`` is stable across calls and processes (pinned expected values, computed once with blake2b),
  independent of member order, and adding or removing one of n members moves about 1/n of the keys, only
  to the new member or away from the removed one.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from distro.model import ServiceKey
from distro.ownership import MAX_CACHE_BYTES, MemberScores, OwnershipMap, owner_of, score
from distro.versions import ZERO_VERSION, HybridClock, Version
from tests.distro import PROPERTIES

# ------------------------------------------------------------------------------------------------
# HybridClock
# ------------------------------------------------------------------------------------------------
clock_ops = st.lists(
    st.one_of(
        st.tuples(st.just("next"), st.integers(0, 50)),
        st.tuples(st.just("observe"), st.tuples(st.integers(0, 50), st.integers(0, 5), st.sampled_from("abc"))),
    ),
    max_size=60,
)


@PROPERTIES
@given(clock_ops)
def test_clock_is_strictly_increasing_and_passes_observed_versions(ops) -> None:
    clock = HybridClock("n1", 10)
    issued: list[Version] = []
    observed: list[Version] = []
    for op, arg in ops:
        if op == "next":
            version = clock.next(arg)
            assert version.node == "n1"
            if issued:
                assert version > issued[-1]
            for seen in observed:
                assert (version.ms, version.counter) > (seen.ms, seen.counter)
            issued.append(version)
        else:
            seen = Version(*arg)
            clock.observe(seen)
            assert clock.last >= (seen.ms, seen.counter)
            observed.append(seen)


def test_clock_follows_a_wall_clock_that_is_ahead() -> None:
    clock = HybridClock("n1", 100)
    assert clock.next(100) == Version(100, 1, "n1")
    assert clock.next(100) == Version(100, 2, "n1")
    assert clock.next(250) == Version(250, 0, "n1")
    assert clock.next(200) == Version(250, 1, "n1")  # the wall clock went back: bump the counter
    assert clock.last == (250, 1)


def test_observe_moves_the_clock_forward_only() -> None:
    clock = HybridClock("n1", 100)
    clock.observe(Version(500, 7, "n2"))
    assert clock.last == (500, 7)
    assert clock.next(120) == Version(500, 8, "n1")
    clock.observe(Version(300, 99, "n3"))  # older: ignored
    assert clock.last == (500, 8)
    clock.observe(Version(500, 8, "n3"))  # equal: ignored, the next one is still above it
    assert clock.next(0) > Version(500, 8, "n3")
    assert Version(1, 0, "") > ZERO_VERSION


# ------------------------------------------------------------------------------------------------
# Ownership
# ------------------------------------------------------------------------------------------------
def test_owner_of_is_pinned_across_processes() -> None:
    # Computed once; Python's salted hash() would give different answers in every process.
    three = ["n1", "n2", "n3"]
    five = [*three, "n4", "n5"]
    assert score("n1", "public##DEFAULT_GROUP@@orders") == 16632734890697383945
    assert owner_of("public##DEFAULT_GROUP@@orders", three) == "n1"
    assert owner_of("public##DEFAULT_GROUP@@payments", three) == "n3"
    assert owner_of("ns##g@@x", three) == "n2"
    assert owner_of("public##DEFAULT_GROUP@@orders", five) == "n1"
    assert owner_of("public##DEFAULT_GROUP@@payments", five) == "n5"


@PROPERTIES
@given(st.text(max_size=20), st.permutations(["a", "b", "c", "d"]))
def test_owner_of_ignores_member_order_and_is_repeatable(key: str, members: list[str]) -> None:
    expected = owner_of(key, ["a", "b", "c", "d"])
    assert owner_of(key, members) == expected
    assert owner_of(key, iter(members)) == expected
    omap = OwnershipMap(members)
    assert omap.owner(key) == expected
    assert omap.owner(key) == expected  # cached
    assert omap.members == ("a", "b", "c", "d")


def test_no_members_no_owner() -> None:
    assert owner_of("k", []) is None
    omap = OwnershipMap(())
    assert omap.owner("k") is None
    assert omap.owner("k") is None


def test_the_ownership_cache_is_bounded_in_bytes() -> None:
    # Any name a request carries is looked up (operator/distro/server answers for services nobody made):
    # ever-new 770-character names must not pile up (before: up to a million of them, ~800 MB).
    assert OwnershipMap(["a"]).max_cache_bytes == MAX_CACHE_BYTES == 64 * 1024 * 1024
    omap = OwnershipMap(["a", "b", "c"], max_cache_bytes=1_000_000)
    name = "n" * 256
    for i in range(5_000):
        key = f"{name}##{name}@@{i:0256d}"
        assert omap.owner(key) == owner_of(key, ["a", "b", "c"])
        assert omap.cache_bytes <= 1_000_000
    assert omap.cache_bytes > 250_000  # it does cache


KEYS = [f"public##DEFAULT_GROUP@@svc-{i}" for i in range(10_000)]


def _owners(members: list[str]) -> list[str | None]:
    return [owner_of(key, members) for key in KEYS]


def test_keys_spread_over_members() -> None:
    members = [f"n{i}" for i in range(1, 6)]
    owners = _owners(members)
    for member in members:
        share = owners.count(member) / len(KEYS)
        assert 0.5 / 5 <= share <= 1.5 / 5, (member, share)


def test_adding_or_removing_one_member_moves_about_one_nth() -> None:
    for n in (3, 5, 10):
        members = [f"n{i}" for i in range(1, n + 1)]
        before = _owners(members)

        grown = [*members, "new"]
        after = _owners(grown)
        moved = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
        assert all(b == "new" for _, b in moved), "keys may only move to the new member"
        assert 0.5 / (n + 1) <= len(moved) / len(KEYS) <= 1.5 / (n + 1), (n, len(moved))

        removed = members[n // 2]
        shrunk = [m for m in members if m != removed]
        after = _owners(shrunk)
        moved = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
        assert all(a == removed for a, _ in moved), "only the removed member's keys may move"
        assert len(moved) == before.count(removed)
        assert 0.5 / n <= len(moved) / len(KEYS) <= 1.5 / n, (n, len(moved))


@given(st.text(min_size=1, max_size=10, alphabet="abc"), st.permutations(["a", "b", "c"]))
def test_owner_of_key_is_the_owner_of_its_text(service: str, members: list[str]) -> None:
    key = ServiceKey("public", "DEFAULT_GROUP", service)
    omap = OwnershipMap(members)
    assert omap.owner_of_key(key) == owner_of(str(key), members)
    assert omap.owner_of_key(key) == omap.owner(str(key))  # both cached, side by side


def test_owner_of_key_counts_against_the_same_bound() -> None:
    omap = OwnershipMap(["a", "b"], max_cache_bytes=10_000)
    for i in range(1_000):
        omap.owner_of_key(ServiceKey("public", "DEFAULT_GROUP", f"svc-{i}"))
        assert omap.cache_bytes <= omap.max_cache_bytes


@given(st.lists(st.sets(st.sampled_from(["a", "b", "c", "d"])), min_size=1, max_size=6))
def test_maps_sharing_scores_own_as_fresh_ones(member_sets: list[set[str]]) -> None:
    # Maps built one after another over kept scores (a node's membership changes) name the same owners
    # as owner_of over their members.
    scores = MemberScores()
    keys = [ServiceKey("public", "DEFAULT_GROUP", f"svc-{i}") for i in range(50)]
    for members in member_sets:
        omap = OwnershipMap(members, scores=scores)
        assert [omap.owner_of_key(key) for key in keys] == [owner_of(str(key), members) for key in keys]


def test_kept_scores_hash_only_a_member_new_to_a_key() -> None:
    scores = MemberScores()
    keys = [ServiceKey("public", "DEFAULT_GROUP", f"svc-{i}") for i in range(300)]
    for key in keys:
        OwnershipMap(["n1", "n2", "n3"], scores=scores).owner_of_key(key)
    assert scores.hashed == 3 * len(keys)
    two = OwnershipMap(["n1", "n2"], scores=scores)  # n3 left: nothing to hash
    assert [two.owner_of_key(key) for key in keys] == [owner_of(str(key), ["n1", "n2"]) for key in keys]
    assert scores.hashed == 3 * len(keys)
    four = OwnershipMap(["n1", "n2", "n3", "n4"], scores=scores)  # n4 joined: one score per key
    assert [four.owner_of_key(key) for key in keys] == [owner_of(str(key), ["n1", "n2", "n3", "n4"]) for key in keys]
    assert scores.hashed == 4 * len(keys)


def test_kept_scores_are_bounded_in_bytes() -> None:
    scores = MemberScores(max_cache_bytes=20_000)
    omap = OwnershipMap(["a", "b", "c"], scores=scores)
    for i in range(1_000):
        key = ServiceKey("public", "DEFAULT_GROUP", f"svc-{i}")
        assert omap.owner_of_key(key) == owner_of(str(key), ["a", "b", "c"])
        assert scores.cache_bytes <= scores.max_cache_bytes
    assert scores.cache_bytes > 10_000  # it does keep them


def test_warm_scores_a_key_for_one_member_once() -> None:
    scores = MemberScores()
    key = ServiceKey("public", "DEFAULT_GROUP", "svc")
    scores.warm(key, "n3")
    scores.warm(key, "n3")
    assert scores.hashed == 1
    assert OwnershipMap(["n1", "n2", "n3"], scores=scores).owner_of_key(key) == owner_of(str(key), ["n1", "n2", "n3"])
    assert scores.hashed == 3


@given(
    st.lists(st.sets(st.sampled_from(["a", "b", "c", "d"])), min_size=1, max_size=5),
    st.lists(st.integers(0, 59), max_size=30),
    st.sampled_from([MAX_CACHE_BYTES, 3_000]),
)
def test_owners_of_keys_are_each_keys_owner(member_sets: list[set[str]], asked_first: list[int], bound: int) -> None:
    # The bulk look-up of a membership change's walk names owner_of's owners, in order, whatever is cached
    # already (some keys asked one at a time first), scored (maps built one after another) or bounded.
    scores = MemberScores(max_cache_bytes=bound)
    keys = [ServiceKey("public", "DEFAULT_GROUP", f"svc-{i}") for i in range(60)]
    for members in member_sets:
        for omap in (OwnershipMap(members, scores=scores, max_cache_bytes=bound), OwnershipMap(members)):
            for i in asked_first:
                omap.owner_of_key(keys[i])
            expected = [owner_of(str(key), members) for key in keys]
            assert omap.owners_of_keys(keys) == expected
            assert omap.owners_of_keys(keys[::-1]) == expected[::-1]
            assert omap.cache_bytes <= omap.max_cache_bytes
            assert scores.cache_bytes <= scores.max_cache_bytes


def test_owners_of_keys_break_ties_as_owner_of() -> None:
    # Equal scores (never seen from blake2b, forced here): the highest name owns, as (score, member) compares.
    scores = MemberScores()
    key = ServiceKey("public", "DEFAULT_GROUP", "tie")
    scores._by_key[key] = {"a": 7, "b": 7, "c": 3}
    assert scores.owners([key], ("a", "b", "c")) == ["b"] == [scores.owner(key, ("a", "b", "c"))]
    assert scores.owners([key], ()) == [None]
