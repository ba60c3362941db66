"""Hypothesis explores fault schedules of a simulated cluster and every schedule converges.

A ``RuleBasedStateMachine`` drives :class:`distro.testing.sim.Simulator` step by step, in three
configurations (3 nodes, 4 nodes, and 3 nodes with timers short enough that expiry, tombstone collection,
the floor rule and the empty-service cleaner happen within a schedule). Its rules: clients start
(registering through a chosen node), beat, deregister and die; an operator creates and deletes
namespaces and configures services and clusters through a chosen node; in-flight messages are delivered
out of order or dropped; nodes are isolated, links cut one way, partitions healed; nodes crash (all of
them, at times) and restart with what their simulated disks hold; the clock moves by small and large
amounts. After every step the safety checker must find nothing (no two contents for one version, views
match stores, bounds hold) and neither may the heartbeat checker (no beating client marked unhealthy or
expired while its beats reached a calm cluster in time; no stopped one listed past the expiry bound). At the end faults stop, the cluster settles, and every ready node must hold
the same live entries, every heartbeating client must be listed healthy everywhere and every stopped one
gone, and every acknowledged namespace and setting must be everywhere, every acknowledged namespace
deletion nowhere (``check_converged``).

The number of schedules comes from the Hypothesis profile (tests/conftest.py): 3 x ``max_examples`` in
all, shared 840 / 840 / 420 under ci (2,100 schedules; 4-node schedules cost twice as much to settle).
A failure prints ``@reproduce_failure`` and the violations.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from distro.testing.checkers import BeatChecker, SafetyChecker, check_converged
from distro.testing.sim import SimClient, Simulator, sim_config

MAX_CLIENTS = 8
SERVICES = 2
schedules_run: dict[str, int] = {}  # machine name -> schedules played (torn down)


FAST_TIMERS = {
    "heartbeat_timeout_ms": 4_000,
    "instance_expire_ms": 8_000,
    "tombstone_ttl_ms": 10_000,
    "gc_interval_ms": 1_000,
    "verify_interval_ms": 2_000,
    "empty_service_grace_ms": 3_000,
    "empty_service_clean_interval_ms": 1_000,
}


def cluster_machine(nodes: int, *, fast: bool = False) -> type[RuleBasedStateMachine]:
    """A state machine class over a simulated cluster of ``nodes`` nodes. ``fast`` shrinks the health,
    anti-entropy and tombstone timers (clients beat every second) so that expiry, tombstone collection
    and the floor rule happen within a schedule's few simulated minutes."""
    config = replace(sim_config(nodes), **FAST_TIMERS) if fast else sim_config(nodes)
    beat_interval_ms = 1_000 if fast else 5_000
    node_ids = [f"n{i + 1}" for i in range(nodes)]
    node = st.sampled_from(node_ids)
    links = st.sampled_from([(a, b) for a in node_ids for b in node_ids if a != b])
    client_index = st.integers(0, MAX_CLIENTS - 1)

    class ClusterMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.sim: Simulator | None = None
            self.checker = SafetyChecker()
            self.beats = BeatChecker()
            self.failed = False
            self.torn_down = False

        @initialize(seed=st.integers(0, 2**32 - 1))
        def boot(self, seed: int) -> None:
            """The seed drives the simulated network's delays, losses and duplicates."""
            self.sim = Simulator(seed, nodes, config=config, services=SERVICES, beat_interval_ms=beat_interval_ms)

        def _alive(self) -> list[SimClient]:
            assert self.sim is not None
            return [c for c in self.sim.clients if c.state == "alive"]

        def _has_alive(self) -> bool:
            return self.sim is not None and any(c.state == "alive" for c in self.sim.clients)

        # -- clients -----------------------------------------------------------------------------
        @precondition(lambda self: len(self.sim.clients) < MAX_CLIENTS)
        @rule(service=st.sampled_from(range(SERVICES)), via=node)
        def start_client(self, service: int, via: str) -> None:
            self.sim.start_client(self.sim.add_client(service), via)

        @precondition(lambda self: self._has_alive())
        @rule(which=client_index, via=node)
        def beat(self, which: int, via: str) -> None:
            alive = self._alive()
            self.sim.send_client_request(alive[which % len(alive)], via, "beat")

        @precondition(lambda self: self._has_alive())
        @rule(which=client_index, via=node)
        def deregister_client(self, which: int, via: str) -> None:
            alive = self._alive()
            self.sim.deregister_client(alive[which % len(alive)], via)

        @precondition(lambda self: self._has_alive())
        @rule(which=client_index)
        def kill_client(self, which: int) -> None:
            alive = self._alive()
            self.sim.kill_client(alive[which % len(alive)])

        # -- cluster data ------------------------------------------------------------------------
        @rule(via=node)
        def cluster_data_request(self, via: str) -> None:
            self.sim.send_data_request(via)

        # -- network -----------------------------------------------------------------------------
        @precondition(lambda self: bool(self.sim.in_flight))
        @rule(index=st.integers(0, 63))
        def deliver_one(self, index: int) -> None:
            self.sim.deliver(index)

        @precondition(lambda self: bool(self.sim.in_flight))
        @rule(index=st.integers(0, 63))
        def drop_one(self, index: int) -> None:
            self.sim.drop(index)

        @rule(target_node=node)
        def isolate(self, target_node: str) -> None:
            self.sim.isolate(target_node)

        @rule(link=links)
        def cut_one_way(self, link: tuple[str, str]) -> None:
            self.sim.partition(*link, both_ways=False)

        @precondition(lambda self: bool(self.sim.blocked))
        @rule()
        def heal(self) -> None:
            self.sim.heal()

        # -- nodes -------------------------------------------------------------------------------
        @precondition(lambda self: any(n is not None for n in self.sim.nodes.values()))
        @rule(which=st.integers(0, nodes - 1))
        def crash(self, which: int) -> None:
            up = [nid for nid, _ in self.sim.live_nodes()]
            self.sim.crash(up[which % len(up)])

        @precondition(lambda self: any(n is None for n in self.sim.nodes.values()))
        @rule(which=st.integers(0, nodes - 1))
        def restart(self, which: int) -> None:
            down = [nid for nid, n in self.sim.nodes.items() if n is None]
            self.sim.restart(down[which % len(down)])

        # -- time --------------------------------------------------------------------------------
        @rule(ms=st.one_of(st.integers(1, 100), st.integers(100, 3_000), st.integers(3_000, 20_000)))
        def advance(self, ms: int) -> None:
            self.sim.advance(ms)

        # -- checks ------------------------------------------------------------------------------
        @invariant()
        def safe(self) -> None:
            violations = self.checker.check(self.sim) + self.beats.check(self.sim)
            if violations:
                self.failed = True
            assert violations == [], "\n".join(["safety violated:", *violations])

        def teardown(self) -> None:
            if self.torn_down:
                return
            self.torn_down = True
            name = type(self).__name__
            schedules_run[name] = schedules_run.get(name, 0) + 1
            sim = self.sim
            if sim is None or self.failed:
                return  # never booted, or the invariant already reported: do not mask it
            sim.stop_faults()
            sim.advance(sim.settle_ms())
            violations = self.checker.check(sim) + self.beats.check(sim) + check_converged(sim)
            assert violations == [], "\n".join([f"seed {sim.seed}: did not converge:", *violations])

    ClusterMachine.__name__ = ClusterMachine.__qualname__ = f"Cluster{nodes}Nodes{'Fast' if fast else ''}"
    return ClusterMachine


ThreeNodes = cluster_machine(3)
FourNodes = cluster_machine(4)
ThreeNodesFast = cluster_machine(3, fast=True)


# Each configuration's share of 3 x the profile's max_examples (4 nodes cost about twice as much to settle).
SHARES = {ThreeNodes: 1.2, ThreeNodesFast: 1.2, FourNodes: 0.6}


def _run(machine: type[RuleBasedStateMachine]) -> None:
    examples = max(1, round(settings().max_examples * SHARES[machine]))
    before = schedules_run.get(machine.__name__, 0)
    run_state_machine_as_test(machine, settings=settings(max_examples=examples))
    played = schedules_run.get(machine.__name__, 0) - before
    print(f"{machine.__name__}: {played} schedules")
    assert played >= examples, f"only {played} of {examples} schedules were played"


def test_three_node_schedules_converge() -> None:
    _run(ThreeNodes)


def test_four_node_schedules_converge() -> None:
    _run(FourNodes)


def test_three_node_schedules_with_fast_timers_converge() -> None:
    _run(ThreeNodesFast)
