"""Logging a failure that may repeat at every step without flooding the log.

A bug in a loop that runs thousands of times a second (the keep-alive lane's step, the runtime's effect
dispatch) would otherwise write a traceback each time. :class:`RateLimitedLog` writes the first failure in
full (with its traceback), then at most one line per ``interval_s`` for the later ones, saying how many it
left out since its last line. Counting every failure is the caller's job (its metrics counter); this only
decides what reaches the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

__all__ = ["LOG_INTERVAL_S", "RateLimitedLog"]

LOG_INTERVAL_S = 60.0
"""At most one line per this many seconds after the first failure's traceback."""


class RateLimitedLog:
    """The log lines of one kind of repeated failure: the first in full, then at most one per interval."""

    __slots__ = ("_last_s", "_log", "_now_s", "_what", "interval_s", "suppressed")

    def __init__(
        self,
        log: logging.Logger,
        what: str,
        interval_s: float = LOG_INTERVAL_S,
        now_s: Callable[[], float] = trio.current_time,
    ) -> None:
        """``what``: the failure, as the log line names it (``"keep-alive lane: a step failed as it ended"``);
        ``now_s``: the clock (trio's, so a mock clock drives it in tests)."""
        self._log = log
        self._what = what
        self.interval_s = interval_s
        self._now_s = now_s
        self._last_s: float | None = None  # when the last line was written (None: nothing written yet)
        self.suppressed = 0  # failures left out of the log since the last line

    def failed(self, exc: BaseException) -> None:
        """One more failure (call it from the ``except`` block that caught ``exc``)."""
        now_s = self._now_s()
        if self._last_s is None:
            self._last_s = now_s
            self._log.error("%s: %r", self._what, exc, exc_info=exc)
        elif now_s - self._last_s >= self.interval_s:
            since_s = now_s - self._last_s
            self._last_s = now_s
            self._log.error("%s again: %r (%d more like it not logged in the %.0f s since the last line)",
                            self._what, exc, self.suppressed, since_s)
            self.suppressed = 0
        else:
            self.suppressed += 1
