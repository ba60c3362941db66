"""Nodes starved of CPU (distro/testing/starve.py): the heartbeat promise on a machine with too few cores.

A heartbeat ramp on two shared cores (issue 15) saw owners mark instances unhealthy although every beat was
answered within a second or two of its due time. The simulator reproduces it: each node now and then stops
running for up to a couple of seconds, and when it runs again its late timer comes before the frames that
waited for it. The late tick declared peers down on its own backlog; ownership moved for a moment, and the
beat receipts flushed meanwhile went to nodes that did not own their keys (or were judged by the flushing
node itself), so the real owners missed beats and marked instances unhealthy. A node now judges silence only
once what reached it while it was not running had a chance to be read (``DistroNode._advance``).

Promises proven here, with clients beating every 5 s through random nodes:

* starved for less than a peer timeout (nobody silent for longer than that): ownership never changes after
  the start, and no instance is marked unhealthy;
* starved for longer (real peer timeouts, ownership moving back and forth): no instance is marked unhealthy
  or expired unless some node's ownership view changed within the heartbeat timeout before
  (:class:`~distro.testing.starve.StableBeatChecker`), and once starving stops the cluster converges.
"""

from __future__ import annotations

import pytest

from distro.messages import Message, Renew
from distro.testing.checkers import check_converged
from distro.testing.sim import FaultOptions
from distro.testing.starve import StableBeatChecker, StarvedSimulator, Starving

RELIABLE = FaultOptions(drop_probability=0.0, duplicate_probability=0.0)


def starved_cluster(seed: int, starving: Starving, clients: int = 60,
                    sim_type: type[StarvedSimulator] = StarvedSimulator) -> StarvedSimulator:
    sim = sim_type(seed, 3, starving=starving, faults=RELIABLE, services=6)
    sim.advance(3_000)
    for _ in range(clients):
        sim.start_client(sim.add_client(), sim.rng.choice(sim.node_ids))
        sim.advance(sim.rng.randint(10, 100))
    return sim


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_starved_within_the_peer_timeout_ownership_stays_and_nothing_turns_unhealthy(seed: int) -> None:
    sim = starved_cluster(seed, Starving(starve_ms=(100, 2_400), tick_first=True))
    started_ms = sim.now_ms
    checker = StableBeatChecker()
    for _ in range(240):
        sim.advance(1_000)
        assert checker.check(sim) == []
    assert sim.backlogged > 1_000  # the nodes were starved, often
    assert sim.beat_log.views_stable(started_ms - 1_000, sim.now_ms), sim.beat_log.last_view_change_ms()
    stats = [node.statistics() for _, node in sim.live_nodes()]
    assert sum(s.instances_marked_unhealthy + s.instances_expired for s in stats) == 0
    assert sum(s.beats_answered_here for s in stats) > 60 * 240 // 5 // 2


@pytest.mark.parametrize("seed", [0, 1])
def test_starved_past_the_peer_timeout_instances_turn_unhealthy_only_after_ownership_moved(seed: int) -> None:
    sim = starved_cluster(seed, Starving(starve_ms=(100, 6_000), tick_first=True))
    started_ms = sim.now_ms
    checker = StableBeatChecker()
    for _ in range(240):
        sim.advance(1_000)
        assert checker.check(sim) == []
    assert not sim.beat_log.views_stable(started_ms, sim.now_ms)  # peers were declared down
    sim.stop_starving()
    sim.advance(sim.settle_ms())
    assert checker.check(sim) == [] and check_converged(sim) == []


class LosesReceipts(StarvedSimulator):
    """Loses every beat receipt silently: a bug the checker must see."""

    def _send(self, source: str, target: str, message: Message) -> None:
        if isinstance(message, Renew) and all(not item[2] for item in message.items):
            return
        super()._send(source, target, message)


def test_the_checker_sees_beats_that_never_reach_their_owner() -> None:
    sim = starved_cluster(3, Starving(starve_ms=(10, 20)), clients=12, sim_type=LosesReceipts)
    checker = StableBeatChecker()
    found: list[str] = []
    for _ in range(40):
        sim.advance(1_000)
        found += checker.check(sim)
    assert any("unhealthy" in v and "no ownership view changed" in v for v in found), found[:3]
