"""DistroNode behaviour, one protocol exchange at a time, on the hand-driven harness
(:mod:`distro.testing.harness`: no message moves and no time passes unless the test says so).

Proves: beats (light beat of an unknown instance answers 20404, a full beat re-registers), forwarding to
the owner and its fallbacks (send failure, timeout, bound), tombstone replication, the sync flush after
``sync_delay_ms``, no queueing for down peers, digest/repair, start-up (not ready and owning nothing until
a snapshot loads, 503 while no owner is known), health (unhealthy, expiry, metadata overrides,
self-preservation, heartbeat clocks restarting on ownership gain), counters and bounds.
"""

from __future__ import annotations

import pytest

from distro.config import DistroConfig
from distro.datum import IMPLICIT_ENTRY_ID, META_ENTRY_ID, Entry, datum_digest
from distro.effects import ClientReply, LifecycleKind, Outbox, Send
from distro.messages import (
    Digest,
    Forward,
    ForwardReply,
    Ping,
    Repair,
    SnapshotChunk,
    SnapshotRequest,
    SyncBatch,
)
from distro.model import META_BEAT_TIMEOUT, META_DELETE_TIMEOUT, ServiceKey, ServiceMeta, make_instance
from distro.node import NOT_READY_TEXT, DistroNode
from distro.ownership import OwnershipMap, owner_of
from distro.replication import Replication
from distro.requests import (
    OK,
    Beat,
    CreateService,
    DeleteService,
    Deregister,
    Register,
    Result,
    UpdateInstance,
    UpdateService,
)
from distro.store import DatumStore
from distro.testing.checkers import live_entries
from distro.testing.harness import Harness, Wire
from distro.versions import Version

IP, PORT = "10.0.0.1", 8080
INST = make_instance(IP, PORT)
EID = INST.entry_id


def key_owned_by(owner: str, members: tuple[str, ...] = ("n1", "n2", "n3"), *, also: str | None = None,
                 among: tuple[str, ...] = ()) -> ServiceKey:
    """A service key that ``owner`` owns among ``members`` (and that ``also`` owns among ``among``)."""
    for i in range(10_000):
        key = ServiceKey("public", "DEFAULT_GROUP", f"svc-{i}")
        if owner_of(str(key), members) == owner and (also is None or owner_of(str(key), among) == also):
            return key
    raise AssertionError("no such key")


def started(config: DistroConfig | None = None, nodes: tuple[str, ...] = ("n1", "n2", "n3")) -> Harness:
    h = Harness(nodes, config)
    h.start()
    for node in h.nodes.values():
        assert node.live_members() == tuple(sorted(nodes))
    return h


def register(h: Harness, node_id: str, key: ServiceKey, inst=INST) -> Result | None:
    _, result = h.client(node_id, Register(key, inst))
    return result


# ------------------------------------------------------------------------------------------------
# Beats
# ------------------------------------------------------------------------------------------------
def test_light_beat_for_unknown_instance_answers_20404() -> None:
    h = started()
    key = key_owned_by("n1")
    _, result = h.client("n1", Beat(key, "DEFAULT", IP, PORT))
    assert result == Result(200, {"clientBeatInterval": 5000, "code": 20404})
    assert key not in h["n1"].store
    assert h.pending(SyncBatch) == [] and h["n1"].next_deadline_ms() > h.now_ms


def test_full_beat_registers_an_unknown_instance_healthy() -> None:
    h = started()
    key = key_owned_by("n1")
    inst = make_instance(IP, PORT, healthy=False, metadata={"preserved.heart.beat.interval": "2000"})
    _, result = h.client("n1", Beat(key, "DEFAULT", "ignored", 1, instance=inst))
    assert result == Result(200, {"clientBeatInterval": 2000, "code": 10200, "lightBeatEnabled": True})
    assert h["n1"].store.live_instance(key, EID) == inst.with_health(True)
    view = h["n1"].view(key)
    assert view is not None and view.instances == (inst.with_health(True),)
    assert [c.view for c in h.outputs["n1"].changes] == [view]
    # Now a light beat finds it.
    _, result = h.client("n1", Beat(key, "DEFAULT", IP, PORT))
    assert result == Result(200, {"clientBeatInterval": 2000, "code": 10200, "lightBeatEnabled": True})


def test_light_beat_heals_an_unhealthy_instance() -> None:
    h = started()
    key = key_owned_by("n1")
    register(h, "n1", key, INST.with_health(False))
    version = h["n1"].store.entry(key, EID).version
    _, result = h.client("n1", Beat(key, "DEFAULT", IP, PORT))
    assert result.body["code"] == 10200
    entry = h["n1"].store.entry(key, EID)
    assert entry.value == INST and entry.version > version


# ------------------------------------------------------------------------------------------------
# Forwarding
# ------------------------------------------------------------------------------------------------
def test_non_owner_forwards_and_the_reply_comes_back() -> None:
    h = started()
    key = key_owned_by("n2")
    rid, result = h.client("n1", Register(key, INST))
    assert result is None
    assert h.wire == [Wire("n1", "n2", Forward(rid, Register(key, INST)))]
    assert h["n1"].statistics().pending_forwards == 1
    assert key not in h["n1"].store
    assert h.deliver(Forward) == 1
    assert h["n2"].store.live_instance(key, EID) == INST
    assert h.pending(ForwardReply) == [Wire("n2", "n1", ForwardReply(rid, OK))]
    h.deliver(ForwardReply)
    assert h.outputs["n1"].replies == [ClientReply(rid, OK)]
    s1, s2 = h["n1"].statistics(), h["n2"].statistics()
    assert (s1.forwards_sent, s1.pending_forwards, s1.requests_applied) == (1, 0, 0)
    assert (s2.forwards_received, s2.requests_applied) == (1, 1)
    # A duplicate (late) reply is ignored.
    h["n1"].handle_peer("n2", ForwardReply(rid, OK), h.now_ms)
    h.collect("n1")
    assert h.outputs["n1"].replies == [ClientReply(rid, OK)]
    # Replication then brings it to n1 and n3.
    h.advance(h.config.sync_delay_ms)
    assert h["n1"].store.live_instance(key, EID) == INST == h["n3"].store.live_instance(key, EID)


def test_forward_send_failure_applies_locally() -> None:
    h = started()
    key = key_owned_by("n2")
    rid, result = h.client("n1", Register(key, INST))
    assert result is None
    assert h.fail(Forward) == 1
    assert h.outputs["n1"].replies == [ClientReply(rid, OK)]
    assert h["n1"].store.live_instance(key, EID) == INST
    stats = h["n1"].statistics()
    assert (stats.forward_fallbacks, stats.pending_forwards, stats.requests_applied) == (1, 0, 1)
    assert "n2" not in h["n1"].live_members()  # a failed send marks the peer down at once


def test_forward_timeout_applies_locally() -> None:
    h = started()
    key = key_owned_by("n2")
    rid, _ = h.client("n1", Register(key, INST))
    h.drop(Forward)
    h.advance(h.config.forward_timeout_ms - 1)
    assert h.outputs["n1"].replies == []
    h.advance(1)
    assert h.outputs["n1"].replies == [ClientReply(rid, OK)]
    assert h["n1"].statistics().forward_fallbacks == 1
    assert h["n1"].store.live_instance(key, EID) == INST


def test_pending_forwards_are_bounded() -> None:
    h = started(DistroConfig(cluster_size=3, max_pending_forwards=1))
    key = key_owned_by("n2")
    _, first = h.client("n1", Register(key, INST))
    other = make_instance("10.0.0.2", PORT)
    _, second = h.client("n1", Register(key, other))
    assert first is None and second == OK
    stats = h["n1"].statistics()
    assert (stats.pending_forwards, stats.forwards_sent, stats.forward_fallbacks) == (1, 1, 1)
    assert h["n1"].store.live_instance(key, other.entry_id) == other
    assert len(h.pending(Forward)) == 1


# ------------------------------------------------------------------------------------------------
# Replication
# ------------------------------------------------------------------------------------------------
def test_replication_flushes_an_isolated_change_at_once_and_coalesces_a_stream() -> None:
    h = started()
    key = key_owned_by("n1")
    t0 = h.now_ms
    register(h, "n1", key, INST)
    _, result = h.client("n1", UpdateInstance(key, "DEFAULT", IP, PORT, {"weight": 3.0}))
    assert result == OK
    # two entries (the service's implicit settings, written by the registration that created it, and
    # the instance), for two peers
    assert h.wire == [] and h["n1"].statistics().dirty_entries == 4
    assert h["n1"].next_deadline_ms() == t0  # nothing flushed lately: due at the next tick
    h.tick("n1")
    entry = h["n1"].store.entry(key, EID)
    meta = h["n1"].store.entry(key, IMPLICIT_ENTRY_ID)
    assert entry.value == INST.replace(weight=3.0) and meta.value == ServiceMeta(implicit=True)
    assert h.pending(SyncBatch) == [
        Wire("n1", "n2", SyncBatch(((key, IMPLICIT_ENTRY_ID, meta), (key, EID, entry)))),
        Wire("n1", "n3", SyncBatch(((key, IMPLICIT_ENTRY_ID, meta), (key, EID, entry)))),
    ]
    assert h["n1"].statistics().dirty_entries == 0
    h.deliver(SyncBatch)
    for node_id in ("n2", "n3"):
        assert h[node_id].store.entry(key, EID) == entry
        assert h[node_id].view(key).instances == (entry.value,)
        assert h[node_id].statistics().sync_batches_received == 1
    # A change that follows a flush within sync_delay_ms waits for it, and what follows coalesces with it.
    t1 = h.now_ms
    for weight in (4.0, 5.0):
        h.client("n1", UpdateInstance(key, "DEFAULT", IP, PORT, {"weight": weight}))
    assert h["n1"].next_deadline_ms() == t1 + h.config.sync_delay_ms
    h.advance(h.config.sync_delay_ms - 1, deliver=False)
    assert h.pending(SyncBatch) == []
    h.advance(1, deliver=False)
    latest = h["n1"].store.entry(key, EID)
    assert latest.value.weight == 5.0
    assert [w.message for w in h.pending(SyncBatch)] == [SyncBatch(((key, EID, latest),))] * 2
    stats = h["n1"].statistics()
    assert (stats.sync_batches_sent, stats.sync_entries_sent) == (4, 6)


def test_peers_due_together_with_the_same_dirty_set_are_sent_the_same_batches() -> None:
    """Every write marks every up peer, so peers flushed together usually have the same dirty set: they get
    the same SyncBatch objects (built once; the peer links encode each once for all). A peer whose set
    differs gets its own."""
    h = started(DistroConfig(sync_batch_entries=2))
    key = key_owned_by("n1")
    for i in range(3):
        register(h, "n1", key, make_instance(f"10.0.2.{i}", PORT))
    h.advance(h.config.sync_delay_ms, deliver=False)
    to_n2 = [w.message for w in h.pending(SyncBatch, target="n2")]
    to_n3 = [w.message for w in h.pending(SyncBatch, target="n3")]
    assert [len(m.items) for m in to_n2] == [2, 2] and all(a is b for a, b in zip(to_n2, to_n3, strict=True))
    h.deliver_all()
    assert live_entries(h["n2"]) == live_entries(h["n3"]) == live_entries(h["n1"])


def test_peers_with_different_dirty_sets_get_batches_of_their_own() -> None:
    store = DatumStore()
    outbox = Outbox()
    replication = Replication("n1", DistroConfig(), store, outbox)
    key = ServiceKey("public", "DEFAULT_GROUP", "svc")
    a, b = make_instance("10.0.3.1", PORT), make_instance("10.0.3.2", PORT)
    for n, inst in enumerate((a, b)):
        store.merge(key, inst.entry_id, Entry(Version(1000, n, "n1"), inst))
    ownership = OwnershipMap(("n1", "n2", "n3"))
    replication.mark_dirty(("n2", "n3"), key, a.entry_id, 1000, ownership)
    replication.mark_dirty(("n2",), key, b.entry_id, 1000, ownership)  # n3 not up for this one
    replication.flush_due(1000 + DistroConfig().sync_delay_ms)
    sent = {effect.target: effect.message for effect in outbox.take() if isinstance(effect, Send)}
    assert isinstance(sent["n2"], SyncBatch) and isinstance(sent["n3"], SyncBatch)
    assert [item[1] for item in sent["n2"].items] == [a.entry_id, b.entry_id]
    assert [item[1] for item in sent["n3"].items] == [a.entry_id]


def test_sync_batches_are_split_at_the_batch_size() -> None:
    h = started(DistroConfig(cluster_size=2, sync_batch_entries=2), ("n1", "n2"))
    key = key_owned_by("n1", ("n1", "n2"))
    for i in range(5):
        register(h, "n1", key, make_instance(f"10.0.1.{i}", PORT))
    h.advance(h.config.sync_delay_ms, deliver=False)
    assert [len(w.message.items) for w in h.pending(SyncBatch)] == [2, 2, 2]  # the service's settings + 5
    h.deliver_all()
    assert live_entries(h["n2"]) == live_entries(h["n1"])


def test_deregister_is_a_tombstone_that_replicates() -> None:
    h = started()
    key = key_owned_by("n1")
    register(h, "n1", key)
    h.advance(h.config.sync_delay_ms)
    assert all(node.store.live_instance(key, EID) == INST for node in h.nodes.values())
    _, result = h.client("n1", Deregister(key, "DEFAULT", IP, PORT))
    assert result == OK
    tombstone = h["n1"].store.entry(key, EID)
    assert tombstone is not None and tombstone.is_tombstone
    h.advance(h.config.sync_delay_ms)
    for node_id, node in h.nodes.items():
        assert node.store.entry(key, EID) == tombstone, node_id
        # The service outlives its last instance (until the empty-service cleaner removes it).
        assert node.view(key).instances == ()
        last = h.outputs[node_id].changes[-1]
        assert last.key == key and last.view.exists and last.view.instances == ()
        assert node.store.statistics().tombstones == 1
    # Deregistering an unknown instance is ok and writes nothing.
    applied = h["n1"].statistics().entries_applied
    _, result = h.client("n1", Deregister(key, "DEFAULT", "10.9.9.9", PORT))
    assert result == OK and h["n1"].statistics().entries_applied == applied


def test_a_stale_live_copy_does_not_resurrect_a_deleted_instance() -> None:
    h = started()
    key = key_owned_by("n1")
    register(h, "n1", key)
    old = h["n1"].store.entry(key, EID)
    h.client("n1", Deregister(key, "DEFAULT", IP, PORT))
    h.advance(h.config.sync_delay_ms)
    h["n2"].handle_peer("n1", SyncBatch(((key, EID, old),)), h.now_ms)
    assert h["n2"].store.entry(key, EID).is_tombstone
    assert h["n2"].view(key).instances == ()


def test_nothing_is_queued_for_a_down_peer() -> None:
    h = started()
    h.crash("n3")
    h.advance(h.config.ping_interval_ms)  # the pings to n3 fail
    assert h["n1"].live_members() == ("n1", "n2") == h["n2"].live_members()
    key = key_owned_by("n1", ("n1", "n2"))
    register(h, "n1", key)
    assert h["n1"].statistics().dirty_entries == 2  # the service's settings and the instance, for n2
    h.advance(h.config.sync_delay_ms, deliver=False)
    assert [w.target for w in h.pending(SyncBatch)] == ["n2"]


def test_a_peer_going_down_drops_its_dirty_set() -> None:
    h = started()
    key = key_owned_by("n1")
    register(h, "n1", key)
    assert h["n1"].statistics().dirty_entries == 4  # the service's settings and the instance, per peer
    h["n1"].handle_send_failed("n3", Ping(True, "n1"), h.now_ms)
    assert h["n1"].statistics().dirty_entries == 2
    assert "n3" not in h["n1"].live_members()


def test_digest_and_repair_fix_a_peer_that_missed_a_batch() -> None:
    h = started()
    key = key_owned_by("n1")
    register(h, "n1", key)
    h.advance(h.config.sync_delay_ms, deliver=False)
    assert h.drop(SyncBatch, target="n2") == 1
    h.deliver_all()
    assert key not in h["n2"].store and h["n3"].store.live_instance(key, EID) == INST
    digests_before = h["n1"].statistics().digests_sent
    # Run until n1's next verify round sends n2 a digest; nothing else brings n2 the entry.
    while not h.pending(Digest, source="n1", target="n2"):
        assert key not in h["n2"].store
        h.deliver_all()
        h.step()
    assert h.now_ms - 1_000_000 <= h.config.verify_interval_ms
    (digest,) = h.pending(Digest, source="n1", target="n2")
    assert digest.message == Digest(((key, h["n1"].store.digest(key)),), None, None)
    assert h["n1"].statistics().digests_sent > digests_before
    h.deliver(Digest, source="n1", target="n2")
    assert h.pending(Repair, source="n2") == [Wire("n2", "n1", Repair((), (key,)))]
    assert h["n2"].statistics().repairs_sent == 1
    h.deliver(Repair, source="n2")
    (batch,) = h.pending(SyncBatch, source="n1", target="n2")
    assert batch.message.items == tuple((key, e, h["n1"].store.entry(key, e)) for e in (IMPLICIT_ENTRY_ID, EID))
    h.deliver(SyncBatch)
    assert h["n2"].store.digest(key) == h["n1"].store.digest(key)
    assert h["n2"].view(key).instances == (INST,)


def test_digest_makes_the_receiver_push_what_the_owner_lacks() -> None:
    h = started()
    key = key_owned_by("n1")
    # n2 holds an entry for n1's key that n1 never saw (n2 applied it while n1 was down, say).
    extra = make_instance("10.0.0.9", PORT)
    h["n2"].handle_peer("n3", SyncBatch(((key, extra.entry_id, Entry(Version(h.now_ms, 0, "n3"), extra)),)), h.now_ms)
    h.collect("n2")
    assert key not in h["n1"].store
    while not h.pending(Digest, source="n1", target="n2"):
        h.deliver_all()
        h.step()
    h.deliver(Digest, source="n1", target="n2")
    (repair,) = h.pending(Repair, source="n2", target="n1")
    assert repair.message.want == () and [item[1] for item in repair.message.items] == [extra.entry_id]
    h.deliver(Repair)
    assert h["n1"].store.live_instance(key, extra.entry_id) == extra


# ------------------------------------------------------------------------------------------------
# Start-up
# ------------------------------------------------------------------------------------------------
def test_a_starting_node_is_not_ready_and_owns_nothing_until_the_snapshot_loads() -> None:
    h = started()
    keys = [key_owned_by(owner) for owner in ("n1", "n2", "n3")]
    for i, key in enumerate(keys):
        register(h, h["n1"].owner_of(key), key, make_instance(f"10.0.2.{i}", PORT))
    h.advance(h.config.sync_delay_ms)
    h.crash("n3")
    h.advance(h.config.ping_interval_ms)
    assert h["n1"].live_members() == ("n1", "n2")

    n3 = h.boot("n3")
    assert not n3.ready and n3.live_members() == ()
    assert all(n3.owner_of(key) is None and not n3.is_owner(key) for key in keys)
    _, result = h.client("n3", Register(keys[2], INST))
    assert result == Result(503, NOT_READY_TEXT)
    assert result.body == "server is STARTINGnow, please try again later!"
    assert len(n3.store) == 0 and n3.statistics().owned_keys == 0

    h.tick("n3")
    # one peer at a time is asked for the snapshot (two sending it at once would double the load)
    assert {(w.target, type(w.message)) for w in h.wire} == {("n1", Ping), ("n2", Ping), ("n1", SnapshotRequest)}
    h.deliver(source="n3")  # n1 answers with its snapshot
    assert not n3.ready
    assert [w.message.ready for w in h.pending(SnapshotChunk, source="n1")] == [True]
    hashed = n3._scores.hashed
    h.deliver(SnapshotChunk, source="n1")
    assert n3.ready
    # Each key was scored once, for n3 itself, as it was stored: becoming ready (n3 alone up yet) hashed none.
    assert n3._scores.hashed == hashed + len(n3.store)
    assert live_entries(n3) == live_entries(h["n1"])
    assert any(e.kind == "ready" for e in h.outputs["n3"].events)
    h.advance(h.config.ping_interval_ms)
    for node in h.nodes.values():
        assert node.live_members() == ("n1", "n2", "n3")
    assert n3.is_owner(keys[2]) and n3.statistics().owned_keys == 1


def test_a_snapshot_sends_live_instances_in_blocks_and_the_starter_holds_what_the_sender_held() -> None:
    """Live instances travel in one block per key (installed in bulk, with their digest), everything else as
    items; the node that loads them holds the same entries, digests and counts as its peers, and its view
    lists them."""
    cfg = DistroConfig(snapshot_chunk_entries=4)  # services split over chunks: a key's second block adds to it
    h = started(cfg)
    keys = [ServiceKey("public", "DEFAULT_GROUP", f"svc-{i}") for i in range(3)]
    for i, key in enumerate(keys):
        for j in range(5):
            register(h, "n1", key, make_instance(f"10.0.{i}.{j}", PORT))
        h.client("n2", Deregister(key, "DEFAULT", f"10.0.{i}.0", PORT))  # a tombstone in each
    h.advance(cfg.sync_delay_ms + 10)
    h.crash("n3")
    h.advance(cfg.ping_interval_ms)
    n3 = h.boot("n3")
    h.tick("n3")
    h.deliver(source="n3")
    chunks: list[SnapshotChunk] = []
    while not n3.ready and len(chunks) < 20:
        chunks += [w.message for w in h.pending(SnapshotChunk, source="n1")]  # type: ignore[misc]
        h.deliver_all()
        h.advance(cfg.snapshot_slice_interval_ms, deliver=False)
    assert n3.ready and len(chunks) > 3
    assert sum(1 for chunk in chunks if chunk.blocks) > len(keys)
    assert all(type(entry.value) is not type(INST) for chunk in chunks for _, _, entry in chunk.items)
    # each block says what its entries hash to (the starter adds that instead of hashing them)
    assert all(digest == datum_digest(block.items()) for chunk in chunks for _, block, digest in chunk.blocks)
    sender = h["n1"].store
    for key in keys:
        assert dict(n3.store.items(key)) == dict(sender.items(key))
        assert n3.store.digest(key) == sender.digest(key)
        view = n3.view(key)
        assert view is not None and len(view.instances) == sender.live_instance_count(key) >= 4
    assert n3.store.statistics() == sender.statistics()


def test_a_snapshot_is_served_in_paced_slices_and_the_starter_waits_for_the_last_chunk() -> None:
    cfg = DistroConfig(snapshot_chunk_entries=3, snapshot_slice_chunks=2, snapshot_slice_interval_ms=20)
    h = started(cfg)
    keys = [ServiceKey("public", "DEFAULT_GROUP", f"svc-{i}") for i in range(4)]
    for i, key in enumerate(keys):  # 4 keys x 4 instances (and their services' entries): chunks of 3
        for j in range(4):
            register(h, h["n1"].owner_of(key), key, make_instance(f"10.0.{i}.{j}", PORT))
    h.advance(cfg.sync_delay_ms + 10)
    h.crash("n3")
    h.advance(cfg.ping_interval_ms)
    n3 = h.boot("n3")
    h.tick("n3")
    h.deliver(source="n3")  # the request reaches n1: its first slice goes at once
    first = h.pending(SnapshotChunk, source="n1")
    assert [(w.message.seq, w.message.total, w.message.entry_count) for w in first] == [(0, 2, 3), (1, 3, 3)]
    h.deliver(SnapshotChunk, source="n1")
    assert not n3.ready
    h["n1"].tick(h.now_ms + cfg.snapshot_slice_interval_ms - 1)
    h.collect("n1")
    assert not h.pending(SnapshotChunk, source="n1")  # not before the interval
    h["n1"].tick(h.now_ms + cfg.snapshot_slice_interval_ms)
    h.collect("n1")
    second = h.pending(SnapshotChunk, source="n1")
    assert [(w.message.seq, w.message.total) for w in second] == [(2, 4), (3, 5)]
    h.advance(3 * cfg.snapshot_slice_interval_ms)
    assert n3.ready
    assert live_entries(n3) == live_entries(h["n1"])
    entries = sum(len(h["n1"].store.datum(key) or {}) for key in h["n1"].store.keys())
    assert h["n1"].statistics().snapshot_chunks_sent == -(-entries // 3)  # every chunk full but the last


def test_a_held_snapshot_sends_no_slice_until_released() -> None:
    cfg = DistroConfig(snapshot_chunk_entries=1, snapshot_slice_chunks=1, snapshot_slice_interval_ms=20)
    h = started(cfg)
    key = key_owned_by("n1")
    for j in range(3):
        register(h, "n1", key, make_instance(f"10.0.9.{j}", PORT))
    h.advance(cfg.sync_delay_ms + 10)
    h.crash("n3")
    h.advance(cfg.ping_interval_ms)
    h.boot("n3")
    h.tick("n3")
    h.deliver(source="n3")
    assert len(h.pending(SnapshotChunk, source="n1")) == 1
    n1 = h["n1"]
    assert n1.snapshot_targets() == ("n3",)
    n1.hold_snapshot("n3", True)  # the runtime saw n3's send queue over its mark
    for step in range(1, 4):
        n1.tick(h.now_ms + step * cfg.snapshot_slice_interval_ms)
    h.collect("n1")
    assert len(h.pending(SnapshotChunk, source="n1")) == 1
    n1.hold_snapshot("n3", False)
    n1.tick(h.now_ms + 4 * cfg.snapshot_slice_interval_ms)
    h.collect("n1")
    assert len(h.pending(SnapshotChunk, source="n1")) == 2
    h.advance(10 * cfg.snapshot_slice_interval_ms)
    assert h["n3"].ready and n1.snapshot_targets() == ()


def test_a_snapshot_of_an_empty_store_is_one_empty_last_chunk() -> None:
    h = started()
    h.crash("n3")
    h.advance(h.config.ping_interval_ms)
    n3 = h.boot("n3")
    h.tick("n3")
    h.deliver(source="n3")
    chunks = h.pending(SnapshotChunk, source="n1")
    assert [(w.message.ready, w.message.seq, w.message.total, w.message.items) for w in chunks] == [(True, 0, 1, ())]
    h.deliver(SnapshotChunk, source="n1")
    assert n3.ready


def test_a_starting_node_forwards_once_it_hears_a_ready_peer() -> None:
    h = started()
    key = key_owned_by("n3")
    h.crash("n3")
    h.advance(h.config.ping_interval_ms)
    n3 = h.boot("n3")
    h["n1"].tick(h.now_ms + h.config.ping_interval_ms)  # n1 pings n3
    h.collect("n1")
    h.deliver(Ping, source="n1", target="n3")
    assert not n3.ready and n3.live_members() == ("n1",)
    _, result = h.client("n3", Register(key, INST))
    assert result is None and h.pending(Forward, source="n3")[0].target == "n1"


def test_a_lone_node_becomes_ready_after_the_snapshot_timeout() -> None:
    h = Harness(("n1", "n2", "n3"))
    h.isolate("n1")
    h.tick("n1")
    h.advance(h.config.snapshot_timeout_ms - 1)
    assert not h["n1"].ready
    h.advance(1)
    assert h["n1"].ready and h["n1"].live_members() == ("n1",)


def test_a_node_whose_peers_are_unreachable_becomes_ready_at_once() -> None:
    h = Harness(("n1", "n2", "n3"))
    h.crash("n2")
    h.crash("n3")
    h.tick("n1")
    assert not h["n1"].ready
    h.deliver(SnapshotRequest)  # refused: n2 fails, so n1 asks n3
    assert not h["n1"].ready
    h.deliver(SnapshotRequest)  # refused too: nobody can have data
    assert h["n1"].ready


# ------------------------------------------------------------------------------------------------
# Health
# ------------------------------------------------------------------------------------------------
def test_unhealthy_after_heartbeat_timeout_then_deleted_after_expiry() -> None:
    h = started()
    cfg = h.config
    key = key_owned_by("n1")
    t0 = h.now_ms
    register(h, "n1", key)
    assert h["n1"].last_beat_ms(key, EID) == t0
    assert h["n2"].last_beat_ms(key, EID) is None  # not the owner
    h.advance(cfg.heartbeat_timeout_ms)
    assert all(node.store.live_instance(key, EID) == INST for node in h.nodes.values())
    h.advance(cfg.health_check_interval_ms + cfg.sync_delay_ms)
    for node in h.nodes.values():
        assert node.store.live_instance(key, EID) == INST.with_health(False)
    assert h["n1"].statistics().instances_marked_unhealthy == 1
    h.advance(t0 + cfg.instance_expire_ms - h.now_ms)
    assert h["n1"].store.live_instance(key, EID) is not None
    h.advance(cfg.health_check_interval_ms + cfg.sync_delay_ms)
    for node in h.nodes.values():
        assert node.store.entry(key, EID).is_tombstone and node.view(key).instances == ()
    stats = h["n1"].statistics()
    assert (stats.instances_marked_unhealthy, stats.instances_expired) == (1, 1)
    assert h["n1"].last_beat_ms(key, EID) is None


def test_beats_through_any_node_keep_an_instance_alive() -> None:
    h = started()
    key = key_owned_by("n1")
    register(h, "n1", key)
    for i in range(12):  # 60 s of beats every 5 s, through n2, n3 and n1 in turn
        h.advance(h.config.client_beat_interval_ms)
        h.client(("n2", "n3", "n1")[i % 3], Beat(key, "DEFAULT", IP, PORT))
    h.advance(h.config.sync_delay_ms)
    for node in h.nodes.values():
        assert node.store.live_instance(key, EID) == INST
    assert h["n1"].statistics().instances_marked_unhealthy == 0
    assert h["n1"].last_beat_ms(key, EID) >= h.now_ms - h.config.client_beat_interval_ms


def test_metadata_overrides_heartbeat_timeout_and_expiry() -> None:
    h = started()
    key = key_owned_by("n1")
    inst = make_instance(IP, PORT, metadata={META_BEAT_TIMEOUT: "3000", META_DELETE_TIMEOUT: "6000"})
    plain = make_instance("10.0.0.2", PORT)
    register(h, "n1", key, inst)
    register(h, "n1", key, plain)
    h.advance(3_000)
    assert h["n1"].store.live_instance(key, EID).healthy
    h.advance(1_000 + h.config.health_check_interval_ms)
    assert not h["n1"].store.live_instance(key, EID).healthy
    assert h["n2"].store.live_instance(key, EID) == inst.with_health(False)
    assert h["n1"].store.live_instance(key, plain.entry_id) == plain
    h.advance(2_000 + h.config.health_check_interval_ms)
    assert h["n1"].store.entry(key, EID).is_tombstone
    assert h["n1"].store.live_instance(key, plain.entry_id) == plain


def test_update_refuses_an_expiry_timing_out_of_range() -> None:
    h = started()
    key = key_owned_by("n2")
    register(h, "n2", key)
    forever = {"metadata": {META_DELETE_TIMEOUT: "999999999999"}}
    _, result = h.client("n2", UpdateInstance(key, "DEFAULT", IP, PORT, forever))
    assert result == Result(
        400, f"metadata {META_DELETE_TIMEOUT} must be a whole number of milliseconds in 1000..3600000, got 999999999999"
    )
    assert h["n2"].store.live_instance(key, EID) == INST


def test_a_short_timeout_registered_after_a_check_is_not_missed() -> None:
    # Health checks skip their scan while nothing can be due. A long-timeout instance makes the next
    # deadline far away; a short-timeout instance registered later must pull it in.
    h = started()
    key = key_owned_by("n1")
    plain = make_instance("10.0.0.2", PORT)
    register(h, "n1", key, plain)
    h.advance(2 * h.config.health_check_interval_ms)  # a scan ran: nothing due for ~15 s
    short = make_instance(IP, PORT, metadata={META_BEAT_TIMEOUT: "3000", META_DELETE_TIMEOUT: "6000"})
    register(h, "n1", key, short)
    h.advance(3_000 + h.config.health_check_interval_ms)
    assert h["n1"].store.live_instance(key, EID) == short.with_health(False)
    assert h["n1"].store.live_instance(key, plain.entry_id) == plain
    h.advance(3_000 + h.config.health_check_interval_ms)
    assert h["n1"].store.entry(key, EID).is_tombstone


def test_self_preservation_a_minority_node_expires_nothing() -> None:
    h = started()
    key = key_owned_by("n1")
    register(h, "n1", key)
    h.advance(h.config.sync_delay_ms)
    h.isolate("n1")
    h.advance(60_000)
    n1 = h["n1"]
    assert n1.live_members() == ("n1",) and n1.is_owner(key) and not n1.has_quorum()
    assert n1.store.live_instance(key, EID) == INST  # not even marked unhealthy
    assert (n1.statistics().instances_expired, n1.statistics().instances_marked_unhealthy) == (0, 0)
    # The majority side owns the key now and expired it.
    assert h["n2"].has_quorum()
    assert h["n2"].store.entry(key, EID).is_tombstone and h["n3"].store.entry(key, EID).is_tombstone


def test_a_healed_minority_node_does_not_expire_what_beat_on_the_other_side() -> None:
    """Found by scripts/chaos: node1 cut off for longer than the expiry kept owning its keys; on healing it
    regained quorum with clocks that had not moved while the beats went to the majority, and expired
    (tombstoned, everywhere) instances that had been beating all along."""
    h = started()
    key = key_owned_by("n1")
    register(h, "n1", key)
    h.advance(h.config.sync_delay_ms)
    h.isolate("n1")
    for _ in range(12):  # 60 s of beats through n2, which the cut-off n1 never hears
        h.advance(5_000)
        _, result = h.client("n2", Beat(key, "DEFAULT", IP, PORT))
        assert result is not None and result.status == 200 and result.body["code"] == 10200
    assert not h["n1"].has_quorum() and h["n1"].store.live_instance(key, EID) == INST
    h.cut.clear()  # heal
    for _ in range(12):  # and 60 s more, still through n2 (forwarded to n1, the owner again)
        h.advance(5_000)
        h.client("n2", Beat(key, "DEFAULT", IP, PORT))
        for node_id in ("n1", "n2", "n3"):
            assert h[node_id].store.live_instance(key, EID) is not None, (node_id, h.now_ms)
    assert h["n1"].has_quorum() and h["n1"].is_owner(key)
    assert h["n1"].statistics().instances_expired == 0


def test_without_self_preservation_a_minority_node_expires() -> None:
    h = started(DistroConfig(cluster_size=3, self_preservation=False))
    key = key_owned_by("n1")
    register(h, "n1", key)
    h.isolate("n1")
    h.advance(60_000)
    assert not h["n1"].has_quorum()
    assert h["n1"].store.entry(key, EID).is_tombstone
    assert h["n1"].statistics().instances_expired == 1


def test_gaining_ownership_starts_heartbeat_clocks_at_now() -> None:
    h = started()
    key = key_owned_by("n1", also="n2", among=("n2", "n3"))
    t0 = h.now_ms
    register(h, "n1", key)
    h.advance(20_000)  # no beats: n1 marked it unhealthy at ~15 s
    assert h["n2"].store.live_instance(key, EID) == INST.with_health(False)
    assert h["n2"].last_beat_ms(key, EID) is None
    h.crash("n1")
    h.advance(h.config.ping_interval_ms)  # pings to n1 fail: n2 takes over
    gained = h.now_ms
    assert h["n2"].is_owner(key) and h["n2"].last_beat_ms(key, EID) >= gained - h.config.ping_interval_ms
    # Past the original expiry (t0 + 30 s) it is still there: n2's clock started when it gained the key.
    h.advance(t0 + h.config.instance_expire_ms + 5_000 - h.now_ms)
    assert h["n2"].store.live_instance(key, EID) is not None
    assert h["n2"].statistics().instances_expired == 0
    h.advance(gained + h.config.instance_expire_ms + h.config.health_check_interval_ms - h.now_ms)
    assert h["n2"].store.entry(key, EID).is_tombstone
    assert h["n3"].store.entry(key, EID).is_tombstone


def test_losing_ownership_stops_the_heartbeat_clocks() -> None:
    h = started(nodes=("n1", "n2"))
    key = key_owned_by("n2", ("n1", "n2"))
    register(h, "n2", key)
    h.advance(h.config.sync_delay_ms)
    assert h["n1"].last_beat_ms(key, EID) is None and h["n2"].last_beat_ms(key, EID) is not None
    h.crash("n2")
    h.advance(h.config.ping_interval_ms)
    assert h["n1"].is_owner(key) and h["n1"].last_beat_ms(key, EID) is not None
    n2 = h.boot("n2")
    h.advance(h.config.ping_interval_ms)
    assert n2.ready and h["n1"].live_members() == ("n1", "n2")
    assert h["n1"].last_beat_ms(key, EID) is None and n2.last_beat_ms(key, EID) is not None


def test_a_node_frozen_past_the_expiry_does_not_expire_what_beat_elsewhere() -> None:
    """``docker pause`` (or a suspended VM): the frozen owner heard no beats, but the instance beat through
    the other nodes all along. On thaw the owner restarts its heartbeat clocks instead of expiring it."""
    h = started()
    cfg = h.config
    key = key_owned_by("n1")
    register(h, "n1", key)
    h.advance(cfg.sync_delay_ms)
    frozen = h.nodes.pop("n1")  # not ticked; messages to it fail, as over a link that broke
    thaw_at = h.now_ms + cfg.instance_expire_ms + 5_000
    while h.now_ms < thaw_at:
        h.client("n2", Beat(key, "DEFAULT", IP, PORT))
        h.advance(2_000)
    assert h["n2"].is_owner(key) and h["n2"].store.live_instance(key, EID) == INST
    h.nodes["n1"] = frozen
    h.advance(3 * cfg.health_check_interval_ms)  # no beat in between
    assert frozen.is_owner(key) and frozen.live_members() == ("n1", "n2", "n3")
    for node in h.nodes.values():
        assert node.store.live_instance(key, EID) == INST
    assert frozen.statistics().instances_expired == 0

def test_beat_now_answers_only_what_needs_no_owner() -> None:
    """The HTTP server answers a light beat inline when the node has the answer at once (DistroNode.beat_now):
    as the owner, or from a healthy replica (a receipt then waits for the owner). Anything else comes back
    None with nothing done, and goes through handle_client (forwarded) as before."""
    h = started()
    key = key_owned_by("n2")
    register(h, "n2", key)
    h.advance(h.config.sync_delay_ms)
    beat = Beat(key, "DEFAULT", IP, PORT)
    h.now_ms += 1_000
    owner_answer = h["n2"].beat_now(beat, h.now_ms)
    assert owner_answer is not None and owner_answer.body["code"] == 10200  # type: ignore[index]
    assert h["n2"].last_beat_ms(key, EID) == h.now_ms
    replica_answer = h["n1"].beat_now(beat, h.now_ms)
    assert replica_answer == owner_answer and h["n1"].statistics().beats_answered_here == 1
    unknown = Beat(key, "DEFAULT", "10.9.9.9", PORT)
    before = len(h.wire)
    assert h["n1"].beat_now(unknown, h.now_ms) is None
    h.collect("n1")
    assert len(h.wire) == before and h["n1"].statistics().forwards_sent == 0
    _, forwarded = h.client("n1", unknown)  # the usual path forwards it
    assert forwarded is None and h["n1"].statistics().forwards_sent == 1


def test_a_starved_node_reads_what_waited_before_it_judges_silence() -> None:
    """A node's process starved of CPU (a busy machine) runs again with its timer late and its peers' pings
    unread. Its late tick must not declare them down on its own backlog: that moved ownership for a moment,
    and the beat receipts sent meanwhile went to nodes that do not own their keys (instances marked unhealthy
    although their beats were answered on time). It judges silence from the next millisecond on."""
    h = started()
    cfg = h.config

    def ownership_changes() -> int:
        return sum(e.kind == LifecycleKind.OWNERSHIP_CHANGED for e in h.outputs["n1"].events)

    h.cut |= {("n2", "n1"), ("n3", "n1")}
    h.advance(cfg.ping_interval_ms * 2)  # n1 runs, and really hears nothing from its peers for 1 s
    h.cut.clear()
    starved = h.nodes.pop("n1")  # not ticked: what its peers send it waits on the wire
    h.advance(cfg.peer_timeout_ms - cfg.ping_interval_ms, deliver=False)  # under peer_timeout_ms starved
    for _ in range(20):  # the peers keep talking to each other
        h.deliver(target="n2")
        h.deliver(target="n3")
    h.nodes["n1"] = starved
    before = ownership_changes()
    h.tick("n1")  # late: its peers were last heard over peer_timeout_ms ago; their pings wait unread
    assert starved.live_members() == ("n1", "n2", "n3") and ownership_changes() == before
    assert starved.next_deadline_ms() == h.now_ms + 1
    h.deliver(target="n1")
    h.advance(1)
    assert starved.live_members() == ("n1", "n2", "n3") and ownership_changes() == before
    # Silence it did observe while running still counts: cut off for real, it declares them down.
    h.cut |= {("n2", "n1"), ("n3", "n1")}
    h.advance(cfg.peer_timeout_ms + cfg.ping_interval_ms)
    assert starved.live_members() == ("n1",) and ownership_changes() == before + 1


# ------------------------------------------------------------------------------------------------
# Services, counters and bounds
# ------------------------------------------------------------------------------------------------
def test_service_requests_and_their_errors() -> None:
    h = started()
    key = key_owned_by("n1")
    meta = ServiceMeta(protect_threshold=0.5)
    assert h.client("n1", UpdateService(key, meta))[1] == Result(400, f"service {key.grouped_name} not found!")
    assert h.client("n1", CreateService(key, meta))[1] == OK
    assert h.client("n1", CreateService(key, meta))[1] == Result(
        400, f"specified service already exists, serviceName : {key.grouped_name}"
    )
    assert h["n1"].view(key).protect_threshold == 0.5
    register(h, "n1", key)
    assert h.client("n1", DeleteService(key))[1] == Result(
        400, f"Service {key.grouped_name} is not empty, can't be delete. Please unregister instance first"
    )
    h.client("n1", Deregister(key, "DEFAULT", IP, PORT))
    assert h.client("n1", DeleteService(key))[1] == OK
    assert h["n1"].store.entry(key, META_ENTRY_ID).is_tombstone and h["n1"].view(key) is None
    assert h.client("n1", DeleteService(key))[1] == Result(
        400, f"specified service not exist, serviceName : {key.grouped_name}"
    )


def test_update_instance_must_exist() -> None:
    h = started()
    key = key_owned_by("n1")
    _, result = h.client("n1", UpdateInstance(key, "DEFAULT", IP, PORT, {"weight": 2.0}, must_exist=True))
    assert result == Result(400, f"instance not exist: {IP}:{PORT}:unknown:DEFAULT")
    _, result = h.client("n1", UpdateInstance(key, "DEFAULT", IP, PORT, {"enabled": False}))
    assert result == OK and h["n1"].store.live_instance(key, EID) == INST.replace(enabled=False)


def test_instances_per_service_are_bounded() -> None:
    h = started(DistroConfig(cluster_size=3, max_instances_per_service=2))
    key = key_owned_by("n1")
    a, b, c = (make_instance(f"10.0.3.{i}", PORT) for i in range(3))
    assert register(h, "n1", key, a) == OK and register(h, "n1", key, b) == OK
    assert register(h, "n1", key, c) == Result(
        400, f"service {key.grouped_name} already has 2 instances, the most one service may hold"
    )
    assert h["n1"].store.live_instance(key, c.entry_id) is None
    assert register(h, "n1", key, a.replace(weight=5.0)) == OK  # updating an existing one still works
    h.client("n1", Deregister(key, "DEFAULT", b.ip, PORT))
    assert register(h, "n1", key, c) == OK


def test_services_are_bounded_for_client_writes_but_not_for_replication() -> None:
    h = started(DistroConfig(cluster_size=3, max_services=2))
    first, second, third = key_owned_by("n1"), key_owned_by("n2"), key_owned_by("n3")
    assert register(h, "n1", first, INST) == OK and register(h, "n2", second, INST) == OK
    h.advance(h.config.verify_interval_ms + 1)
    refusal = Result(
        400,
        f"cannot create service {third.grouped_name}: this registry already holds 2 services, "
        "the most it may hold (max_services)",
    )
    assert register(h, "n3", third, INST) == refusal
    _, result = h.client("n3", CreateService(third, ServiceMeta()))
    assert result == refusal
    assert register(h, "n1", first, make_instance("10.0.9.9", PORT)) == OK  # existing services still grow
    h.advance(h.config.verify_interval_ms + 1)
    assert all(len(h[n].store) == 2 for n in ("n1", "n2", "n3"))
    # A node configured lower than its peers still takes what they replicate: the bound is on client writes.
    small = started(DistroConfig(cluster_size=3, max_services=1))
    assert register(small, "n1", first, INST) == OK and register(small, "n2", second, INST) == OK
    small.advance(small.config.verify_interval_ms + 1)
    assert all(len(small[n].store) == 2 for n in ("n1", "n2", "n3"))


def keys_owned_by(owner: str, count: int, members: tuple[str, ...] = ("n1", "n2", "n3")) -> list[ServiceKey]:
    """``count`` service keys that ``owner`` owns among ``members``."""
    keys = []
    for i in range(100_000):
        key = ServiceKey("public", "DEFAULT_GROUP", f"many-{i}")
        if owner_of(str(key), members) == owner:
            keys.append(key)
            if len(keys) == count:
                return keys
    raise AssertionError("not enough keys")


def test_owners_creating_services_at_once_do_not_pass_max_services() -> None:
    # Issue 14, finding 5: "--max-services 300 let 303 in". Each owner checked the count of the keys it had
    # heard of, so owners creating services within one replication delay all passed the check. Now each of
    # the n live members creates new services only within its share (max_services // n) of the keys it owns.
    h = started(DistroConfig(cluster_size=3, max_services=300))
    owners = ("n1", "n2", "n3")
    keys = {owner: iter(keys_owned_by(owner, 110)) for owner in owners}
    for _ in range(99):  # 297 services, created one per owner per round, replicated after each round
        for owner in owners:
            assert register(h, owner, next(keys[owner])) == OK
        h.advance(h.config.sync_delay_ms)
    burst = [(owner, next(keys[owner])) for _ in range(5) for owner in owners]
    results = [register(h, owner, key) for owner, key in burst]  # no replication in between
    h.advance(h.config.verify_interval_ms + 1)
    assert [len(h[n].store) for n in owners] == [300, 300, 300]
    assert results.count(OK) == 3
    owner, key = burst[-1]
    assert results[-1] == Result(
        400,
        f"cannot create service {key.grouped_name}: this node owns 100 services, its share of max_services "
        "(300 over 3 live members)",
    )


def test_a_lone_member_may_use_all_of_max_services() -> None:
    h = started(DistroConfig(cluster_size=1, max_services=3), ("n1",))
    assert [register(h, "n1", key) for key in keys_owned_by("n1", 4, ("n1",))] == [OK, OK, OK, Result(
        400, "cannot create service DEFAULT_GROUP@@many-3: this registry already holds 3 services, the most it may "
        "hold (max_services)")]


def test_statistics_counters_move() -> None:
    h = started()
    before = {node_id: node.statistics() for node_id, node in h.nodes.items()}
    assert all(s.ready and s.peers_up == 2 and s.peers_known == 2 for s in before.values())
    key = key_owned_by("n2")
    h.client("n1", Register(key, INST))
    h.advance(h.config.verify_interval_ms + 1)
    s1, s2, s3 = (h[n].statistics() for n in ("n1", "n2", "n3"))
    assert s1.forwards_sent == before["n1"].forwards_sent + 1
    assert s2.forwards_received == before["n2"].forwards_received + 1
    assert s2.requests_applied == before["n2"].requests_applied + 1
    assert s2.sync_batches_sent >= 2 and s2.sync_entries_sent >= 2
    assert s1.sync_batches_received >= 1 and s3.sync_batches_received >= 1
    assert s1.entries_applied == s2.entries_applied == s3.entries_applied == 2  # the instance, the settings
    assert s2.digests_sent > before["n2"].digests_sent
    assert s2.notifications >= 1 and s1.notifications >= 1
    assert (s1.keys, s1.live_instances, s1.tombstones) == (1, 1, 0)
    assert (s1.owned_keys, s2.owned_keys, s3.owned_keys) == (0, 1, 0)
    assert s1.notifier_depth == 0 and s1.dirty_entries == 0 and s1.pending_forwards == 0


def test_stale_entries_refused_answer_with_a_fresh_tombstone() -> None:
    cfg = DistroConfig(cluster_size=2, tombstone_ttl_ms=60_000, gc_interval_ms=1_000)
    h = started(cfg, ("n1", "n2"))
    key = key_owned_by("n1", ("n1", "n2"))
    register(h, "n1", key)
    old = h["n1"].store.entry(key, EID)
    h.client("n1", Deregister(key, "DEFAULT", IP, PORT))
    assert h.client("n1", DeleteService(key))[1] == OK  # its implicit settings go too
    h.advance(2 * cfg.instance_expire_ms + 2 * cfg.gc_interval_ms)
    assert key not in h["n1"].store and key not in h["n2"].store  # tombstones collected
    h["n1"].handle_peer("n2", SyncBatch(((key, EID, old),)), h.now_ms)
    assert h["n1"].statistics().stale_entries_refused == 1
    fresh = h["n1"].store.entry(key, EID)
    assert fresh.is_tombstone and fresh.version > old.version
    assert h["n1"].view(key) is None


@pytest.mark.parametrize("bad", [{"ping_interval_ms": 0}, {"heartbeat_timeout_ms": 10, "instance_expire_ms": 5},
                                 {"sync_batch_entries": 0}, {"max_pending_forwards": -1}])
def test_config_rejects_nonsense(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        DistroConfig(**bad)


def test_members_and_addresses() -> None:
    h = started()
    h["n1"].peer_connected("n2", "10.1.1.2:8848", h.now_ms)
    h.collect("n1")
    ping = h.pending(Ping, source="n1", target="n2")[-1].message
    assert isinstance(ping, Ping) and (ping.ready, ping.address) == (True, "n1") and ping.started_ms > 0
    members = h["n1"].members()
    assert [(m.node_id, m.is_self, m.up) for m in members] == [("n1", True, True), ("n2", False, True),
                                                              ("n3", False, True)]
    assert h["n1"].address_of("n2") == "10.1.1.2:8848" and h["n1"].address_of("n1") == "n1"
    assert isinstance(h["n1"], DistroNode)


def test_chunked_digests_repair_every_key_range() -> None:
    h = started(DistroConfig(cluster_size=2, digest_chunk_keys=2), ("n1", "n2"))
    keys: list[ServiceKey] = []
    i = 0
    while len(keys) < 7:
        key = ServiceKey("public", "DEFAULT_GROUP", f"k-{i}")
        i += 1
        if owner_of(str(key), ("n1", "n2")) == "n1":
            keys.append(key)
    for key in keys[:5]:
        register(h, "n1", key)
    h.advance(h.config.sync_delay_ms, deliver=False)
    h.drop(SyncBatch)  # n2 misses all five
    # n2 alone holds entries for two more keys n1 owns (written while n1 was away, say).
    for key in keys[5:]:
        h["n2"].handle_peer("n3", SyncBatch(((key, EID, Entry(Version(h.now_ms, 0, "n3"), INST)),)), h.now_ms)
    h.collect("n2")
    while not h.pending(Digest, source="n1", target="n2"):
        h.deliver_all()
        h.step()
    # A round goes a chunk per tick: the first at once, then one at each of the next ticks (at once).
    before = h.now_ms
    digests = [w.message for w in h.pending(Digest, source="n1", target="n2")]
    assert len(digests) == 1
    while digests[-1].high is not None:
        assert h["n1"].next_deadline_ms() <= h.now_ms
        h.tick("n1")
        digests += [w.message for w in h.pending(Digest, source="n1", target="n2")[len(digests):]]
    assert h.now_ms == before
    assert [len(d.digests) for d in digests] == [2, 2, 1]
    assert digests[0].low is None and digests[-1].high is None
    assert [d.low for d in digests[1:]] == [d.high for d in digests[:-1]]
    h.deliver_all()
    for key in keys:
        assert h["n1"].store.digest(key) == h["n2"].store.digest(key) != 0, key


def test_a_digest_round_to_a_peer_that_goes_down_ends() -> None:
    # Chunks go one per tick; a peer seen down mid-round gets no more of them, and the node stops asking
    # to be ticked at once for that round (no busy loop).
    h = started(DistroConfig(cluster_size=2, digest_chunk_keys=1), ("n1", "n2"))
    for i in range(40):
        key = ServiceKey("public", "DEFAULT_GROUP", f"k-{i}")
        if owner_of(str(key), ("n1", "n2")) == "n1":
            register(h, "n1", key)
    h.advance(h.config.sync_delay_ms)
    while not h.pending(Digest, source="n1", target="n2"):
        h.deliver_all()
        h.step()
    assert h["n1"].next_deadline_ms() <= h.now_ms  # the round goes on at the next tick
    h.isolate("n2")
    h.drop()
    h.advance(h.config.peer_timeout_ms + h.config.ping_interval_ms, deliver=False)
    assert "n2" not in h["n1"].live_members()
    h.drop()
    h.tick("n1")
    assert not h.pending(Digest, source="n1", target="n2")
    assert h["n1"].next_deadline_ms() > h.now_ms


def test_a_starting_node_asks_a_peer_again_once_it_is_ready() -> None:
    # n1 and n2 restart together; n2 answers n1's SnapshotRequest "not ready". n3 (which has the data)
    # is unreachable from n1. n2 then loads n3's snapshot, becomes ready and pings n1: n1 sees a ready peer
    # up, so it must ask it again and become ready (it once stayed not ready for good).
    h = started()
    key = key_owned_by("n3")
    register(h, "n3", key)
    h.advance(h.config.sync_delay_ms)
    h.crash("n1")
    h.crash("n2")
    h.advance(h.config.ping_interval_ms)
    n1, n2 = h.boot("n1"), h.boot("n2")
    h.cut |= {("n1", "n3"), ("n3", "n1")}
    h.tick("n1")
    h.tick("n2")
    h.deliver(SnapshotRequest, source="n1", target="n2")
    h.deliver(SnapshotChunk, source="n2", target="n1")  # "not ready"
    h.advance(5 * h.config.snapshot_timeout_ms)
    assert n2.ready and n2.store.live_instance(key, EID) is not None
    assert n1.ready  # it asked n2 again once n2 was ready
    assert n1.live_members() == ("n1", "n2")
    assert n1.store.live_instance(key, EID) is not None  # and loaded n2's copy of n3's data


def _restart_asking(h: Harness, restarted: str, asked: str) -> None:
    """``restarted`` crashes and boots again; its snapshot request reaches ``asked`` alone."""
    h.crash(restarted)
    h.advance(h.config.ping_interval_ms)
    h.boot(restarted)
    h.drop()
    h.tick(restarted)
    h.drop(SnapshotRequest, source=restarted, target=next(n for n in h.nodes if n not in (restarted, asked)))
    h.drop(Ping)
    h.deliver(SnapshotRequest, source=restarted, target=asked)
    assert h.pending(SnapshotChunk, source=asked, target=restarted)


def test_a_snapshot_whose_chunks_failed_before_the_link_came_up_is_sent_again_at_once() -> None:
    # n3 restarts; its request reaches n1 before n1's own link to n3 is up, so the chunks n1 sends fail,
    # but the runtime reports those failures later, from a task: after it told n1 the link is up. n1 once
    # owed the snapshot until the next reconnect (which had already happened), and n3 waited its
    # snapshot_retry_ms for nothing (1.8 s of a 1M restart). Now n1 sends it again at once.
    h = started()
    key = key_owned_by("n1")
    register(h, "n1", key)
    h.advance(h.config.sync_delay_ms)
    _restart_asking(h, "n3", "n1")
    failed = h.pending(SnapshotChunk, source="n1", target="n3")
    h["n1"].peer_connected("n3", "n3", h.now_ms)
    h.collect("n1")
    h.drop(Ping)
    h.wire = [w for w in h.wire if not any(w is f for f in failed)]
    for w in failed:  # the failures of the chunks sent before the link, reported after it came up
        h["n1"].handle_send_failed("n3", w.message, h.now_ms)
    h.collect("n1")
    again = h.pending(SnapshotChunk, source="n1", target="n3")
    assert again and again[0].message.snapshot_id != failed[0].message.snapshot_id  # one new snapshot, whole
    assert len({w.message.snapshot_id for w in again}) == 1
    h.deliver(SnapshotChunk, source="n1", target="n3")
    assert h["n3"].ready and h["n3"].store.live_instance(key, EID) is not None


def test_a_snapshot_chunk_failing_on_the_link_it_was_sent_on_waits_for_the_next_link() -> None:
    # The same failure with no new link since the snapshot was served: owed, sent when the link comes up
    # (not again and again while the peer cannot be reached).
    h = started()
    register(h, "n1", key_owned_by("n1"))
    h.advance(h.config.sync_delay_ms)
    _restart_asking(h, "n3", "n1")
    assert h.fail(SnapshotChunk, source="n1", target="n3")
    assert not h.pending(SnapshotChunk, source="n1", target="n3")
    h["n1"].peer_connected("n3", "n3", h.now_ms)
    h.collect("n1")
    assert h.pending(SnapshotChunk, source="n1", target="n3")


def test_dirty_overflow_falls_back_to_a_digest_round() -> None:
    h = started(DistroConfig(cluster_size=2, max_dirty_entries_per_peer=2), ("n1", "n2"))
    key = key_owned_by("n1", ("n1", "n2"))
    instances = [make_instance(f"10.0.4.{i}", PORT) for i in range(3)]
    for inst in instances[:2]:  # the service's implicit settings, then two instances: one over the bound
        register(h, "n1", key, inst)
    stats = h["n1"].statistics()
    assert stats.dirty_overflows == 1 and stats.dirty_entries == 0
    assert [type(w.message) for w in h.wire] == [Digest]  # sent at once, no waiting for the verify round
    register(h, "n1", key, instances[2])
    assert h["n1"].statistics().dirty_entries == 1
    h.advance(h.config.sync_delay_ms)
    assert live_entries(h["n2"]) == live_entries(h["n1"])
    assert len(live_entries(h["n2"])) == 4


def test_notifier_overflow_rebuilds_every_view() -> None:
    h = started(DistroConfig(cluster_size=2, max_notifier_keys=1), ("n1", "n2"))
    keys = [ServiceKey("public", "DEFAULT_GROUP", f"ov-{i}") for i in range(3)]
    items = tuple(
        (key, EID, Entry(Version(h.now_ms, i, "n1"), INST)) for i, key in enumerate(keys)
    )
    h["n2"].handle_peer("n1", SyncBatch(items), h.now_ms)
    assert h["n2"].statistics().notifier_overflows >= 1
    h.collect("n2")
    changed = {c.key for c in h.outputs["n2"].changes}
    assert changed == set(keys)
    assert all(h["n2"].view(key).instances == (INST,) for key in keys)
    assert h["n2"].statistics().notifier_depth == 0
