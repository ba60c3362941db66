"""Schedules the simulator found that once failed, replayed step by step as regression tests.

A schedule that still fails is recorded here as ``xfail(strict=True)`` with its cause, so it is not hidden;
when the fix lands, the strict marker turns the pass into a failure and the marker comes off.
"""

from __future__ import annotations

from tests.sim.test_convergence import ThreeNodesFast


def test_acknowledged_settings_survive_isolation_with_fast_timers() -> None:
    """Found at the end of session 3. n2 acknowledges settings of cfg-9 while every node is isolated; n1
    registers an instance into cfg-9 (an implicit service on its side) and configures a cluster of it.
    ``PUT /cluster`` used to give the service default settings where it had none, a ``#meta`` newer than
    n2's: after healing the defaults replaced the acknowledged settings everywhere. It now writes only the
    cluster's entry (distro/clusterwrites.py)."""
    state = ThreeNodesFast()
    state.boot(seed=360097)
    state.isolate(target_node="n3")
    state.cluster_data_request(via="n3")
    state.cluster_data_request(via="n3")
    state.isolate(target_node="n1")
    state.advance(ms=74)
    state.advance(ms=3000)
    state.advance(ms=14244)
    state.advance(ms=37)
    state.isolate(target_node="n1")
    state.cluster_data_request(via="n1")
    state.isolate(target_node="n3")
    state.advance(ms=2)
    state.isolate(target_node="n3")
    state.advance(ms=15)
    state.advance(ms=8629)
    state.isolate(target_node="n3")
    state.cluster_data_request(via="n3")
    state.advance(ms=315)
    state.advance(ms=27)
    state.cluster_data_request(via="n2")
    state.advance(ms=609)
    state.cluster_data_request(via="n2")
    state.cluster_data_request(via="n2")
    state.advance(ms=149)
    state.isolate(target_node="n3")
    state.isolate(target_node="n1")
    state.isolate(target_node="n2")
    state.cluster_data_request(via="n3")
    state.isolate(target_node="n3")
    state.cluster_data_request(via="n2")
    state.advance(ms=67)
    state.advance(ms=73)
    state.cluster_data_request(via="n1")
    state.isolate(target_node="n3")
    state.isolate(target_node="n3")
    state.isolate(target_node="n2")
    state.cluster_data_request(via="n1")
    state.cluster_data_request(via="n1")
    state.cluster_data_request(via="n3")
    state.teardown()
