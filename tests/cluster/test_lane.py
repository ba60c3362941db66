"""The keep-alive lane itself (cluster/http/lane.py) with connections of the test's own on real sockets: an
unexpected error while it serves one connection ends that connection's wait, with the error, and the lane
serves the others on. (The servers' tests cover the lane with their own connections.)"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import trio
import trio.testing

from cluster.http.lane import KeepAliveLane

GUARD = 5


@dataclass
class Stats:
    lane_errors_total: int = 0


class Parked:
    """A parked connection that reads what came; a read of ``boom`` raises (a bug in serving it)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.read = bytearray()

    def serve_parked(self) -> bool:
        data = self.sock.recv(100)
        if data == b"boom":
            raise RuntimeError("a bug while serving a parked connection")
        self.read += data
        return True


async def wait_for(predicate: Callable[[], bool]) -> None:
    with trio.fail_after(GUARD):
        while not predicate():
            await trio.sleep(0.01)


async def test_an_error_serving_one_connection_is_raised_in_its_task_and_the_lane_serves_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stats = Stats()
    lane = KeepAliveLane(stats=stats)
    pairs = [socket.socketpair() for _ in range(2)]
    for ours, _ in pairs:
        ours.setblocking(False)
    conns = [Parked(ours) for ours, _ in pairs]
    outcomes: dict[int, str] = {}

    async def park(n: int) -> None:
        try:
            await lane.park(conns[n].sock.fileno(), conns[n])
            outcomes[n] = "handed back"
        except RuntimeError as exc:
            outcomes[n] = str(exc)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lane.run)
            for n in range(2):
                nursery.start_soon(park, n)
            await wait_for(lambda: len(lane) == 2)
            pairs[0][1].send(b"boom")
            await wait_for(lambda: 0 in outcomes)
            assert outcomes == {0: "a bug while serving a parked connection"}
            assert stats.lane_errors_total == 1 and len(lane) == 1
            pairs[1][1].send(b"hello")
            await wait_for(lambda: conns[1].read == b"hello")
            assert 1 not in outcomes and lane.served_inline == 1
            nursery.cancel_scope.cancel()
    finally:
        for ours, theirs in pairs:
            ours.close()
            theirs.close()
    # Logged once, by the connection's task that raises it (here the test's): the lane only counts it.
    assert [r for r in caplog.records if r.name == "cluster.http.lane"] == []


async def test_a_step_that_fails_every_time_is_counted_each_time_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A step whose end fails every time (a bug in carrying out its effects) is counted at every step, but
    logged in full once: later ones wait for the rate limit's interval (a minute), not a traceback a step."""
    stats = Stats()

    @contextmanager
    def failing_step() -> Iterator[None]:
        yield
        raise RuntimeError("a bug as the step ends")

    lane = KeepAliveLane(failing_step, stats=stats)
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    conn = Parked(ours)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lane.run)
            nursery.start_soon(lane.park, ours.fileno(), conn)
            await wait_for(lambda: len(lane) == 1)
            for n in range(1, 6):
                theirs.send(b"x")
                await wait_for(lambda: stats.lane_errors_total == n)  # noqa: B023 (waited for at once)
            assert conn.read == b"xxxxx" and len(lane) == 1
            nursery.cancel_scope.cancel()
    finally:
        ours.close()
        theirs.close()
    records = [r for r in caplog.records if r.name == "cluster.http.lane"]
    assert len(records) == 1 and records[0].exc_info is not None
    assert "a step failed as it ended" in records[0].getMessage()
