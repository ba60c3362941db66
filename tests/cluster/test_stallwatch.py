"""cluster/node/stallwatch.py: the DISTRO_STALL_LOG_MS setting and the instrument's log line."""

from __future__ import annotations

import logging

import pytest
import trio

from cluster.node.stallwatch import StallWatch, from_environment


def test_unset_or_empty_is_off() -> None:
    assert from_environment({}) is None
    assert from_environment({"DISTRO_STALL_LOG_MS": " "}) is None


def test_a_threshold_in_milliseconds() -> None:
    watch = from_environment({"DISTRO_STALL_LOG_MS": "50"})
    assert watch is not None and watch.threshold_s == 0.05


@pytest.mark.parametrize("text", ["fast", "0", "-5", "nan"])
def test_bad_values_are_refused_with_the_variable_named(text: str) -> None:
    with pytest.raises(ValueError, match="DISTRO_STALL_LOG_MS"):
        from_environment({"DISTRO_STALL_LOG_MS": text})


def test_a_step_over_the_threshold_is_logged_with_its_task(caplog: pytest.LogCaptureFixture) -> None:
    watch = StallWatch(threshold_ms=1e-6)  # every step qualifies: no sleeping, no timing in the test

    async def busy() -> None:
        await trio.lowlevel.checkpoint()

    with caplog.at_level(logging.WARNING, logger="distro.stall"):
        trio.run(busy, instruments=[watch])
    assert watch.stalls >= 1
    assert any("stall: task" in r.message and "busy" in r.message for r in caplog.records)


def test_a_batch_of_steps_between_two_looks_at_the_sockets_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    watch = StallWatch(threshold_ms=1e-6)  # every batch qualifies

    async def two_tasks() -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(2):
                nursery.start_soon(trio.sleep, 0)

    with caplog.at_level(logging.WARNING, logger="distro.stall"):
        trio.run(two_tasks, instruments=[watch])
    assert watch.batch_stalls >= 1
    assert any("between two looks at its sockets" in r.message and "task steps" in r.message
               for r in caplog.records)
