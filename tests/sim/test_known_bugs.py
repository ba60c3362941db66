"""Schedules the simulator found that still fail: each one replayed step by step, expected to fail (strict).

When a fix lands, its test starts passing, xfail(strict=True) turns that into a failure, and the marker comes
off: the schedule becomes an ordinary regression test.
"""

from __future__ import annotations

import pytest

from tests.sim.test_convergence import ThreeNodesFast


@pytest.mark.xfail(
    strict=True,
    reason="known bug (found at the end of session 3): with fast timers (empty-service grace 3 s) and nodes "
    "isolated while cluster-data writes are acknowledged, an acknowledged service setting is missing on every "
    "node after healing; ThreeNodesFast runs without cluster-data writes until it is fixed",
)
def test_acknowledged_settings_survive_isolation_with_fast_timers() -> None:
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
