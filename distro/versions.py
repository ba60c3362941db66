"""Hybrid logical clock versions: ``(milliseconds, counter, node id)``, totally ordered.

Every entry a node writes carries the next version of that node's clock. The clock never goes
backwards: it follows the wall clock it is given (``now_ms``) when that is ahead, and otherwise bumps
the counter. Observing a version from a peer pulls the clock forward, so a write that causally follows
another always gets a higher version, even when the writer's wall clock lags.

Bounds: peers decode both parts as non-negative 64-bit signed integers (distro/codec.py). The clock never
issues a counter above :data:`MAX_COUNTER`: when the counter would pass it, the clock moves to the next
millisecond instead (a peer that sent counter 2^63-1 cannot make it issue an undecodable version). Versions
it cannot pass (milliseconds beyond :data:`MAX_MS`, counters beyond :data:`MAX_COUNTER`) are not observed,
and the wall clock is read as at most :data:`MAX_MS`, so the millisecond part stays far below the codec's
limit too. Versions from too far in the future never reach the clock: the node refuses them when it
merges (``max_clock_skew_ms``, distro/node.py).
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

__all__ = ["ZERO_VERSION", "HybridClock", "Version"]


class Version(NamedTuple):
    """An entry's version. Compared as a tuple: time, then counter, then node id as a tie-breaker."""

    ms: int
    counter: int
    node: str


class Stamped(Protocol):
    """What the clock reads of a version: its milliseconds and counter (a :class:`Version` or an entry)."""

    @property
    def ms(self) -> int: ...

    @property
    def counter(self) -> int: ...


ZERO_VERSION = Version(0, 0, "")
MAX_COUNTER = 2**63 - 1
"""The largest counter a peer decodes (the codec's 64-bit signed limit)."""
MAX_MS = 2**62
"""The largest millisecond part the clock takes from the wall clock or from a peer (year 146 million):
a counter overflow adds one, still far below the codec's limit."""


class HybridClock:
    """Issues strictly increasing versions for one node."""

    __slots__ = ("_counter", "_ms", "node_id")

    def __init__(self, node_id: str, now_ms: int) -> None:
        self.node_id = node_id
        self._ms = min(now_ms, MAX_MS)
        self._counter = 0

    def next(self, now_ms: int) -> Version:
        """The next version; always greater than every version issued or observed before."""
        now_ms = min(now_ms, MAX_MS)
        if now_ms > self._ms:
            self._ms = now_ms
            self._counter = 0
        elif self._counter < MAX_COUNTER:
            self._counter += 1
        else:  # the counter is spent: the next millisecond (a little ahead of the wall clock)
            self._ms += 1
            self._counter = 0
        return Version(self._ms, self._counter, self.node_id)

    def observe(self, version: Stamped) -> None:
        """Move the clock past a version seen from elsewhere (a :class:`Version`, or an entry, which has the
        same ``ms`` and ``counter``); one beyond the bounds is ignored."""
        if version.ms > MAX_MS or version.counter > MAX_COUNTER:
            return
        if version.ms > self._ms or (version.ms == self._ms and version.counter > self._counter):
            self._ms = version.ms
            self._counter = version.counter

    @property
    def last(self) -> tuple[int, int]:
        """The clock's current ``(ms, counter)``."""
        return (self._ms, self._counter)
