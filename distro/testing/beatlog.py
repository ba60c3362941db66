"""What the simulator records for the heartbeat checker (:class:`distro.testing.checkers.BeatChecker`).

* **Faults**, with their times: a partition cut or healed, a node crashed or restarted, a message lost.
* **Beats** (and registrations, which renew as well) that reached a running node, per client, with whether
  the cluster was *calm* then: every node running and ready, no link cut, and every node computing ownership
  over the same, full live set.
* **The last request** each client sent to a running node, with the same calm flag.
* **Health events**: an owner's check marked a heartbeating client's instance unhealthy, or deleted it.
* **View changes**: when a node's live set, and with it the ownership it computes, changed.

Everything is bounded: beats older than :attr:`BeatLog.horizon_ms` are forgotten, and so are faults.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import Literal

__all__ = ["BeatLog", "HealthEvent"]

MAX_BEATS_PER_CLIENT = 64
MAX_EVENTS = 10_000


@dataclass(frozen=True, slots=True)
class HealthEvent:
    """An owner's health check changed a heartbeating client's instance at ``ms``."""

    ms: int
    node_id: str
    client_id: int
    kind: Literal["unhealthy", "expired"]


class BeatLog:
    """Faults, beats, last requests and health events of one simulation (see the module docstring)."""

    def __init__(self, horizon_ms: int) -> None:
        self.horizon_ms = horizon_ms
        self._faults: list[int] = []
        self._beats: dict[int, list[tuple[int, bool]]] = {}
        self.last_sent: dict[int, tuple[int, bool]] = {}  # client id -> (ms, calm then)
        self._events: list[HealthEvent] = []
        self._views: list[int] = []

    # -- recording --------------------------------------------------------------------------------
    def fault(self, now_ms: int) -> None:
        """Something that may lose a beat or move ownership happened now."""
        faults = self._faults
        faults.append(now_ms)
        if len(faults) > 4 * MAX_EVENTS:
            del faults[: bisect_right(faults, now_ms - self.horizon_ms)]

    def view_changed(self, now_ms: int) -> None:
        """A node's ownership view changed now."""
        views = self._views
        views.append(now_ms)
        if len(views) > 4 * MAX_EVENTS:
            del views[: bisect_right(views, now_ms - self.horizon_ms)]

    def request(self, client_id: int, now_ms: int, calm: bool, *, renews: bool) -> None:
        """A client's request reached a running node; ``renews``: a beat or a registration."""
        self.last_sent[client_id] = (now_ms, calm)
        if not renews:
            return
        beats = self._beats.setdefault(client_id, [])
        beats.append((now_ms, calm))
        while beats and (len(beats) > MAX_BEATS_PER_CLIENT or beats[0][0] < now_ms - self.horizon_ms):
            beats.pop(0)

    def health(self, event: HealthEvent) -> None:
        """An owner's check changed a heartbeating client's instance."""
        if len(self._events) < MAX_EVENTS:
            self._events.append(event)

    # -- reading ----------------------------------------------------------------------------------
    def take_events(self) -> list[HealthEvent]:
        """The health events recorded since the last call."""
        events, self._events = self._events, []
        return events

    def beats(self, client_id: int) -> list[tuple[int, bool]]:
        """``(ms, calm then)`` of the client's recent beats and registrations, oldest first."""
        return list(self._beats.get(client_id, ()))

    def quiet(self, after_ms: int, until_ms: int) -> bool:
        """No fault in ``(after_ms, until_ms]``."""
        return bisect_right(self._faults, after_ms) == bisect_right(self._faults, until_ms)

    def views_stable(self, after_ms: int, until_ms: int) -> bool:
        """No node's ownership view changed in ``(after_ms, until_ms]``."""
        return bisect_right(self._views, after_ms) == bisect_right(self._views, until_ms)

    def last_view_change_ms(self) -> int | None:
        """When a node's ownership view last changed (None: never, within the horizon)."""
        return self._views[-1] if self._views else None
