"""Hybrid logical clock versions: ``(milliseconds, counter, node id)``, totally ordered.

Every entry a node writes carries the next version of that node's clock. The clock never goes
backwards: it follows the wall clock it is given (``now_ms``) when that is ahead, and otherwise bumps
the counter. Observing a version from a peer pulls the clock forward, so a write that causally follows
another always gets a higher version, even when the writer's wall clock lags.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["ZERO_VERSION", "HybridClock", "Version"]


class Version(NamedTuple):
    """An entry's version. Compared as a tuple: time, then counter, then node id as a tie-breaker."""

    ms: int
    counter: int
    node: str


ZERO_VERSION = Version(0, 0, "")


class HybridClock:
    """Issues strictly increasing versions for one node."""

    __slots__ = ("_counter", "_ms", "node_id")

    def __init__(self, node_id: str, now_ms: int) -> None:
        self.node_id = node_id
        self._ms = now_ms
        self._counter = 0

    def next(self, now_ms: int) -> Version:
        """The next version; always greater than every version issued or observed before."""
        if now_ms > self._ms:
            self._ms = now_ms
            self._counter = 0
        else:
            self._counter += 1
        return Version(self._ms, self._counter, self.node_id)

    def observe(self, version: Version) -> None:
        """Move the clock past a version seen from elsewhere."""
        if version.ms > self._ms or (version.ms == self._ms and version.counter > self._counter):
            self._ms = version.ms
            self._counter = version.counter

    @property
    def last(self) -> tuple[int, int]:
        """The clock's current ``(ms, counter)``."""
        return (self._ms, self._counter)
