"""cluster/loglimit.py: a failure repeated at every step is logged in full once, then at most one line per
interval saying how many were left out; the clock is the test's own."""

from __future__ import annotations

import logging

import pytest

from cluster.loglimit import RateLimitedLog

log = logging.getLogger("tests.loglimit")


def test_the_first_failure_in_full_then_one_line_per_interval_with_the_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    limited = RateLimitedLog(log, "a step failed", interval_s=60, now_s=lambda: now[0])
    for step in range(1000):  # 1000 failures within the first minute
        now[0] = 100.0 + step * 0.05
        try:
            raise RuntimeError(f"boom {step}")
        except RuntimeError as exc:
            limited.failed(exc)
    assert len(caplog.records) == 1
    first = caplog.records[0]
    assert first.exc_info is not None and "a step failed: RuntimeError('boom 0')" in first.getMessage()
    assert limited.suppressed == 999
    now[0] = 160.0
    limited.failed(RuntimeError("boom again"))
    assert len(caplog.records) == 2
    second = caplog.records[1]
    assert second.exc_info is None
    assert second.getMessage() == ("a step failed again: RuntimeError('boom again') (999 more like it not logged in "
                                   "the 60 s since the last line)")
    assert limited.suppressed == 0
    limited.failed(RuntimeError("soon after"))
    assert len(caplog.records) == 2 and limited.suppressed == 1
