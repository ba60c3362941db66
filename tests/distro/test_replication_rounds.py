"""Anti-entropy rounds of :class:`~distro.replication.Replication` on their own: what a round covers after
membership changes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from distro.config import DistroConfig
from distro.datum import Entry
from distro.effects import Outbox, Send
from distro.messages import Digest
from distro.model import ServiceKey, make_instance
from distro.ownership import MemberScores, OwnershipMap, owner_of
from distro.replication import Replication
from distro.store import DatumStore
from distro.versions import Version
from tests.distro import PROPERTIES

INST = make_instance("10.0.0.1", 8080)
KEYS = [ServiceKey("public", "DEFAULT_GROUP", f"svc-{i}") for i in range(40)]


def _round(replication: Replication, outbox: Outbox, ownership: OwnershipMap) -> list[Digest]:
    """A whole round to n9, chunk by chunk, and its chunks."""
    replication.send_digests("n9", ownership)
    while replication.digesting:
        replication.continue_digests(("n9",), ownership)
    return [e.message for e in outbox.take() if isinstance(e, Send) and isinstance(e.message, Digest)]


@PROPERTIES
@given(st.lists(st.sets(st.sampled_from(["n1", "n2", "n3", "n4"])), min_size=1, max_size=5), st.integers(1, 50))
def test_a_round_covers_the_keys_owned_under_the_current_map(member_sets: list[set[str]], chunk_keys: int) -> None:
    # Maps follow one another (joins look up only the keys owned before, leaves every key): whatever the
    # sequence, a round's chunks name exactly the stored keys n1 owns now, in order, each once.
    store = DatumStore()
    for key in KEYS:
        store.merge(key, INST.entry_id, Entry(Version(1_000, 0, "n2"), INST))
    outbox = Outbox()
    replication = Replication("n1", DistroConfig(digest_chunk_keys=chunk_keys), store, outbox)
    scores = MemberScores()
    for members in member_sets:
        ownership = OwnershipMap(members, scores=scores)
        chunks = _round(replication, outbox, ownership)
        named = [key for chunk in chunks for key, _ in chunk.digests]
        owned = sorted((key for key in KEYS if owner_of(str(key), members) == "n1"), key=str)
        assert named == owned
        assert chunks[0].low is None and chunks[-1].high is None


@PROPERTIES
@given(st.lists(st.integers(1, 30), min_size=len(KEYS), max_size=len(KEYS)), st.integers(1, 12), st.integers(1, 60))
def test_chunks_hold_at_most_their_entries_and_cover_every_owned_key(
    sizes: list[int], chunk_keys: int, chunk_entries: int
) -> None:
    # Each chunk names at most digest_chunk_keys keys holding at most digest_chunk_entries entries, or one
    # key alone (a key bigger than the bound still goes); the round still names every owned key once, in
    # order, each chunk starting where the last ended.
    store = DatumStore()
    for key, size in zip(KEYS, sizes, strict=True):
        for j in range(size):
            inst = make_instance(f"10.0.1.{j}", 8080)
            store.merge(key, inst.entry_id, Entry(Version(1_000, j, "n2"), inst))
    outbox = Outbox()
    config = DistroConfig(digest_chunk_keys=chunk_keys, digest_chunk_entries=chunk_entries)
    replication = Replication("n1", config, store, outbox)
    ownership = OwnershipMap(("n1",))
    chunks = _round(replication, outbox, ownership)
    ordered = sorted(KEYS, key=str)
    named = 0
    for chunk in chunks:
        held = [len(store.items(key)) for key, _ in chunk.digests]
        assert len(held) <= chunk_keys
        assert sum(held) <= chunk_entries or len(held) == 1
        named += len(held)
        if chunk.high is not None:  # cut only where the next key would pass a bound
            following = len(store.items(ordered[named]))
            assert len(held) == chunk_keys or sum(held) + following > chunk_entries
    assert [key for chunk in chunks for key, _ in chunk.digests] == ordered
    assert [chunk.low for chunk in chunks[1:]] == [chunk.high for chunk in chunks[:-1]]
    assert chunks[0].low is None and chunks[-1].high is None


@PROPERTIES
@given(st.permutations(range(len(KEYS))), st.lists(st.integers(0, len(KEYS)), max_size=6), st.integers(1, 7))
def test_keys_added_between_chunks_go_into_the_sorted_lists(order: list[int], rounds_at: list[int], chunk: int) -> None:
    # Keys added one by one (key_added, in place) while rounds run and are answered: every round started
    # after the last addition names exactly the owned keys, and the receiver's ranges see every stored key.
    store, peer_store = DatumStore(), DatumStore()
    outbox = Outbox()
    replication = Replication("n1", DistroConfig(digest_chunk_keys=chunk), store, outbox)
    peer = Replication("n9", DistroConfig(), peer_store, Outbox())
    ownership = OwnershipMap(("n1", "n9"))
    for n, index in enumerate(order):
        key = KEYS[index]
        store.merge(key, INST.entry_id, Entry(Version(1_000, 0, "n2"), INST))
        peer_store.merge(key, INST.entry_id, Entry(Version(1_000, 0, "n2"), INST))
        replication.key_added(key)
        peer.key_added(key)
        if n in rounds_at:
            for digest in _round(replication, outbox, ownership):
                peer.on_digest("n1", digest, ownership)  # builds the receiver's sorted lists mid-way
    added = [KEYS[i] for i in order]
    owned = sorted((key for key in added if owner_of(str(key), ("n1", "n9")) == "n1"), key=str)
    assert [key for chunk in _round(replication, outbox, ownership) for key, _ in chunk.digests] == owned
    assert peer._sorted_keys() == ([str(key) for key in sorted(added, key=str)], sorted(added, key=str))
