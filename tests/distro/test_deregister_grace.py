"""A beat in flight when its instance was deregistered (the Java client 1.4.2's trap, issue 12).

Nacos answers such a light beat with 20404 and the client registers again what it has just removed. Here
the owner remembers explicit deregistrations for ``deregister_grace_ms``: within it, a light or full beat
for that instance answers OK and registers nothing; after it, or once the instance was registered again,
beats behave as before. An instance deleted by expiry is not "deregistered": its client is alive and is
asked to register again.
"""

from __future__ import annotations

from distro.config import DistroConfig
from distro.model import ServiceKey, make_instance
from distro.ownership import owner_of
from distro.requests import Beat, Deregister, Register, Result
from distro.testing.harness import Harness
from distro.writes import MAX_REMEMBERED_DEREGISTRATIONS

IP, PORT = "10.0.0.1", 8080
INST = make_instance(IP, PORT)
OK_BEAT = Result(200, {"clientBeatInterval": 5000, "code": 10200, "lightBeatEnabled": True})
NOT_FOUND = Result(200, {"clientBeatInterval": 5000, "code": 20404})


def owned_by(owner: str, members: tuple[str, ...]) -> ServiceKey:
    return next(
        key for i in range(10_000)
        if owner_of(str(key := ServiceKey("public", "DEFAULT_GROUP", f"svc-{i}")), members) == owner
    )


def started(config: DistroConfig | None = None) -> Harness:
    h = Harness(("n1", "n2"), config)
    h.start()
    return h


def test_a_beat_right_after_deregistration_does_not_bring_the_instance_back() -> None:
    h = started(DistroConfig(deregister_grace_ms=3_000))
    key = owned_by("n1", ("n1", "n2"))
    h.client("n1", Register(key, INST))
    h.client("n1", Deregister(key, "DEFAULT", IP, PORT))
    _, light = h.client("n1", Beat(key, "DEFAULT", IP, PORT))
    assert light == OK_BEAT
    _, full = h.client("n2", Beat(key, "DEFAULT", IP, PORT, instance=INST))
    assert full is None  # forwarded to the owner; its answer comes back below
    h.deliver_all()
    assert h.outputs["n2"].replies[-1].result == OK_BEAT
    assert h["n1"].store.live_instance(key, INST.entry_id) is None
    h.advance(3_001)
    _, late = h.client("n1", Beat(key, "DEFAULT", IP, PORT))
    assert late == NOT_FOUND


def test_registering_again_ends_the_grace() -> None:
    h = started()
    key = owned_by("n1", ("n1", "n2"))
    h.client("n1", Register(key, INST))
    h.client("n1", Deregister(key, "DEFAULT", IP, PORT))
    h.client("n1", Register(key, INST))
    h.client("n1", Deregister(key, "DEFAULT", IP, PORT))
    h.advance(1_000)
    h.client("n1", Register(key, INST))
    _, beat = h.client("n1", Beat(key, "DEFAULT", IP, PORT))
    assert beat == OK_BEAT and h["n1"].store.live_instance(key, INST.entry_id) == INST
    h.client("n1", Deregister(key, "DEFAULT", "10.9.9.9", 1))  # an unknown instance: nothing remembered
    assert not h["n1"]._writes.recently_deregistered(key, "DEFAULT/10.9.9.9:1", h.now_ms)


def test_an_expired_instance_is_asked_to_register_again() -> None:
    h = started(DistroConfig(heartbeat_timeout_ms=1_000, instance_expire_ms=2_000))
    key = owned_by("n1", ("n1", "n2"))
    h.client("n1", Register(key, INST))
    h.advance(3_500)
    assert h["n1"].store.live_instance(key, INST.entry_id) is None
    _, beat = h.client("n1", Beat(key, "DEFAULT", IP, PORT))
    assert beat == NOT_FOUND


def test_remembered_deregistrations_are_bounded() -> None:
    h = started(DistroConfig(deregister_grace_ms=10**9))
    key = owned_by("n1", ("n1", "n2"))
    writes = h["n1"]._writes
    for i in range(MAX_REMEMBERED_DEREGISTRATIONS + 10):
        writes._remember_deregistration(key, f"DEFAULT/10.0.{i // 250}.{i % 250}:1", h.now_ms)
    assert len(writes._deregistered) == MAX_REMEMBERED_DEREGISTRATIONS
    assert not writes.recently_deregistered(key, "DEFAULT/10.0.0.0:1", h.now_ms)  # the oldest went first
