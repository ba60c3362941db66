"""A key digest that is not its entries' (a snapshot block's shipped digest garbled or forged: the receiver
XORs it in unchecked, distro/store.py merge_instances) is found and recomputed by anti-entropy, instead of
making every round repair that key, both ways, for as long as the key lives."""

from __future__ import annotations

import pytest

from distro.config import DistroConfig
from distro.datum import Entry, datum_digest
from distro.messages import SnapshotChunk
from distro.model import ServiceKey, make_instance
from distro.testing.harness import Harness
from distro.versions import Version

NODES = ("n1", "n2", "n3")
CONFIG = DistroConfig(cluster_size=3)


def _key_owned_by(h: Harness, owner: str) -> ServiceKey:
    for i in range(1000):
        key = ServiceKey("public", "DEFAULT_GROUP", f"svc-{i}")
        if h["n1"].owner_of(key) == owner:
            return key
    raise AssertionError("no such key")


def _repairs(h: Harness) -> int:
    return sum(h[n].statistics().repairs_sent for n in NODES)


@pytest.mark.parametrize("forged_on", ["owner", "replica"])
def test_a_wrong_key_digest_is_recomputed_and_the_repairs_stop(forged_on: str) -> None:
    h = Harness(NODES, CONFIG)
    h.start()
    key = _key_owned_by(h, "n1")
    holder = "n1" if forged_on == "owner" else "n2"
    version = Version(h.now_ms, 0, "n1")
    block = {inst.entry_id: Entry(version, inst) for inst in (make_instance(f"10.0.0.{i}", 80) for i in range(1, 4))}
    # A snapshot chunk (from a peer whose answer came late, or forged) whose block's digest is not its entries'.
    forged = SnapshotChunk(True, 1, 0, 1, (), ((key, block, datum_digest(block.items()) ^ 1),))
    h[holder].handle_peer("n3", forged, h.now_ms)
    h.collect(holder)
    assert h[holder].store.digest(key) != datum_digest(h[holder].store.items(key))
    for _ in range(4):
        h.advance(CONFIG.verify_interval_ms)
    assert all(h[n].store.digest(key) == datum_digest(h[n].store.items(key)) for n in NODES)
    assert sum(h[n].statistics().digests_corrected for n in NODES) == 1
    before = _repairs(h)
    for _ in range(3):
        h.advance(CONFIG.verify_interval_ms)
    assert _repairs(h) == before  # nothing differs any more: no round repairs anything
