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

