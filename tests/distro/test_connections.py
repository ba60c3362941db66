"""The pure connection table: one instance per service per connection, bind before the write, conditional
deregistrations on close, and Nacos's detection schedule."""

from __future__ import annotations

import pytest

from distro.codec import ProtocolError, decode_message, encode_message
from distro.connections import ConnectionTable, ConnectionTimings, Detection, judge_renewal
from distro.datum import Entry
from distro.messages import Forward, Renew, RenewReply, SyncBatch
from distro.model import ServiceKey, ValidationError, make_instance
from distro.requests import Deregister, Register
from distro.versions import Version

KEY = ServiceKey("public", "DEFAULT_GROUP", "orders")
OTHER = ServiceKey("public", "DEFAULT_GROUP", "users")
A = make_instance("10.0.0.1", 80)
B = make_instance("10.0.0.2", 80)


def test_register_marks_the_instance_and_replaces_the_previous_one() -> None:
    table = ConnectionTable()
    table.open("c1", 0)
    [write] = table.register("c1", KEY, (A,), 0)
    assert write == Register(KEY, A.__class__(**{**_fields(A), "connection": "c1"}))
    writes = table.register("c1", KEY, (B,), 0)
    assert writes[0] == Deregister(KEY, "DEFAULT", "10.0.0.1", 80, connection="c1")
    assert isinstance(writes[1], Register) and writes[1].instance.ip == "10.0.0.2"
    assert [inst.ip for _, _, inst in table.instances("c1")] == ["10.0.0.2"]
    assert table.bound_count == 1


def test_registering_the_same_entry_again_rebinds_it_with_one_write() -> None:
    table = ConnectionTable()
    table.open("c1", 0)
    table.register("c1", KEY, (A,), 0)
    heavier = A.replace(weight=2.0)
    [write] = table.register("c1", KEY, (heavier,), 5)  # same entry, new weight: nothing to deregister
    assert isinstance(write, Register) and write.instance.weight == 2.0 and write.instance.connection == "c1"
    bound = table.bound("c1", KEY, A.entry_id)
    assert bound is not None and bound.weight == 2.0
    assert table.bound_count == 1
    table.register("c1", OTHER, (heavier,), 6)  # a service the connection held nothing of
    assert table.bound_count == 2
    table.register("c1", KEY, (A, B), 7)  # a batch over a single binding: the general path
    [write] = table.register("c1", KEY, (B,), 8)[1:]  # back to one: A deregistered first
    assert isinstance(write, Register) and write.instance.ip == "10.0.0.2"
    assert table.bound_count == 2
    assert sorted(w.key.service for w in table.close("c1")) == ["orders", "users"]


def _fields(inst: object) -> dict[str, object]:
    return {name: getattr(inst, name) for name in ("ip", "port", "cluster", "weight", "healthy", "enabled", "metadata")}


def test_batch_replaces_the_service_and_close_deregisters_everything_conditionally() -> None:
    table = ConnectionTable()
    table.open("c1", 0)
    table.register("c1", KEY, (A,), 0)
    table.register("c1", OTHER, (A, B), 0)
    assert table.bound_count == 3
    writes = table.close("c1")
    assert sorted((w.key.service, w.ip) for w in writes if isinstance(w, Deregister)) == [
        ("orders", "10.0.0.1"), ("users", "10.0.0.1"), ("users", "10.0.0.2")]
    assert all(isinstance(w, Deregister) and w.connection == "c1" for w in writes)
    assert table.bound_count == 0 and "c1" not in table and table.close("c1") == []


def test_deregister_and_unbind() -> None:
    table = ConnectionTable()
    table.open("c1", 0)
    table.register("c1", KEY, (A,), 0)
    assert table.deregister("c1", KEY, B) == [Deregister(KEY, "DEFAULT", "10.0.0.2", 80, connection="c1")]
    assert table.bound("c1", KEY, A.entry_id) is not None
    table.unbind("c1", KEY, A.entry_id)
    assert table.bound("c1", KEY, A.entry_id) is None and table.bound_count == 0
    assert table.close("c1") == []


def test_unknown_connection_and_bound_are_refused() -> None:
    table = ConnectionTable(ConnectionTimings(max_bound_per_connection=2))
    with pytest.raises(ValidationError, match="unregistered"):
        table.register("nope", KEY, (A,), 0)
    table.open("c1", 0)
    table.register("c1", KEY, (A, B), 0)
    with pytest.raises(ValidationError, match="at most 2"):
        table.register("c1", OTHER, (A,), 0)
    table.register("c1", KEY, (A,), 0)  # replacing within the bound is fine
    table.register("c1", OTHER, (A,), 0)
    assert table.bound_count == 2


def test_detection_probes_idle_connections_and_gives_up_on_silence() -> None:
    table = ConnectionTable(ConnectionTimings(probe_after_idle_ms=20_000, give_up_after_ms=5_000))
    table.open("quiet", 0)
    table.open("chatty", 0)
    table.open("answers", 0)
    assert table.detect(19_999) == Detection((), ())
    table.touch("chatty", 15_000)
    assert table.detect(20_000) == Detection(("quiet", "answers"), ())
    assert table.detect(21_000) == Detection((), ())  # a probe is sent once
    table.touch("answers", 22_000)  # any traffic answers the probe
    assert table.detect(25_000) == Detection((), ("quiet",))  # the runtime closes it
    table.close("quiet")
    assert table.detect(42_000) == Detection(("chatty", "answers"), ())
    assert table.detect(47_000) == Detection((), ("chatty", "answers"))


def test_renewals_are_grouped_by_the_current_owner() -> None:
    table = ConnectionTable()
    table.open("c1", 0)
    table.open("c2", 0)
    table.register("c1", KEY, (A,), 0)
    table.register("c2", KEY, (B,), 0)
    table.register("c2", OTHER, (A,), 0)
    owners = {KEY: "n1", OTHER: None}
    batches = table.renewals(owners.get)
    assert batches == {"n1": [(KEY, A.entry_id, "c1"), (KEY, B.entry_id, "c2")]}
    owners[OTHER] = "n2"
    assert table.renewals(owners.get)["n2"] == [(OTHER, A.entry_id, "c2")]


def test_renew_reply_registers_missing_bound_instances_and_keeps_taken_ones_bound() -> None:
    table = ConnectionTable()
    table.open("c1", 0)
    table.register("c1", KEY, (A,), 1_000)
    table.register("c1", OTHER, (B,), 1_000)
    writes = table.on_renew_reply(
        missing=((KEY, A.entry_id, "c1"), (KEY, B.entry_id, "c1"), (KEY, A.entry_id, "gone")),
        taken=((OTHER, B.entry_id, "c1", 1_500),),  # written after this connection registered it
        now_ms=2_000,
    )
    assert len(writes) == 1 and isinstance(writes[0], Register)
    assert writes[0].instance.ip == "10.0.0.1" and writes[0].instance.connection == "c1"
    # taken by another writer: no write now, but still bound (and renewed) while the connection is open
    assert table.bound("c1", OTHER, B.entry_id) is not None
    assert table.renewals({KEY: "n1", OTHER: "n1"}.get)["n1"] == [(KEY, A.entry_id, "c1"), (OTHER, B.entry_id, "c1")]
    # the other writer's entry went away: the next renewal finds it missing and registers it again
    [again] = table.on_renew_reply(missing=((OTHER, B.entry_id, "c1"),), taken=(), now_ms=3_000)
    assert isinstance(again, Register) and again.key == OTHER and again.instance.connection == "c1"
    # its close deregisters both, each conditionally on the connection (another's entry is left alone)
    assert table.close("c1") == [Deregister(KEY, "DEFAULT", "10.0.0.1", 80, connection="c1"),
                                 Deregister(OTHER, "DEFAULT", B.ip, B.port, connection="c1")]


def test_an_entry_taken_before_this_connection_registered_is_registered_again() -> None:
    """The owner still holds the previous holder's entry: this connection's registration has not landed yet
    (delayed, or applied elsewhere after a forward timeout). Forgetting it would lose a live client."""
    table = ConnectionTable()
    table.open("c2", 0)
    table.register("c2", KEY, (A,), 5_000)
    [write] = table.on_renew_reply(missing=(), taken=((KEY, A.entry_id, "c2", 4_000),), now_ms=6_000)
    assert isinstance(write, Register) and write.instance.connection == "c2"
    assert table.bound("c2", KEY, A.entry_id) is not None
    # later the owner reports a write made after the re-registration: left to that writer, still bound
    assert table.on_renew_reply(missing=(), taken=((KEY, A.entry_id, "c2", 6_500),), now_ms=7_000) == []
    assert table.bound("c2", KEY, A.entry_id) is not None


def test_the_owner_judges_each_renewed_instance() -> None:
    item = (KEY, A.entry_id, "c1")
    mine = A.__class__(**{**_fields(A), "connection": "c1"})
    theirs = A.__class__(**{**_fields(A), "connection": "c2"})
    assert judge_renewal(item, owned=False, live=mine) == "ignore"
    assert judge_renewal(item, owned=True, live=None) == "missing"
    assert judge_renewal(item, owned=True, live=mine) == "touch"
    assert judge_renewal(item, owned=True, live=theirs) == "taken"
    assert judge_renewal(item, owned=True, live=A) == "taken"  # re-registered over v1 HTTP
    orphan = A.__class__(**{**_fields(A), "connection": "c1", "orphaned_ms": 7})
    assert judge_renewal(item, owned=True, live=orphan) == "missing"  # its holder lives: register it again
    dead_ones = A.__class__(**{**_fields(A), "connection": "c2", "orphaned_ms": 7})
    assert judge_renewal(item, owned=True, live=dead_ones) == "missing"  # a live connection wins over an orphan


def test_renew_messages_and_connection_fields_cross_the_wire() -> None:
    item = (KEY, A.entry_id, "1_10.0.0.9_5000_ab12cd")
    for message in (Renew((item,)), RenewReply((item,), ()), RenewReply((), ((*item, 5), (*item, 2**40)))):
        assert decode_message(encode_message(message)) == message
    bound = A.__class__(**{**_fields(A), "connection": "c1"})
    dereg = Deregister(KEY, "DEFAULT", "10.0.0.1", 80, connection="c1")
    forward = Forward(3, Register(KEY, bound))
    assert decode_message(encode_message(forward)) == forward
    assert decode_message(encode_message(Forward(4, dereg))) == Forward(4, dereg)
    sync = SyncBatch(((KEY, bound.entry_id, Entry(Version(1, 0, "n1"), bound)),))
    assert decode_message(encode_message(sync)) == sync
    orphan = A.__class__(**{**_fields(A), "connection": "c1", "orphaned_ms": 2**41})
    for message in (SyncBatch(((KEY, A.entry_id, Entry(Version(1, 0, "n1"), orphan)),)), Forward(5, Register(KEY, orphan))):
        assert decode_message(encode_message(message)) == message
    bad_mark = encode_message(SyncBatch(((KEY, A.entry_id, Entry(Version(1, 0, "n1"), orphan)),)))
    bad_mark[1][0][5][10] = -1
    with pytest.raises(ProtocolError):
        decode_message(bad_mark)
    plain = SyncBatch(((KEY, A.entry_id, Entry(Version(1, 0, "n1"), A)),))
    assert len(encode_message(plain)[1][0][5]) == 8  # no connection: the old layout, no extra field
    for bad in (["renew", [["k", "e", "c"]]], ["renew", [[str(KEY), "e", 5]]], ["renewr", [], [[str(KEY), "e", "c"]]],
                ["renewr", [], [[str(KEY), "e", "c", -1]]]):
        with pytest.raises(ProtocolError):
            decode_message(bad)
