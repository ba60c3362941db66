"""The keep-alive lane: connections waiting for their next request, watched by one task instead of one each.

A keep-alive connection between requests used to wait in its own task on ``trio.lowlevel.wait_readable``:
per request one ``epoll_ctl`` (trio's registrations are one-shot), a trip through the scheduler to wake the
task, and the task's own steps before the handler ran. For the v1 API's most frequent request, a light
beat every 5 s per instance, that was a good part of the server's CPU per request (issue 15's heartbeat
ramp). Here such a connection parks its task instead and registers its socket, once, on an epoll set of
the lane's own (level-triggered). One lane task waits for that set to become readable and, for each ready
socket, lets the connection read and answer what arrived inline (:meth:`LaneConnection.serve_parked`): a
request the server's *fast handler* answers at once (a plain answer, no waiting) costs a ``recv``, the
handler and a ``send``, with no task switch. Anything else (an incomplete head, a body not read whole, a request the fast
handler leaves, the end of the stream, a send that would block) hands the connection back to its task,
which carries on exactly as before with the bytes already read. A fast handler may also promise its answer
(``Deferred``, a forwarded registration): the connection then stays parked until whichever task resolves it
sends it; input that comes meanwhile is read and the socket taken off the set (:meth:`KeepAliveLane.pause`)
until the connection's task takes over.

A parked task is still the connection's owner: cancelling it (the idle reaper, shedding for room, server
shutdown) takes the socket off the lane first. Only the lane task touches a parked socket, and only the
connection's task touches it otherwise, so there is one reader and one writer at any moment.

The gRPC front door parks its plain-TCP connections' readers in a lane of its own (cluster/grpc/server.py):
there a parked connection stays parked for its whole life, served inline read after read.

An unexpected error in the lane task (a bug) never ends the lane, so never the server: one raised while a
connection is served is counted (``lane_errors_total`` of the server's stats) and raised in that
connection's task, which logs it (once: the lane writes no line of its own) and ends that connection as it
would end it for an error of its own; one raised as a step ends (``NodeRuntime.batch`` carrying out the
step's effects) is counted, and the lane goes on with every connection. A step that fails every time must
not write a traceback a step: its failures are logged rate-limited (:class:`cluster.loglimit.RateLimitedLog`:
the first in full, then at most a line a minute saying how many more). The runtime carries out each effect
on its own and guarded (cluster/node/pump.py), so an effect that fails costs no other; what can still fail
here is the core itself (taking its effects, its next deadline), and then the step's answers were sent
already and a write whose forward the failure dropped is answered when its wait runs out (the runtime's
safety net), while an answer that waits for the disk is released only by the disk writer's report.
"""

from __future__ import annotations

import contextlib
import logging
import select
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol

import outcome
import trio
from trio.lowlevel import Abort, Task, current_task, reschedule, wait_readable, wait_task_rescheduled

from cluster.loglimit import RateLimitedLog

__all__ = ["KeepAliveLane", "LaneConnection", "LaneStats"]

log = logging.getLogger(__name__)

MAX_EVENTS = 64
"""Ready sockets served in one step of the lane task (then it lets other tasks run)."""


class LaneConnection(Protocol):
    """What the lane needs of a parked connection."""

    def serve_parked(self) -> bool:
        """Its socket is readable: read and answer what can be answered now. True: stay parked; False:
        hand the connection back to its task."""


class LaneStats(Protocol):
    """Where the lane counts its unexpected errors (the server's stats, exported on /metrics)."""

    lane_errors_total: int


class KeepAliveLane:
    """Parked keep-alive connections and the one task that serves them (module docstring)."""

    __slots__ = ("_epoll", "_parked", "_stats", "_step", "_step_errors_log", "handed_over", "served_inline")

    def __init__(
        self, step: Callable[[], AbstractContextManager[None]] | None = None, stats: LaneStats | None = None
    ) -> None:
        """``step``: entered around each step of the lane task (every ready socket it serves at once), as
        ``NodeRuntime.batch``: what the fast handler's work in a step causes is carried out once. ``stats``:
        where unexpected errors are counted (module docstring)."""
        self._step = step or contextlib.nullcontext
        self._stats = stats
        self._step_errors_log = RateLimitedLog(log, "keep-alive lane: a step failed as it ended")
        self._epoll = select.epoll()
        self._parked: dict[int, tuple[LaneConnection, Task]] = {}
        self.served_inline = 0  # wake-ups that kept the connection parked (counter)
        self.handed_over = 0  # connections given back to their tasks (counter)

    def __len__(self) -> int:
        return len(self._parked)

    async def park(self, fd: int, conn: LaneConnection) -> None:
        """Wait, as ``conn``'s task, until the lane hands the connection back (its socket ``fd`` stays open
        meanwhile). Cancellable: a cancelled wait leaves the lane at once. A lane that stopped (the server is
        shutting down) parks nothing: this is then a plain checkpoint."""
        if self._epoll.closed:
            await trio.lowlevel.checkpoint()
            return
        self._epoll.register(fd, select.EPOLLIN)
        self._parked[fd] = (conn, current_task())

        def abort(_: object) -> Abort:
            self._leave(fd)
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort)

    def _leave(self, fd: int) -> None:
        self._parked.pop(fd, None)
        with contextlib.suppress(OSError, ValueError):  # the socket or the lane closed: it went with it
            self._epoll.unregister(fd)

    def pause(self, fd: int) -> None:
        """Stop watching a parked connection's socket (it waits for a deferred answer and has read what
        came meanwhile); it stays parked until :meth:`hand_over`."""
        with contextlib.suppress(OSError, ValueError):
            self._epoll.unregister(fd)

    def hand_over(self, fd: int) -> None:
        """Give a parked connection back to its task (nothing if it is no longer parked)."""
        entry = self._parked.get(fd)
        self._leave(fd)
        if entry is not None:
            self.handed_over += 1
            reschedule(entry[1])

    def _fail(self, fd: int, exc: Exception) -> None:
        """Serving a parked connection raised (a bug): hand it back with the error, which its task raises,
        logs and which ends that connection (its task's own error handling), not the lane; counted here."""
        self._count_error()
        entry = self._parked.get(fd)
        self._leave(fd)
        if entry is not None:
            self.handed_over += 1
            reschedule(entry[1], outcome.Error(exc))

    def _count_error(self) -> None:
        if self._stats is not None:
            self._stats.lane_errors_total += 1

    def _serve_ready(self, epoll: select.epoll) -> None:
        """One step's work: serve every ready parked connection (up to :data:`MAX_EVENTS`)."""
        parked = self._parked
        for fd, _events in epoll.poll(0, MAX_EVENTS):
            entry = parked.get(fd)
            if entry is None:
                continue
            try:
                stay = entry[0].serve_parked()
            except Exception as exc:
                self._fail(fd, exc)
                continue
            if stay:
                self.served_inline += 1
            else:
                self.hand_over(fd)

    async def run(self) -> None:
        """Serve parked connections until cancelled."""
        epoll = self._epoll
        step = self._step
        try:
            while True:
                await wait_readable(epoll)
                try:
                    with step():
                        self._serve_ready(epoll)
                except Exception as exc:  # the step's end (its effects carried out) failed: a bug, not the lane's end
                    self._count_error()
                    self._step_errors_log.failed(exc)
                await trio.lowlevel.checkpoint_if_cancelled()
        finally:
            # The server is stopping (its nursery is cancelled): each parked task leaves through its abort.
            epoll.close()
