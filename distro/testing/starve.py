"""Nodes starved of CPU, in the simulator: a node that does not run for a while, then catches up.

On a machine with more runnable processes than cores a node's process is descheduled for hundreds of
milliseconds at a time, and when it runs again everything it missed is waiting at once: beats in its HTTP
sockets, frames in its peer links, and its own timer, already late. trio then runs whatever is ready in
an order of its own, so the timer (peer timeouts, the health check, the beat receipts' flush) may run
before the frames that arrived meanwhile are read.

:class:`StarvedSimulator` models that. Each node alternates between running (``run_ms``) and being
starved (``starve_ms``), on a schedule drawn from its own seed, independent of the events. While starved,
what reaches the node (peer messages, client requests) waits in its backlog, and its timer does not fire;
when the window ends the node ticks first (``tick_first``: the worst order for the health check and the
peer timeouts) and then reads its backlog in arrival order. A beat still counts as reaching the node when
the client sent it (it is in the node's socket), as a client would see it.

:class:`StableBeatChecker` holds the cluster to the heartbeat promise in that setting: an instance whose
client beats through any live node every beat interval is never marked unhealthy (or expired) unless some
node's ownership view changed within the heartbeat timeout before.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import pairwise

from distro.config import DistroConfig
from distro.node import DistroNode
from distro.requests import ClientRequest
from distro.testing.sim import FaultOptions, InFlight, SimClient, Simulator

__all__ = ["StableBeatChecker", "StarvedSimulator", "Starving"]

MAX_BACKLOG = 100_000
"""The most inputs a starved node's backlog holds (more are lost, as a full socket buffer would)."""


@dataclass(frozen=True, slots=True)
class Starving:
    """How nodes are starved: each runs for ``run_ms`` then stops for ``starve_ms`` (both drawn uniformly)."""

    run_ms: tuple[int, int] = (20, 800)
    starve_ms: tuple[int, int] = (100, 2_000)
    tick_first: bool = True  # a starved node's late timer runs before it reads what arrived meanwhile


@dataclass(slots=True)
class _Backlogged:
    """An input that reached a starved node and waits for it: a peer message or a client request."""

    message: InFlight | None = None
    client: SimClient | None = None
    kind: str = ""
    request: ClientRequest | None = None


class StarvedSimulator(Simulator):
    """A :class:`~distro.testing.sim.Simulator` whose nodes are starved of CPU now and then (module docstring)."""

    def __init__(
        self,
        seed: int,
        node_count: int = 3,
        *,
        starving: Starving | None = None,
        config: DistroConfig | None = None,
        faults: FaultOptions | None = None,
        services: int = 3,
        beat_interval_ms: int = 5_000,
    ) -> None:
        self.starving = starving or Starving()
        self._starve_rng = random.Random(seed * 7919 + 1)
        # Per node: its starvation windows [start, end), in time order, drawn ahead as far as asked.
        self._windows: dict[str, list[tuple[int, int]]] = {}
        self._backlog: dict[str, list[_Backlogged]] = {}
        self.backlogged = 0  # inputs that waited for a starved node (counter)
        self.lost_to_backlog = 0
        self.starving_on = True
        super().__init__(
            seed, node_count, config=config, faults=faults, services=services, beat_interval_ms=beat_interval_ms
        )

    # -- the schedule -----------------------------------------------------------------------------
    def stop_starving(self) -> None:
        """From now on every node runs whenever it has something to do (what waits is read at once)."""
        self.starving_on = False

    def _window_at(self, node_id: str, t_ms: int) -> tuple[int, int] | None:
        """The starvation window of ``node_id`` that contains ``t_ms``, if any."""
        if not self.starving_on:
            return None
        windows = self._windows.setdefault(node_id, [])
        run, starve = self.starving.run_ms, self.starving.starve_ms
        while not windows or windows[-1][1] <= t_ms:
            begin = (windows[-1][1] if windows else self.now_ms) + self._starve_rng.randint(*run)
            windows.append((begin, begin + self._starve_rng.randint(*starve)))
        while len(windows) > 1 and windows[0][1] <= self.now_ms:
            windows.pop(0)
        for begin, end in windows:
            if begin <= t_ms < end:
                return begin, end
        return None

    def starved(self, node_id: str) -> bool:
        """True while ``node_id`` does not run."""
        return self._window_at(node_id, self.now_ms) is not None

    def _due_ms(self, node_id: str, node: DistroNode) -> int:
        due = node.next_deadline_ms()
        if self._backlog.get(node_id):
            due = min(due, self.now_ms)
        window = self._window_at(node_id, max(due, self.now_ms))
        return due if window is None else window[1]

    # -- inputs wait while the node is starved ----------------------------------------------------
    def _hold(self, node_id: str, item: _Backlogged) -> None:
        backlog = self._backlog.setdefault(node_id, [])
        if len(backlog) >= MAX_BACKLOG:
            self.lost_to_backlog += 1
            self._lost()
            return
        self.backlogged += 1
        backlog.append(item)

    def _deliver(self, item: InFlight) -> None:
        if self.nodes.get(item.target) is not None and self.starved(item.target):
            if (item.source, item.target) in self.blocked:
                self._lost()
            else:
                self._hold(item.target, _Backlogged(message=item))
            return
        super()._deliver(item)

    def _handle_client_request(self, client: SimClient, node_id: str, kind: str, request: ClientRequest) -> None:
        if self.nodes.get(node_id) is not None and self.starved(node_id):
            self._hold(node_id, _Backlogged(client=client, kind=kind, request=request))
            return
        super()._handle_client_request(client, node_id, kind, request)

    def _tick(self, node_id: str, node: DistroNode) -> None:
        """The node runs again (or its timer is due): its late tick first, then everything that waited."""
        backlog = self._backlog.pop(node_id, [])
        if self.starving.tick_first and node.next_deadline_ms() <= self.now_ms:
            super()._tick(node_id, node)
        for item in backlog:
            if self.nodes.get(node_id) is None:
                break
            if item.message is not None:
                super()._deliver(item.message)
            elif item.client is not None and item.request is not None:
                super()._handle_client_request(item.client, node_id, item.kind, item.request)
        live = self.nodes.get(node_id)
        if live is not None and live.next_deadline_ms() <= self.now_ms:
            super()._tick(node_id, live)


class StableBeatChecker:
    """An instance whose client beats through live nodes every beat interval is never marked unhealthy or
    expired unless some node's ownership view changed within ``heartbeat_timeout_ms`` before.

    Reads (and consumes) the simulator's health events: use it instead of ``BeatChecker``'s health check.
    """

    def check(self, sim: Simulator) -> list[str]:
        """Violations found since the last call."""
        log, cfg = sim.beat_log, sim.config
        violations = []
        for event in log.take_events():
            client = sim.clients[event.client_id]
            if not client.beating or not log.views_stable(event.ms - cfg.heartbeat_timeout_ms, event.ms):
                continue
            beats = [ms for ms, _ in log.beats(event.client_id)]
            since = event.ms - cfg.instance_expire_ms
            recent = [ms for ms in beats if ms >= since]
            gaps = [b - a for a, b in pairwise(recent)]
            interval_ms = sim.beat_interval_ms
            if not recent or max(gaps, default=0) > interval_ms or event.ms - recent[-1] > interval_ms:
                continue  # it did not beat every interval (its node was down, say): not this promise
            violations.append(
                f"{event.node_id} {event.kind} client {event.client_id} ({client.key.service}) at {event.ms}: "
                f"it beat every {sim.beat_interval_ms} ms (last at {recent[-1]}) and no ownership view changed "
                f"since {event.ms - cfg.heartbeat_timeout_ms}"
            )
        return violations
