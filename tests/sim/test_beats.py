"""Beats answered from the replica (distro/beats.py), proven in the simulator with the heartbeat checker.

Clients beat through random nodes, owners or not, so about two thirds of beats are answered from a replica
and reach their owner as batched receipts. :class:`~distro.testing.checkers.BeatChecker` holds the cluster to
two promises after every step:

* an instance whose client keeps beating is never marked unhealthy, let alone expired, while one of its beats
  reached a node of a calm cluster within the heartbeat timeout (the expiry) before, nothing failing for a
  receipt interval plus a network delay after it;
* an instance whose client stopped beating is listed nowhere once the expiry plus a receipt interval (plus
  a health check, a flush and two network delays) has passed since its last request, when the cluster was
  calm then and nothing failed since.

A Hypothesis state machine plays schedules of client starts, deaths and deregistrations, partitions (both
ways and one way) that heal, crashes and restarts, on a network that delays, duplicates and reorders but only
loses what partitions cut (a lost message is a fault, and the checker then asks nothing of the beats around
it); at the end faults stop and the cluster must converge (``check_converged``). Two fakes show the checker has
teeth: a network that silently loses every beat receipt, and one that silently loses every deletion.
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

from distro.messages import Message, Renew, Repair, SyncBatch
from distro.testing.checkers import BeatChecker, SafetyChecker, check_converged
from distro.testing.sim import FaultOptions, SimClient, Simulator, sim_config
from tests.sim.test_convergence import FAST_TIMERS, ThreeNodesFast

RELIABLE = FaultOptions(drop_probability=0.0, duplicate_probability=0.02)
MAX_CLIENTS = 10


def calm_cluster(seed: int, clients: int = 30, sim_type: type[Simulator] = Simulator) -> Simulator:
    sim = sim_type(seed, 3, faults=RELIABLE, services=6)
    sim.advance(2_000)
    for _ in range(clients):
        sim.start_client(sim.add_client(), sim.rng.choice(sim.node_ids))
        sim.advance(sim.rng.randint(10, 300))
    return sim


def test_clients_beating_through_any_node_stay_healthy_and_most_beats_never_travel() -> None:
    sim = calm_cluster(7)
    checker = BeatChecker()
    for _ in range(120):
        sim.advance(1_000)
        assert checker.check(sim) == []
    stats = [node.statistics() for _, node in sim.live_nodes()]
    assert sum(s.instances_marked_unhealthy + s.instances_expired for s in stats) == 0
    answered_here = sum(s.beats_answered_here for s in stats)
    forwarded = sum(s.forwards_sent for s in stats)
    beats = 30 * 120 // 5
    # Two thirds of beats land on a node that does not own their key; all of those are answered there.
    assert answered_here > beats // 2 and forwarded < beats // 10, (answered_here, forwarded)
    assert all(s.beat_receipts_sent > 0 for s in stats) and sum(s.renewals_received for s in stats) > 0
    assert check_converged(sim) == []


def test_clients_that_stop_are_gone_everywhere_within_the_expiry_plus_a_receipt_interval() -> None:
    sim = calm_cluster(11)
    sim.advance(20_000)
    checker = BeatChecker()
    stopped = sim.clients[:12]
    for client in stopped[:8]:
        sim.kill_client(client)
    for client in stopped[8:]:
        sim.deregister_client(client, sim.rng.choice(sim.node_ids))
    for _ in range(BeatChecker.stop_bound_ms(sim) // 1_000 + 6):
        sim.advance(1_000)
        assert checker.check(sim) == []
    assert check_converged(sim) == []
    assert all(not node.view(c.key) or all(i.ip != c.ip for i in node.view(c.key).instances)  # type: ignore[union-attr]
               for _, node in sim.live_nodes() for c in stopped)


class LosesReceipts(Simulator):
    """A network that silently loses every beat receipt (and records no fault): a bug the checker must see."""

    def _send(self, source: str, target: str, message: Message) -> None:
        if isinstance(message, Renew) and all(not item[2] for item in message.items):
            return
        super()._send(source, target, message)


class LosesDeletions(Simulator):
    """A network that silently loses every tombstone (and records no fault): a bug the checker must see."""

    def _send(self, source: str, target: str, message: Message) -> None:
        if isinstance(message, SyncBatch | Repair) and any(entry.value is None for _, _, entry in message.items):
            return
        super()._send(source, target, message)


def test_the_checker_sees_beats_that_never_reach_their_owner() -> None:
    sim = calm_cluster(7, clients=12, sim_type=LosesReceipts)
    checker = BeatChecker()
    found: list[str] = []
    for _ in range(40):
        sim.advance(1_000)
        found += checker.check(sim)
    assert any("unhealthy" in v and "yet it beat" in v for v in found), found[:3]


def test_the_checker_sees_stopped_clients_that_stay_listed() -> None:
    sim = calm_cluster(11, clients=12, sim_type=LosesDeletions)
    sim.advance(10_000)
    checker = BeatChecker()
    for client in sim.clients[:6]:
        sim.kill_client(client)
    found: list[str] = []
    for _ in range(BeatChecker.stop_bound_ms(sim) // 1_000 + 6):
        sim.advance(1_000)
        found += checker.check(sim)
    assert any("still listed" in v for v in found), found[:3]


def beat_machine(*, fast: bool) -> type[RuleBasedStateMachine]:
    """Schedules of clients beating through random nodes, with partitions, crashes and restarts."""
    config = replace(sim_config(3), **FAST_TIMERS) if fast else sim_config(3)
    beat_interval_ms = 1_000 if fast else 5_000
    node_ids = ["n1", "n2", "n3"]
    node = st.sampled_from(node_ids)
    client_index = st.integers(0, MAX_CLIENTS - 1)

    class BeatMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.sim: Simulator | None = None
            self.safety = SafetyChecker()
            self.beats = BeatChecker()
            self.failed = False

        @initialize(seed=st.integers(0, 2**32 - 1))
        def boot(self, seed: int) -> None:
            self.sim = Simulator(seed, 3, config=config, faults=RELIABLE, services=3, beat_interval_ms=beat_interval_ms)

        def _alive(self) -> list[SimClient]:
            assert self.sim is not None
            return [c for c in self.sim.clients if c.state == "alive"]

        @precondition(lambda self: len(self.sim.clients) < MAX_CLIENTS)
        @rule(via=node)
        def start_client(self, via: str) -> None:
            self.sim.start_client(self.sim.add_client(), via)

        @precondition(lambda self: bool(self._alive()))
        @rule(which=client_index, via=node)
        def beat(self, which: int, via: str) -> None:
            alive = self._alive()
            self.sim.send_client_request(alive[which % len(alive)], via, "beat")

        @precondition(lambda self: bool(self._alive()))
        @rule(which=client_index)
        def kill_client(self, which: int) -> None:
            alive = self._alive()
            self.sim.kill_client(alive[which % len(alive)])

        @precondition(lambda self: bool(self._alive()))
        @rule(which=client_index, via=node)
        def deregister_client(self, which: int, via: str) -> None:
            alive = self._alive()
            self.sim.deregister_client(alive[which % len(alive)], via)

        @rule(target_node=node)
        def isolate(self, target_node: str) -> None:
            self.sim.isolate(target_node)

        @rule(a=node, b=node)
        def cut_one_way(self, a: str, b: str) -> None:
            if a != b:
                self.sim.partition(a, b, both_ways=False)

        @precondition(lambda self: bool(self.sim.blocked))
        @rule()
        def heal(self) -> None:
            self.sim.heal()

        @precondition(lambda self: sum(n is not None for n in self.sim.nodes.values()) > 1)
        @rule(which=node)
        def crash(self, which: str) -> None:
            self.sim.crash(which)

        @precondition(lambda self: any(n is None for n in self.sim.nodes.values()))
        @rule(which=node)
        def restart(self, which: str) -> None:
            self.sim.restart(which)

        @rule(ms=st.one_of(st.integers(1, 1_000), st.integers(1_000, 10_000), st.integers(10_000, 40_000)))
        def advance(self, ms: int) -> None:
            self.sim.advance(ms)

        @invariant()
        def promises_hold(self) -> None:
            violations = self.safety.check(self.sim) + self.beats.check(self.sim)
            if violations:
                self.failed = True
            assert violations == [], "\n".join([f"seed {self.sim.seed}:", *violations])

        def teardown(self) -> None:
            sim = self.sim
            if sim is None or self.failed:
                return
            sim.stop_faults()
            sim.advance(sim.settle_ms())
            violations = self.safety.check(sim) + self.beats.check(sim) + check_converged(sim)
            assert violations == [], "\n".join([f"seed {sim.seed}: did not converge:", *violations])

    BeatMachine.__name__ = BeatMachine.__qualname__ = f"BeatMachine{'Fast' if fast else ''}"
    return BeatMachine


BeatMachineNacosTimings = beat_machine(fast=False)
BeatMachineFast = beat_machine(fast=True)


def _examples() -> int:
    return max(1, settings().max_examples // 5)


def test_beat_promises_hold_through_partitions_crashes_and_restarts() -> None:
    run_state_machine_as_test(BeatMachineNacosTimings, settings=settings(max_examples=_examples()))


def test_beat_promises_hold_with_fast_timers() -> None:
    run_state_machine_as_test(BeatMachineFast, settings=settings(max_examples=_examples()))


def test_replay_an_isolated_owner_keeps_no_clocks_of_a_key_collected_meanwhile() -> None:
    """A schedule the heartbeat checker caught (fixed in distro/health.py, HeartbeatClocks.reassign): n2,
    isolated, owned svc-0 while its last tombstone was collected; after the heal it kept the key's clocks,
    gave the instance registered meanwhile a clock of its own and marked it unhealthy, not being its owner."""
    state = ThreeNodesFast()
    state.boot(seed=0)
    for ms in (1, 1, 1, 1, 1, 1, 89, 78, 1, 100, 100, 100):
        state.advance(ms=ms)
    state.start_client(service=0, via="n1")
    state.deregister_client(via="n1", which=0)
    state.advance(ms=31)
    state.cut_one_way(link=("n1", "n2"))
    state.isolate(target_node="n2")
    for ms in (89, 12906, 3000):
        state.advance(ms=ms)
    state.start_client(service=0, via="n1")
    state.teardown()  # heal, settle: the checkers must find nothing
