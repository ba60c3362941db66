"""scripts/chaos's gRPC invariants (chaoslib.grpcchecks) judged on fabricated answers, no Docker: each check
passes on a state that keeps it and fails on one that breaks it; and the bounds come from the nodes' settings."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from chaoslib.console import Console
from chaoslib.grpcchecks import GrpcChecks
from chaoslib.grpcclients import GrpcActor, GrpcInst
from chaoslib.state import GrpcBounds, Recorder, Sweep

SVC = "chaos-test-00"
NODES = ["node1", "node2", "node3"]
# what docker-compose.yml runs with by default
TIMING: dict[str, Any] = {
    "heartbeat_timeout_ms": 15_000, "instance_expire_ms": 30_000, "peer_timeout_ms": 3_000,
    "grpc_probe_after_idle_ms": 20_000, "grpc_give_up_after_ms": 5_000, "grpc_check_interval_ms": 3_000,
}


def _args(**over: Any) -> argparse.Namespace:
    base = {"grpc_clients": 3, "grpc_services_per_client": 2, "services": 20, "grpc_keepalive_ms": None,
            "grpc_present_bound_ms": None, "grpc_gone_bound_ms": None}
    return argparse.Namespace(**{**base, **over})


class _Workload:
    """What GrpcChecks reads of a GrpcWorkload: the clients and their instances by service."""

    def __init__(self, actors: list[GrpcActor]) -> None:
        self.actors = actors
        self.by_service: dict[str, list[tuple[GrpcActor, GrpcInst]]] = {}
        for a in actors:
            for inst in a.instances:
                self.by_service.setdefault(inst.service, []).append((a, inst))


def _setup(*states: str) -> tuple[Recorder, GrpcChecks, list[GrpcActor]]:
    """A recorder, the checks and one client per state, each with one instance in SVC, registered at 0."""
    rec = Recorder(Console(quiet=True))
    bounds = GrpcBounds.from_settings(_args(), TIMING)
    actors = []
    for i, state in enumerate(states):
        a = GrpcActor(i, [GrpcInst(SVC, f"10.100.0.{i + 1}", 7070)], dict.fromkeys(NODES, 1), "node1", False, rec,
                      bounds)
        a.state, a.node, a.live_since, a.registered_at = state, "node1", 0.0, 0.0
        if state != "live":
            a.ended_at = 0.0
        actors.append(a)
    return rec, GrpcChecks(rec, _Workload(actors), bounds, NODES), actors  # type: ignore[arg-type]


def _kinds(rec: Recorder) -> list[str]:
    return [v["invariant"] for v in rec.violations]


def test_bounds_come_from_the_node_settings() -> None:
    b = GrpcBounds.from_settings(_args(), TIMING)
    # present: the heartbeat timeout (three renewal intervals of 5 s)
    assert b.present_s == 15.0
    # gone: max(30 + max(5, 3), 20 + 5 + 3) + 3 + 5 = 43 s
    assert b.gone_s == 43.0
    assert b.keepalive_s == 5.0 and b.call_timeout_s == 3.0
    assert b.report()["bound_components_ms"]["probe_after_idle_ms"] == 20_000
    # a node that detects slowly: detection decides the gone bound
    slow = GrpcBounds.from_settings(_args(), {**TIMING, "grpc_probe_after_idle_ms": 60_000})
    assert slow.gone_s == 60 + 5 + 3 + 3 + 5
    # short e2e timings, and the flags win
    short = GrpcBounds.from_settings(_args(), {**TIMING, "heartbeat_timeout_ms": 3_000, "instance_expire_ms": 6_000})
    assert short.present_s == 3.0 and short.keepalive_s == 1.0
    assert GrpcBounds.from_settings(_args(grpc_present_bound_ms=7_000, grpc_gone_bound_ms=9_000), TIMING).gone_s == 9.0


async def test_connected_client_missing_longer_than_the_bound_is_a_violation() -> None:
    rec, checks, (a,) = _setup("live")
    present = checks.bounds.present_s
    checks.observe("node2", SVC, 1.0, frozenset(), reach=0.0)
    checks.observe("node2", SVC, 1.0 + present - 0.5, frozenset(), reach=0.0)
    assert rec.violations == []  # missing, but not for longer than the bound yet
    checks.observe("node2", SVC, 1.0 + present + 0.5, frozenset(), reach=0.0)
    assert _kinds(rec) == ["grpc-instance-missing"]
    assert rec.violations[0]["node"] == "node2" and rec.violations[0]["client"] == a.name
    # listed again: the violation records for how long it was missing
    checks.observe("node2", SVC, 1.0 + present + 2.0, frozenset({a.instances[0].key}), reach=0.0)
    assert rec.violations[0]["missing_ms"] == int((present + 2.0) * 1000)


async def test_listed_or_briefly_missing_or_long_cut_off_is_no_violation() -> None:
    rec, checks, (a,) = _setup("live")
    key = frozenset({a.instances[0].key})
    present = checks.bounds.present_s
    for t in (1.0, 10.0, 30.0):
        checks.observe("node1", SVC, t, key, reach=0.0)
    # missing on and off, never for longer than the bound
    for t in (31.0, 31.0 + present - 1, 31.0 + present):
        checks.observe("node3", SVC, t, frozenset() if t < 31.0 + present else key, reach=0.0)
    # the node stopped answering in between: its clock restarts
    checks.observe("node2", SVC, 50.0, frozenset(), reach=0.0)
    checks.node_unreachable("node2")
    checks.observe("node2", SVC, 50.0 + present + 1, frozenset(), reach=50.0 + present)
    assert rec.violations == []
    # reconnecting: not judged (its old node deregisters it when it sees the connection close) ...
    a.disconnected_since, a.node = 100.0, None
    checks.observe("node1", SVC, 101.0, frozenset(), reach=0.0)
    checks.observe("node1", SVC, 101.0 + present + 1, frozenset(), reach=0.0)
    assert rec.violations == []
    # ... until it registers again: the clock starts at that registration
    a.disconnected_since, a.node, a.registered_at = None, "node2", 120.0
    checks.observe("node1", SVC, 120.0, frozenset(), reach=0.0)
    checks.observe("node1", SVC, 120.0 + present - 0.1, frozenset(), reach=0.0)
    assert rec.violations == []
    checks.observe("node1", SVC, 120.0 + present + 0.1, frozenset(), reach=0.0)
    assert _kinds(rec) == ["grpc-instance-missing"]


@pytest.mark.parametrize("state", ["closed", "frozen", "abandoned"])
async def test_ended_client_listed_after_the_gone_bound_is_a_violation(state: str) -> None:
    rec, checks, (a,) = _setup(state)
    key = frozenset({a.instances[0].key})
    gone = checks.bounds.gone_s
    checks.observe("node1", SVC, gone - 1.0, key, reach=0.0)
    assert rec.violations == []
    checks.observe("node1", SVC, gone + 1.0, key, reach=0.0)
    checks.observe("node1", SVC, gone + 2.0, key, reach=0.0)  # reported once per node
    assert _kinds(rec) == ["grpc-ended-still-listed"]
    assert rec.violations[0]["ended"] == state
    assert a.last_listed_after_end == gone + 2.0


async def test_a_fault_in_effect_delays_the_judgement_but_does_not_restart_the_gone_clock() -> None:
    rec, checks, (a,) = _setup("closed")
    key = frozenset({a.instances[0].key})
    gone, heal = checks.bounds.gone_s, checks.bounds.heal_s
    assert heal == 3 + 5 + 5  # peer timeout + anti-entropy interval + slack
    rec.fault_windows.append([5.0, None])  # a fault in effect: nothing can be judged
    checks.observe("node1", SVC, gone + 1.0, key, reach=0.0)
    assert rec.violations == []
    rec.fault_windows[0][1] = 20.0  # healed at 20 s: still the gone bound from the end (20 + heal is earlier)
    checks.observe("node1", SVC, gone - 1.0, key, reach=0.0)
    assert rec.violations == []
    checks.observe("node1", SVC, gone + 1.0, key, reach=0.0)
    assert _kinds(rec) == ["grpc-ended-still-listed"]
    # healed late: a node cut off meanwhile gets the heal bound from the heal, not a whole gone bound
    rec2, checks2, (b,) = _setup("closed")
    rec2.fault_windows.append([5.0, 40.0])
    checks2.observe("node1", SVC, 40.0 + heal - 1.0, frozenset({b.instances[0].key}), reach=0.0)
    assert rec2.violations == []
    checks2.observe("node1", SVC, 40.0 + heal + 1.0, frozenset({b.instances[0].key}), reach=0.0)
    assert _kinds(rec2) == ["grpc-ended-still-listed"] and 40.0 + heal + 1.0 < 40.0 + gone
    # a node that answers again (restarted) gets the heal bound from then
    rec3, checks3, (c,) = _setup("abandoned")
    checks3.observe("node2", SVC, gone + 1.0, frozenset({c.instances[0].key}), reach=gone - 2.0)
    assert rec3.violations == []
    checks3.observe("node2", SVC, gone - 2.0 + heal + 1.0, frozenset({c.instances[0].key}), reach=gone - 2.0)
    assert _kinds(rec3) == ["grpc-ended-still-listed"]
    # a fault healed before the client ended changes nothing
    rec4, checks4, (d,) = _setup("closed")
    d.ended_at = 30.0
    rec4.fault_windows.append([5.0, 20.0])
    checks4.observe("node1", SVC, 30.0 + gone + 1.0, frozenset({d.instances[0].key}), reach=0.0)
    assert _kinds(rec4) == ["grpc-ended-still-listed"]


async def test_final_issues() -> None:
    _rec, checks, (live, closed) = _setup("live", "closed")
    lk, ck = live.instances[0].key, closed.instances[0].key

    def sweeps(hosts: frozenset[str], unhealthy: frozenset[str] = frozenset()) -> dict[str, Sweep]:
        return {n: Sweep(1, 10.0, 11.0, {SVC: hosts}, {SVC: unhealthy}) for n in NODES}

    assert checks.final_issues(sweeps(frozenset({lk}))) == []
    issues = checks.final_issues(sweeps(frozenset({ck})))
    assert sorted({i["invariant"] for i in issues}) == ["grpc-ended-still-listed", "grpc-live-not-listed-at-end"]
    assert len(issues) == 2 * len(NODES)
    unhealthy = checks.final_issues(sweeps(frozenset({lk}), frozenset({lk})))
    assert {i["invariant"] for i in unhealthy} == {"grpc-live-unhealthy-at-end"}
    # the final wait lasts until the ended client's bound has passed
    assert checks.final_deadline() == checks.bounds.gone_s


async def test_clock_start_follows_the_faults() -> None:
    rec = Recorder(Console(quiet=True))
    assert rec.clock_start(3.0) == 3.0
    rec.fault_windows.append([1.0, 2.0])
    assert rec.clock_start(3.0) == 3.0  # healed before
    rec.fault_windows.append([4.0, 9.0])
    assert rec.clock_start(3.0) == 9.0
    rec.fault_windows.append([10.0, None])
    assert rec.clock_start(3.0) is None
