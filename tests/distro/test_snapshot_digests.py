"""A snapshot's block digests (``distro.snapshot`` serving, ``DatumStore.merge_instances`` loading).

- Every instance block a sender serves carries the XOR of its entries' hashes, whatever else its key holds
  (tombstones, settings) and however the chunks cut its keys.
- A store loaded from those chunks holds exactly the digests it computes from its own entries (the slow
  path, one hash per entry), whether it started empty or already held some of the entries, older or newer.
- A shipped digest is used when the whole block was added (so a wrong one would show), and not otherwise.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from distro.config import DistroConfig
from distro.datum import Entry, EntryValue, datum_digest
from distro.effects import Outbox, Send
from distro.messages import SnapshotChunk
from distro.model import Instance, ServiceKey
from distro.snapshot import StartupSnapshot
from distro.store import DatumStore, MergeOutcome
from distro.versions import Version
from tests.distro import PROPERTIES
from tests.distro.test_datum_store import ENTRY_IDS, content

KEYS = [ServiceKey("public", "DEFAULT_GROUP", f"svc-{i}") for i in range(3)]
IDS = [*ENTRY_IDS, "DEFAULT/10.0.0.3:80", "DEFAULT/10.0.0.4:81", "#cluster/DEFAULT"]

versions = st.builds(Version, st.integers(1, 4), st.integers(0, 2), st.sampled_from(["n1", "n2"]))


def _value(entry_id: str, version: Version) -> EntryValue:
    if entry_id.startswith("#cluster/"):
        return None  # a cluster's settings deleted: a tombstone under a non-instance id
    return content(entry_id, version)


writes = st.lists(st.tuples(st.sampled_from(KEYS), st.sampled_from(IDS), versions), max_size=25)


def _store(script: list[tuple[ServiceKey, str, Version]]) -> DatumStore:
    store = DatumStore()
    for key, entry_id, version in script:
        store.merge(key, entry_id, Entry(version, _value(entry_id, version)))
    return store


def _serve(sender: DatumStore, chunk_entries: int) -> list[SnapshotChunk]:
    outbox = Outbox()
    snapshot = StartupSnapshot(DistroConfig(snapshot_chunk_entries=chunk_entries), sender, outbox, 0)
    snapshot.serve("n9", True, 0)
    now_ms = 0
    while snapshot.targets():
        now_ms += DistroConfig().snapshot_slice_interval_ms
        snapshot.serve_due(now_ms)
    return [effect.message for effect in outbox.take() if isinstance(effect, Send)]  # type: ignore[misc]


def _load(receiver: DatumStore, chunks: list[SnapshotChunk]) -> None:
    for chunk in chunks:
        for key, entry_id, entry in chunk.items:
            receiver.merge(key, entry_id, entry)
        for key, block, digest in chunk.blocks:
            receiver.merge_instances(key, block, digest)


@PROPERTIES
@given(writes, writes, st.integers(1, 7))
def test_a_store_loaded_from_a_snapshot_holds_the_digests_it_would_compute(
        on_sender: list[tuple[ServiceKey, str, Version]], on_receiver: list[tuple[ServiceKey, str, Version]],
        chunk_entries: int) -> None:
    sender = _store(on_sender)
    chunks = _serve(sender, chunk_entries)
    for chunk in chunks:
        for _, block, digest in chunk.blocks:
            assert all(type(entry.value) is Instance for entry in block.values())
            assert digest == datum_digest(block.items())
    fresh, held = DatumStore(), _store(on_receiver)
    _load(fresh, chunks)
    _load(held, _serve(sender, chunk_entries))  # a receiver may keep a block's dict as its datum: a copy each
    for key in KEYS:
        assert fresh.digest(key) == sender.digest(key)
        assert dict(fresh.items(key)) == dict(sender.items(key))
        assert held.digest(key) == datum_digest(held.items(key))


def test_a_shipped_digest_is_taken_only_when_the_whole_block_was_added() -> None:
    """A deliberately wrong digest shows where it is used: a new key, and new ids of a held key; a block
    that meets an entry already held is hashed instead."""
    key = KEYS[0]
    ids = ["DEFAULT/10.0.0.1:80", "DEFAULT/10.0.0.2:80"]
    block = {eid: Entry(Version(2, 0, "n1"), content(eid, Version(2, 0, "n1"))) for eid in ids}
    store = DatumStore()
    store.merge_instances(key, block, 12345)
    assert store.digest(key) == 12345  # taken as shipped: nothing was hashed
    other = DatumStore()
    held = Entry(Version(1, 1, "n1"), content(ids[0], Version(1, 1, "n1")))
    assert other.merge(key, ids[0], held) is MergeOutcome.APPLIED
    other.merge_instances(key, dict(block), 12345)
    assert other.digest(key) == datum_digest(other.items(key))  # ids[0] replaced: hashed, the digest ignored
