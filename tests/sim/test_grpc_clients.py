"""Hypothesis over simulated clusters with gRPC clients (distro/testing/grpcsim.py): an instance lives as long
as its connection, and a node that holds connections may crash.

- **Crash loses nothing.** Clients connect to random nodes; holders crash one at a time (and restart) at
  generated times; each client registers again through a survivor after a generated delay of up to 20 s
  (nacos-sdk-python 3.x waits up to 30 s). At every step, every live client's instance
  is listed, healthy, on every ready node (looked at every 500 ms of simulated time): never lost.
- **Crash leaves no orphan.** A client that dies together with its node (it knew only that node) has its
  instance gone from every node within the expiry, counted from when the survivors can see the node down
  (plus one renewal interval), even when nodes restart meanwhile.
- **Random schedules converge.** Full fault schedules (partitions, losses, crashes) with gRPC clients that
  connect, close and die: after faults stop, connected clients are listed everywhere and closed or dead ones
  nowhere (``check_converged``), and no safety check fails on the way.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from distro.testing.checkers import SafetyChecker, check_converged, grpc_listed
from distro.testing.grpcsim import SimGrpcClient
from distro.testing.runner import run_schedule
from distro.testing.sim import FaultOptions, Simulator, sim_config

NODES = ("n1", "n2", "n3")
RELIABLE = FaultOptions(drop_probability=0.0, duplicate_probability=0.0)
STEP_MS = 500
EXAMPLES = max(10, settings.default.max_examples // 7)  # 100 under the ci profile


def missing_anywhere(sim: Simulator, clients: list[SimGrpcClient]) -> list[str]:
    """Live clients that some ready node does not list healthy."""
    missing = []
    for client in clients:
        if not client.alive:
            continue
        for node_id, node in sim.live_nodes():
            listed = grpc_listed(node, client) if node.ready else True
            if listed is None or (listed is not True and not listed.healthy):
                missing.append(f"client {client.client_id} ({client.state}) on {node_id} at {sim.now_ms}")
    return missing


def listed_anywhere(sim: Simulator, client: SimGrpcClient) -> list[str]:
    return [node_id for node_id, node in sim.live_nodes() if grpc_listed(node, client) is not None]


def advance_checking(sim: Simulator, duration_ms: int, clients: list[SimGrpcClient]) -> None:
    for _ in range(duration_ms // STEP_MS):
        sim.advance(STEP_MS)
        missing = missing_anywhere(sim, clients)
        assert not missing, f"lost: {missing}"


@settings(max_examples=EXAMPLES)
@given(
    seed=st.integers(0, 2**32 - 1),
    connections=st.lists(st.tuples(st.sampled_from(NODES), st.booleans()), min_size=1, max_size=6),
    crashes=st.lists(st.tuples(st.sampled_from(NODES), st.integers(0, 20_000), st.integers(1_000, 30_000)),
                     min_size=1, max_size=3),
)
def test_a_crashing_holder_loses_no_reconnecting_client_and_leaves_no_orphan(
    seed: int, connections: list[tuple[str, bool]], crashes: list[tuple[str, int, int]]
) -> None:
    sim = Simulator(seed, len(NODES), faults=RELIABLE, services=2)
    sim.advance(sim.config.snapshot_timeout_ms + 2_000)
    assert all(node.ready for _, node in sim.live_nodes())
    clients: list[SimGrpcClient] = []
    lonely: list[SimGrpcClient] = []  # know only their node: they die with it
    for via, knows_only_via in connections:
        client = sim.grpc.add(sim.rng.choice(sim.services), via, knows=(via,) if knows_only_via else None)
        (lonely if knows_only_via else clients).append(client)
    sim.advance(1_000)
    assert not missing_anywhere(sim, clients + lonely), "registration did not reach every node"
    orphans: list[SimGrpcClient] = []
    for victim, before_ms, down_ms in crashes:
        advance_checking(sim, before_ms, clients)
        for client in lonely:
            if client.holder == victim and client.alive:
                sim.grpc.kill(client)  # it dies with its node: no one will register it again
                orphans.append(client)
        sim.crash(victim)
        advance_checking(sim, down_ms, clients)
        sim.restart(victim)
    # An orphan has a whole expiry from when the survivors see its node down, and no more: later ownership
    # changes (the restarts here) do not restart its clock (tests/sim/test_grpc_orphans.py has the bound).
    cfg = sim.config
    bound_ms = cfg.peer_timeout_ms + cfg.instance_expire_ms + cfg.heartbeat_timeout_ms // 3
    gone_by_ms = max([sim.now_ms] + [c.orphaned_ms + bound_ms for c in orphans if c.orphaned_ms is not None])
    advance_checking(sim, gone_by_ms - sim.now_ms + STEP_MS - (gone_by_ms - sim.now_ms) % STEP_MS, clients)
    for client in orphans:
        assert not listed_anywhere(sim, client), (
            f"orphan {client.client_id} still listed on {listed_anywhere(sim, client)} at {sim.now_ms}, "
            f"its node crashed at {client.orphaned_ms}"
        )
    advance_checking(sim, 25_000, clients)  # and every live client is there for good


@settings(max_examples=max(5, settings.default.max_examples // 70))  # 10 under ci
@given(seed=st.integers(0, 2**32 - 1), nodes=st.integers(3, 4))
def test_random_schedules_with_grpc_clients_converge(seed: int, nodes: int) -> None:
    faults = FaultOptions(grpc_probability=0.2, crash_probability=0.02)
    report = run_schedule(seed, nodes=nodes, steps=300, faults=faults)
    assert report.converged, "\n".join([report.summary(), *report.violations])
    assert report.grpc_clients > 0


def test_the_simulated_clients_use_the_real_connection_rules() -> None:
    """A closed client is deregistered at once; a dead one is probed, given up and deregistered by its holder
    within the detection timings; a client reconnecting after its node crashed registers again."""
    sim = Simulator(7, len(NODES), config=sim_config(3), faults=RELIABLE)
    sim.advance(5_000)
    closing, dying, moving = (sim.grpc.add(sim.services[0], via) for via in NODES)
    sim.advance(1_000)
    sim.grpc.close(closing)
    sim.advance(500)
    assert not listed_anywhere(sim, closing)
    sim.grpc.kill(dying)
    cfg = sim.config
    sim.advance(cfg.connection_probe_after_idle_ms - 2 * cfg.connection_check_interval_ms)
    assert listed_anywhere(sim, dying)
    sim.advance(cfg.connection_give_up_after_ms + 4 * cfg.connection_check_interval_ms)
    assert not listed_anywhere(sim, dying)
    assert moving.holder == "n3"
    sim.crash("n3")
    sim.advance(sim.grpc.redo_max_ms + 1_000)
    assert moving.state == "connected" and moving.holder in ("n1", "n2")
    assert not missing_anywhere(sim, [moving])
    checker = SafetyChecker()
    sim.stop_faults()
    sim.advance(sim.settle_ms())
    assert not checker.check(sim) and not check_converged(sim)
