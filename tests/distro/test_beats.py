"""Beats answered from the replica (distro/beats.py), one exchange at a time on the hand-driven harness.

Proves: a node that does not own a key answers a beat for an instance its replica holds healthy at once and
renews it on the owner with one ``Renew`` per owner every ``beat_receipt_interval_ms`` (one item per
instance); the owner's clock restarts when the receipt lands, so the instance outlives its expiry on
receipts alone. What the replica lacks, holds unhealthy or holds bound to a gRPC connection is forwarded, as
is every beat with the receipts turned off or for an instance whose own timeout is too short. A receipt
never brings back an instance the owner deleted: the owner answers it with the tombstone and the client's
next beat gets 20404. Receipts follow an ownership change to the new owner, are bounded in bytes, and a
receipt the owner meanwhile marked unhealthy makes it healthy again.
"""

from __future__ import annotations

from dataclasses import replace

from distro.beats import BeatReceipts, answer_from_replica, receipt_bytes
from distro.codec import decode_message, encode_message
from distro.config import DistroConfig
from distro.messages import Digest, Forward, Renew, RenewReply, Repair, SyncBatch
from distro.model import ServiceKey, make_instance
from distro.ownership import owner_of
from distro.requests import Beat, Deregister, Register, Result
from distro.testing.harness import Harness

CONFIG = DistroConfig(cluster_size=3, heartbeat_timeout_ms=6_000, instance_expire_ms=9_000, beat_receipt_interval_ms=1_000)
IP, PORT = "10.0.0.1", 8080
INST = make_instance(IP, PORT)
OK_BEAT = Result(200, {"clientBeatInterval": 5000, "code": 10200, "lightBeatEnabled": True})
NOT_FOUND = Result(200, {"clientBeatInterval": 5000, "code": 20404})


def owned_by(owner: str, skip: int = 0, members: tuple[str, ...] = ("n1", "n2", "n3")) -> ServiceKey:
    """The ``skip``-th service key (from 0) that ``owner`` owns among ``members``."""
    for i in range(10_000):
        key = ServiceKey("public", "DEFAULT_GROUP", f"svc-{i}")
        if owner_of(str(key), members) == owner:
            if skip == 0:
                return key
            skip -= 1
    raise AssertionError("no such key")


def registered(config: DistroConfig = CONFIG, owner: str = "n2", skip: int = 0) -> tuple[Harness, ServiceKey]:
    """Three ready nodes; INST registered on ``owner`` and replicated everywhere."""
    h = Harness(("n1", "n2", "n3"), config)
    h.start()
    key = owned_by(owner, skip)
    h.client(owner, Register(key, INST))
    h.advance(config.sync_delay_ms + 1)
    assert all(h[n].store.live_instance(key, INST.entry_id) == INST for n in ("n1", "n2", "n3"))
    return h, key


def light(key: ServiceKey, ip: str = IP, port: int = PORT) -> Beat:
    return Beat(key, "DEFAULT", ip, port)


def test_a_non_owner_answers_from_its_replica_and_renews_on_the_owner_in_one_batch() -> None:
    h, key = registered()
    other = make_instance("10.0.0.2", 8080)
    h.client("n2", Register(key, other))
    h.advance(CONFIG.sync_delay_ms + 1)
    for _ in range(3):  # the same instance three times: one receipt
        _, answer = h.client("n1", light(key))
        assert answer == OK_BEAT
    _, answer = h.client("n1", light(key, "10.0.0.2"))
    assert answer == OK_BEAT
    assert h.pending(Forward) == [] and h.pending(Renew) == []  # nothing travels yet
    assert h["n1"].statistics().beats_answered_here == 4
    h.advance(CONFIG.beat_receipt_interval_ms, deliver=False)
    renewals = h.pending(Renew, source="n1")
    assert [w.target for w in renewals] == ["n2"]
    assert renewals[0].message.items == ((key, INST.entry_id, ""), (key, other.entry_id, ""))
    assert h["n1"].statistics().beat_receipts_sent == 2
    before = h["n2"].last_beat_ms(key, INST.entry_id)
    h.deliver(Renew)
    assert h["n2"].last_beat_ms(key, INST.entry_id) == h.now_ms > (before or 0)
    assert h.pending(RenewReply) == []  # nothing is off: no answer


def test_receipts_alone_keep_an_instance_alive_past_its_expiry() -> None:
    h, key = registered()
    for _ in range(5):  # 25 s of beats every 5 s, all to non-owners (expiry is 9 s)
        h.advance(5_000)
        assert h.client("n1", light(key))[1] == OK_BEAT
        assert h.client("n3", light(key))[1] == OK_BEAT
    h.advance(2_000)
    for node_id in ("n1", "n2", "n3"):
        assert h[node_id].store.live_instance(key, INST.entry_id) == INST  # never marked unhealthy
    assert h["n2"].statistics().instances_marked_unhealthy == 0
    assert h["n2"].statistics().forwards_received == 0


def test_an_instance_the_replica_lacks_is_forwarded_and_the_owner_says_20404() -> None:
    h, key = registered()
    _, answer = h.client("n1", light(key, "10.0.0.9"))
    assert answer is None and len(h.pending(Forward, source="n1", target="n2")) == 1
    h.deliver_all()
    assert h.outputs["n1"].replies[-1].result == NOT_FOUND


def test_a_registration_not_replicated_yet_is_forwarded_and_answered_ok() -> None:
    h = Harness(("n1", "n2", "n3"), CONFIG)
    h.start()
    key = owned_by("n2")
    h.client("n2", Register(key, INST))  # its SyncBatch has not reached n1 yet
    _, answer = h.client("n1", light(key))
    assert answer is None
    h.deliver_all()
    assert h.outputs["n1"].replies[-1].result == OK_BEAT


def test_an_unhealthy_instance_is_forwarded_so_the_owner_makes_it_healthy_at_once() -> None:
    h, key = registered()
    h.advance(CONFIG.heartbeat_timeout_ms + CONFIG.health_check_interval_ms + 1)
    assert h["n1"].store.live_instance(key, INST.entry_id) == INST.with_health(False)
    _, answer = h.client("n1", light(key))
    assert answer is None  # forwarded
    h.deliver(Forward)
    assert h["n2"].store.live_instance(key, INST.entry_id) == INST  # healthy on the owner at once
    h.deliver_all()
    assert h.outputs["n1"].replies[-1].result == OK_BEAT
    h.advance(CONFIG.sync_delay_ms + 1)
    assert h["n1"].store.live_instance(key, INST.entry_id) == INST


def test_a_receipt_makes_an_instance_the_owner_marked_unhealthy_meanwhile_healthy_again() -> None:
    h, key = registered()
    h.advance(CONFIG.heartbeat_timeout_ms - 500)
    assert h.client("n1", light(key))[1] == OK_BEAT
    # The owner's check marks it unhealthy before the receipt lands (held on the wire meanwhile).
    h.advance(CONFIG.health_check_interval_ms + 600, deliver=False)
    assert len(h.pending(Renew, source="n1")) == 1
    h.deliver(SyncBatch)
    assert h["n2"].store.live_instance(key, INST.entry_id) == INST.with_health(False)
    assert h["n1"].store.live_instance(key, INST.entry_id) == INST.with_health(False)
    h.deliver(Renew)
    h.advance(CONFIG.sync_delay_ms + 1)
    for node_id in ("n1", "n2", "n3"):
        assert h[node_id].store.live_instance(key, INST.entry_id) == INST


def test_a_receipt_never_brings_back_an_expired_instance_and_the_next_beat_gets_20404() -> None:
    h, key = registered()
    # The client stops beating; the owner marks the instance unhealthy, then expires it. n1 hears neither
    # (both writes, and anti-entropy's repairs, are lost on the way): its replica still holds the instance healthy.
    while h["n2"].store.live_instance(key, INST.entry_id) is not None:
        h.advance(500, deliver=False)
        for kind in (SyncBatch, Digest, Repair):
            h.drop(kind, target="n1")
        h.deliver_all()
    assert h["n1"].store.live_instance(key, INST.entry_id) == INST
    assert h.client("n1", light(key))[1] == OK_BEAT  # answered from the stale replica
    h.advance(CONFIG.beat_receipt_interval_ms, deliver=False)
    h.deliver(Renew)
    assert h["n2"].store.live_instance(key, INST.entry_id) is None  # not resurrected
    assert h["n2"].statistics().beat_receipts_stale == 1
    assert h.pending(RenewReply) == []
    echoes = h.pending(SyncBatch, source="n2", target="n1")
    assert [item[1:] for w in echoes for item in w.message.items] == [
        (INST.entry_id, h["n2"].store.entry(key, INST.entry_id))
    ]
    h.deliver(SyncBatch)
    assert h["n1"].store.live_instance(key, INST.entry_id) is None
    _, answer = h.client("n1", light(key))
    assert answer is None
    h.deliver_all()
    assert h.outputs["n1"].replies[-1].result == NOT_FOUND


def test_a_receipt_for_a_deregistered_instance_registers_nothing() -> None:
    h, key = registered()
    h.client("n2", Deregister(key, "DEFAULT", IP, PORT))  # its tombstone still on the way to n1
    assert h.client("n1", light(key))[1] == OK_BEAT
    h.advance(CONFIG.beat_receipt_interval_ms)
    assert all(h[n].store.live_instance(key, INST.entry_id) is None for n in ("n1", "n2", "n3"))


def moving_key(new_owner: str) -> ServiceKey:
    """A key n2 owns among n1..n3 that ``new_owner`` owns once n2 is gone."""
    for i in range(10_000):
        key = ServiceKey("public", "DEFAULT_GROUP", f"svc-{i}")
        if owner_of(str(key), ("n1", "n2", "n3")) == "n2" and owner_of(str(key), ("n1", "n3")) == new_owner:
            return key
    raise AssertionError("no such key")


def test_receipts_go_to_the_new_owner_after_an_ownership_change() -> None:
    for new_owner in ("n1", "n3"):
        h = Harness(("n1", "n2", "n3"), CONFIG)
        h.start()
        key = moving_key(new_owner)
        h.client("n2", Register(key, INST))
        h.advance(CONFIG.sync_delay_ms + 1)
        beat_ms = h.now_ms
        assert h.client("n1", light(key))[1] == OK_BEAT
        h.crash("n2")
        h.advance(CONFIG.ping_interval_ms, deliver=False)
        assert h.fail(target="n2") > 0  # n1 and n3 see n2 down before the receipt is due
        assert h["n1"].owner_of(key) == new_owner == h["n3"].owner_of(key)
        h.advance(CONFIG.beat_receipt_interval_ms - CONFIG.ping_interval_ms, deliver=False)
        assert h.pending(Renew, target="n2") == []
        if new_owner == "n3":
            assert len(h.pending(Renew, source="n1", target="n3")) == 1
            h.deliver(Renew)
        # The clock of the new owner started when it gained the key; the receipt moved it on.
        assert h[new_owner].last_beat_ms(key, INST.entry_id) == beat_ms + CONFIG.beat_receipt_interval_ms


def test_a_receipt_that_reaches_a_node_that_does_not_own_the_key_is_ignored() -> None:
    h, key = registered(owner="n2")
    h["n3"].handle_peer("n1", Renew(((key, INST.entry_id, ""),)), h.now_ms)
    h.collect("n3")
    assert h["n3"].last_beat_ms(key, INST.entry_id) is None
    assert h.pending(source="n3", kind=RenewReply) == [] and h.pending(SyncBatch, source="n3") == []


def test_receipts_are_bounded_in_bytes_and_sent_at_once_when_full() -> None:
    per = receipt_bytes(owned_by("n2"), make_instance("10.0.1.1", 8080).entry_id)
    config = replace(CONFIG, max_beat_receipt_bytes=3 * per)
    h, key = registered(config)
    for i in range(1, 4):
        h.client("n2", Register(key, make_instance(f"10.0.1.{i}", 8080)))
    h.advance(config.sync_delay_ms + 1)
    h.client("n1", light(key, "10.0.1.1"))
    h.client("n1", light(key, "10.0.1.2"))
    assert h.pending(Renew) == [] and h["n1"].statistics().beat_receipt_bytes == 2 * per
    h.client("n1", light(key, "10.0.1.3"))  # the bound is reached: sent without waiting for the interval
    assert len(h.pending(Renew, source="n1", target="n2")) == 1
    assert h["n1"].statistics().beat_receipt_bytes == 0


def test_what_is_forwarded_as_before() -> None:
    off = replace(CONFIG, beat_receipt_interval_ms=0)
    short = make_instance(IP, PORT, metadata={"preserved.heart.beat.timeout": "2000"})
    bound = INST.replace(connection="1_10.9.9.9_5000_abcdef")
    assert answer_from_replica(light(ServiceKey("p", "g", "s")), INST, CONFIG) == OK_BEAT
    assert answer_from_replica(light(ServiceKey("p", "g", "s")), INST, off) is None  # receipts turned off
    assert answer_from_replica(light(ServiceKey("p", "g", "s")), None, CONFIG) is None
    assert answer_from_replica(light(ServiceKey("p", "g", "s")), INST.with_health(False), CONFIG) is None
    assert answer_from_replica(light(ServiceKey("p", "g", "s")), short, CONFIG) is None  # 2 s < 3 receipts
    assert answer_from_replica(light(ServiceKey("p", "g", "s")), bound, CONFIG) is None
    slow = make_instance(IP, PORT, metadata={"preserved.heart.beat.interval": "7000"})
    answer = answer_from_replica(light(ServiceKey("p", "g", "s")), slow, CONFIG)
    assert answer is not None and isinstance(answer.body, dict) and answer.body["clientBeatInterval"] == 7000


def test_with_receipts_off_every_beat_goes_to_the_owner() -> None:
    h, key = registered(replace(CONFIG, beat_receipt_interval_ms=0))
    assert h.client("n1", light(key))[1] is None
    assert len(h.pending(Forward, source="n1", target="n2")) == 1


def test_a_full_beat_found_in_the_replica_is_answered_here_too() -> None:
    h, key = registered()
    _, answer = h.client("n3", Beat(key, "DEFAULT", "0.0.0.0", 1, instance=INST))  # its body names the entry
    assert answer == OK_BEAT and h["n3"].statistics().beats_answered_here == 1


def test_beat_receipts_travel_as_renew_items_without_a_connection() -> None:
    message = Renew(((owned_by("n1"), INST.entry_id, ""),))
    assert decode_message(encode_message(message)) == message


def test_the_receipt_buffer_keeps_one_receipt_per_instance_and_counts_its_bytes() -> None:
    receipts = BeatReceipts(interval_ms=1_000, max_bytes=10_000)
    key = ServiceKey("public", "DEFAULT_GROUP", "svc")
    assert receipts.next_send_ms() is None
    receipts.add(key, "a", 5_000)
    receipts.add(key, "a", 5_600)
    receipts.add(key, "b", 5_700)
    assert len(receipts) == 2 and receipts.answered == 3
    assert receipts.bytes == receipt_bytes(key, "a") + receipt_bytes(key, "b")
    assert receipts.next_send_ms() == 6_000  # one interval after the first
    assert receipts.take() == [(key, "a"), (key, "b")]
    assert receipts.bytes == 0 and receipts.next_send_ms() is None and receipts.sent_items == 2
