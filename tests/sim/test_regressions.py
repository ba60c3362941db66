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


def test_namespaces_created_across_a_partition_survive_a_deletion_collected_on_the_other_side() -> None:
    """Found by a generate-only run of 5,000 fast schedules after the fix above. With links cut, n3 deletes
    ns-1 (version 1011800.0.n3) and later collects its tombstone, while n2 and n1, cut off from it, create
    ns-3 and ns-5 in the same millisecond (1011800.0.n2 and .n1: below the deletion). Every namespace lives
    under one reserved key, and a collected tombstone left one floor per key: after healing, n3 refused
    ns-3 and ns-5 as stale copies of deleted entries and deleted them everywhere. Cluster data now has a
    floor per deleted entry (distro/store.py)."""
    state = ThreeNodesFast()
    state.boot(seed=20325)
    state.advance(ms=5599)
    state.isolate(target_node="n1")
    state.isolate(target_node="n1")
    state.advance(ms=82)
    state.advance(ms=99)
    state.cut_one_way(link=("n1", "n2"))
    state.cluster_data_request(via="n3")
    state.drop_one(index=21)
    state.cut_one_way(link=("n3", "n1"))
    state.cut_one_way(link=("n2", "n3"))
    state.isolate(target_node="n1")
    state.advance(ms=6020)
    state.cut_one_way(link=("n1", "n3"))
    state.isolate(target_node="n2")
    state.cut_one_way(link=("n2", "n1"))
    state.cut_one_way(link=("n1", "n2"))
    state.cut_one_way(link=("n2", "n1"))
    state.cluster_data_request(via="n2")
    state.cut_one_way(link=("n1", "n2"))
    state.cut_one_way(link=("n1", "n2"))
    state.cut_one_way(link=("n2", "n1"))
    state.cluster_data_request(via="n3")
    state.cluster_data_request(via="n2")
    state.cluster_data_request(via="n2")
    state.cluster_data_request(via="n1")
    state.advance(ms=1532)
    state.cluster_data_request(via="n3")
    state.advance(ms=323)
    state.advance(ms=3584)
    state.advance(ms=64)
    state.cut_one_way(link=("n3", "n1"))
    state.cut_one_way(link=("n1", "n3"))
    state.cluster_data_request(via="n3")
    state.isolate(target_node="n3")
    state.advance(ms=7677)
    state.isolate(target_node="n1")
    state.advance(ms=72)
    state.cut_one_way(link=("n2", "n3"))
    state.advance(ms=4818)
    state.teardown()
