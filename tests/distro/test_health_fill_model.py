"""The bulk clock fill against a model of what each gained instance's clock must be.

Random gains, losses, restarts, beats and fills of a few instances at a time (the slice bound crossed
mid-queue, keys lost and regained before their slice): once every clock is built, each owned instance's
clock is its latest beat since its key was (last) gained or the clocks restarted, else its orphan mark,
else that gain or restart time; and the earliest deadline among them is judged on time, never early.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from distro.config import DistroConfig
from distro.datum import Entry
from distro.health import HeartbeatClocks
from distro.model import META_BEAT_TIMEOUT, META_DELETE_TIMEOUT, Instance, ServiceKey, make_instance
from distro.ownership import OwnershipMap
from distro.store import DatumStore
from distro.versions import Version
from tests.distro import PROPERTIES

KEYS = [ServiceKey("public", "DEFAULT_GROUP", f"model-{k}") for k in range(6)]
MEMBER_SETS = [("n1",), ("n1", "n2"), ("n1", "n2", "n3"), ("n2", "n3"), ("n1", "n3")]
SHARED = [{}, {META_BEAT_TIMEOUT: "3000"}, {META_BEAT_TIMEOUT: "40000", META_DELETE_TIMEOUT: "50000"}]

instances = st.builds(
    lambda j, meta, healthy, bound, orphan: make_instance(f"10.5.0.{j}", 8080, healthy=healthy,
                                                          metadata=SHARED[meta]).replace(
        connection="c1" if bound else "", orphaned_ms=orphan if bound else 0),
    st.integers(0, 3), st.integers(0, len(SHARED) - 1), st.booleans(), st.booleans(),
    st.sampled_from([0, 0, 500, 1_500]),
)
ops = st.lists(st.one_of(
    st.tuples(st.just("own"), st.sampled_from(MEMBER_SETS)),
    st.tuples(st.just("beat"), st.integers(0, len(KEYS) - 1), st.integers(0, 3)),
    st.tuples(st.just("fill"), st.integers(1, 4)),
    st.tuples(st.just("restart"), st.just(0)),
), min_size=1, max_size=30)


@PROPERTIES
@given(st.lists(st.tuples(st.integers(0, len(KEYS) - 1), instances), min_size=1, max_size=30), ops)
def test_built_clocks_match_the_model_and_the_earliest_deadline_is_met(
    placed: list[tuple[int, Instance]], steps: list[tuple[Any, ...]]
) -> None:
    """Two instances a fill slice; ownership by real maps (members leaving, joining, both), so the walk
    that asks the new map only for the departed members' keys is exercised too. Catches a deadline
    worked out once for a run of instances of different health, or a beat since the gain overwritten."""
    config = DistroConfig(clock_fill_instances=2)
    store = DatumStore()
    for n, (k, inst) in enumerate(placed):
        store.merge(KEYS[k], inst.entry_id, Entry(Version(1_000, n, "n2"), inst))
    clocks = HeartbeatClocks(config, store)
    owned: set[ServiceKey] = set()
    current = OwnershipMap(())
    expected: dict[ServiceKey, tuple[int, dict[str, int]]] = {}  # owned key -> (started at, beats since)
    now = 2_000
    for op in [("own", ("n1", "n2", "n3")), *steps]:
        now += 100
        if op[0] == "own":
            new = OwnershipMap(op[1])
            clocks.reassign("n1", current, new, now)
            now_owned = {key for key in KEYS if OwnershipMap(op[1]).owner_of_key(key) == "n1"}
            for key in now_owned - owned:
                expected[key] = (now, {})
            for key in owned - now_owned:
                expected.pop(key, None)
            owned, current = now_owned, new
        elif op[0] == "beat":
            key = KEYS[op[1]]
            entry_id = f"DEFAULT/10.5.0.{op[2]}:8080"
            if store.live_instance(key, entry_id) is not None and clocks.beat(key, entry_id, now):
                expected[key][1][entry_id] = now
        elif op[0] == "fill":
            clocks.fill(op[1])
        else:
            clocks.restart(now)
            expected = {key: (now, {}) for key in expected}
    clocks.fill(None)
    deadlines = []
    for key, (started, beats) in expected.items():
        for entry_id, entry in store.items(key):
            inst = entry.value
            assert isinstance(inst, Instance)
            want = beats.get(entry_id) or (inst.orphaned_ms if inst.connection else 0) or started
            assert clocks.last_beat_ms(key, entry_id) == want, (key, entry_id)
            deadlines.append(clocks._deadline_ms(inst, want))
    if deadlines:
        first = min(deadlines)
        assert clocks.check(first, quorum=True) == []  # nothing judged early
        assert clocks.check(first + 1, quorum=True) != []  # the earliest deadline met on time
