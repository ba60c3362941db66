"""The load generator's open loop (``--rate``): one thread, one ``epoll``, no event-loop framework.

Request ``i`` is due at ``start + i / rate``. When it is due it goes out on the connection idle longest (one
request in flight per connection, no pipelining; so requests rotate over every connection and target); its
latency is measured from the due time, so a server (or a generator) that falls behind shows it. Each socket is registered with ``epoll`` once, for reading, and
stays registered: a request costs one ``send``, one ``recv`` and a share of one ``epoll_wait``. The trio
version this replaces spent ~75 us of the generator's CPU per request (a task switch and an
``epoll_ctl`` per wait), which at the heartbeat ramp's 20,000 beats/s is more than one of the machine's two
cores; this one spends ~15-20 us.

Controlled runs (``--control``, for the heartbeat ramp): the schedule and the statistics are steered by
JSON lines on stdin, one answer line on stdout each:

* ``{"cmd": "set", "count": N, "rate": R}``: from now on, beat (request) instances ``0..N-1`` in turn at
  ``R``/s, carrying on from the instance that was next (so an instance waits at most one old cycle plus
  the new instances' share of the new one); answers ``{"ok": true}``.
* ``{"cmd": "report"}``: the summary of everything since the previous report (or the start), and a fresh
  window begins. Besides the usual figures it says how many requests fell due in the window
  (``scheduled``) and how late the generator put them on the wire (``send_lag_ms``).

The run ends at ``--duration``, on SIGTERM, or when stdin closes (controlled runs); requests in flight
get up to ``DRAIN_S`` to complete, then the summary of the last window is printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchlib.httpraw import HttpError, ResponseParser, split_addr

DRAIN_S = 5.0
MAX_WAIT_S = 0.05
RECONNECT_S = 0.5
LAG_SAMPLE_EVERY = 16

Make = Callable[[int, dict[str, Any]], bytes]
Check = Callable[[int, bytes], bool]
Prepare = Callable[[socket.socket, dict[str, Any]], None]


class _Conn:
    """One keep-alive connection of the open loop, with its request in flight (if any)."""

    __slots__ = ("addr", "ctx", "due", "fd", "parser", "retry_at", "sock")

    def __init__(self, addr: str) -> None:
        self.addr = addr
        self.sock: socket.socket | None = None
        self.fd = -1
        self.parser = ResponseParser()
        self.ctx: dict[str, Any] = {}
        self.due: float | None = None
        self.retry_at = 0.0


@dataclass
class Stats:
    """Outcomes and latencies of a run, with a per-bucket timeline of successes."""

    ok: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    timeline: list[int] = field(default_factory=list)

    def record(self, good: bool, latency_s: float, t_rel: float, bucket_s: float, error: str = "") -> None:
        if good:
            self.ok += 1
            b = int(t_rel / bucket_s)
            tl = self.timeline
            if b >= len(tl):
                tl.extend([0] * (b + 1 - len(tl)))
            tl[b] += 1
        else:
            self.failed += 1
            if error:
                self.errors[error] = self.errors.get(error, 0) + 1
        self.latencies_ms.append(latency_s * 1000.0)


class Window(Stats):
    """Outcomes of the requests completed (and scheduled) since the window began."""

    def __init__(self, start: float, bucket_s: float) -> None:
        super().__init__()
        self.start = start
        self.bucket_s = bucket_s
        self.scheduled = 0
        self.lags_ms: list[float] = []
        self.no_idle_conn = 0
        ru = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu0 = ru.ru_utime + ru.ru_stime

    def note(self, good: bool, latency_s: float, t: float, error: str = "") -> None:
        """One request completed at ``t`` (absolute time)."""
        self.record(good, latency_s, t - self.start, self.bucket_s, error)


class OpenLoop:
    """The open-loop engine; ``run()`` returns (and in controlled runs also prints) summary dicts."""

    def __init__(self, targets: list[str], connections: int, rate: float, count: int | None,
                 duration: float | None, make: Make, check: Check, prepare: Prepare | None = None,
                 bucket_s: float = 0.25, control: bool = False, cycle: bool = False) -> None:
        self.conns = [_Conn(targets[c % len(targets)]) for c in range(connections)]
        self.make, self.check, self.prepare = make, check, prepare
        self.rate = rate
        self.count = count
        self.cycle = cycle  # index i maps to i % count and never runs out (beats)
        self.duration = duration
        self.bucket_s = bucket_s
        self.control = control
        self.stop_at = float("inf")
        self.by_fd: dict[int, _Conn] = {}
        # Idle connections, longest idle first: a request takes the one idle longest, so the requests rotate
        # over every connection and so over every target (taking the last one back, as a stack, sent nearly
        # everything to whichever node answered fastest)
        self.idle: deque[_Conn] = deque()
        self.ep = select.epoll()
        # schedule: request number j of the current phase is due at phase_t0 + j / rate and is index
        # phase_i0 + j (mod count when cycling)
        self.phase_t0 = 0.0
        self.phase_i0 = 0
        self.next_j = 0
        self.sent_total = 0

    # -- connections ----------------------------------------------------------------------------
    def _connect(self, c: _Conn, now: float) -> None:
        host, port = split_addr(c.addr)
        try:
            sock = socket.create_connection((host, port), timeout=5.0)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c.ctx = {"host": f"{host}:{port}"}
            if self.prepare is not None:
                self.prepare(sock, c.ctx)
            sock.setblocking(False)
        except (OSError, HttpError, ValueError, KeyError) as exc:
            c.retry_at = now + RECONNECT_S
            self.win.note(False, 0.0, now, f"connect: {type(exc).__name__}: {str(exc)[:60]}")
            return
        c.sock, c.fd, c.parser = sock, sock.fileno(), ResponseParser()
        self.by_fd[c.fd] = c
        self.ep.register(c.fd, select.EPOLLIN)
        self.idle.append(c)

    def _drop(self, c: _Conn, now: float, msg: str) -> None:
        if c.due is not None:
            self.win.note(False, now - c.due, now, msg)
            c.due = None
        if c.sock is not None:
            self.by_fd.pop(c.fd, None)
            with contextlib.suppress(OSError):
                self.ep.unregister(c.fd)
            c.sock.close()
            c.sock, c.fd = None, -1
        if c in self.idle:
            self.idle.remove(c)
        c.retry_at = now + RECONNECT_S

    def _reconnect_due(self, now: float) -> None:
        for c in self.conns:
            if c.sock is None and c.retry_at <= now:
                self._connect(c, now)

    # -- the loop -------------------------------------------------------------------------------
    def _send_due(self, now: float) -> None:
        idle, make, win = self.idle, self.make, self.win
        interval = 1.0 / self.rate
        count, cycle = self.count, self.cycle
        while True:
            j = self.next_j
            due = self.phase_t0 + j * interval
            if due > now or due >= self.stop_at:
                return
            i = self.phase_i0 + j
            if count is not None:
                if cycle:
                    i %= count
                elif i >= count:
                    self.stop_at = now
                    return
            if not idle:
                win.no_idle_conn += 1
                return
            c = idle.popleft()
            self.next_j = j + 1
            win.scheduled += 1
            self.sent_total += 1
            if self.sent_total % LAG_SAMPLE_EVERY == 0:
                win.lags_ms.append((now - due) * 1000.0)
            c.due = due
            try:
                assert c.sock is not None
                data = make(i, c.ctx)
                sent = c.sock.send(data, socket.MSG_NOSIGNAL)
                if sent != len(data):  # a 200-byte request into an idle socket: never seen
                    c.sock.setblocking(True)
                    c.sock.sendall(data[sent:])
                    c.sock.setblocking(False)
            except OSError as exc:
                self._drop(c, now, f"send failed: {exc}")

    def _readable(self, fd: int, now: float) -> None:
        c = self.by_fd.get(fd)
        if c is None or c.sock is None:
            return
        try:
            data = c.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as exc:
            self._drop(c, now, f"recv failed: {exc}")
            return
        if not data:
            self._drop(c, now, "connection closed by peer")
            return
        try:
            responses = c.parser.feed(data)
        except (HttpError, ValueError) as exc:
            self._drop(c, now, f"HttpError: {str(exc)[:60]}")
            return
        for status, body in responses:
            if c.due is None:
                self._drop(c, now, "response without a request")
                return
            good = self.check(status, body)
            self.win.note(good, now - c.due, now, "" if good else f"{status} {body[:60]!r}")
            c.due = None
            self.idle.append(c)

    def _command(self, line: str, now: float) -> None:
        msg = json.loads(line)
        if msg["cmd"] == "set":
            interval = 1.0 / self.rate
            # carry on from where the cycle was: the next index of the old phase becomes the new phase's first
            # (taken modulo the old count: modulo the new one it jumped to another place in the cycle, and the
            # instances it skipped waited up to two cycles for a beat)
            i = self.phase_i0 + self.next_j
            if self.cycle and self.count:
                i %= self.count
            self.count = int(msg["count"])
            self.phase_i0 = i % self.count if self.cycle else i
            self.rate = float(msg["rate"])
            # the next request of the old phase was due at this time; keep what was already overdue overdue
            self.phase_t0 = min(now, self.phase_t0 + self.next_j * interval)
            self.next_j = 0
            out: dict[str, Any] = {"ok": True}
        elif msg["cmd"] == "report":
            out = self.summary(now)
            self.win = Window(now, self.bucket_s)
        else:
            out = {"error": f"unknown command {msg['cmd']!r}"}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()

    def run(self) -> dict[str, Any]:
        stopping = []
        signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
        now = time.perf_counter()
        self.win = Window(now, self.bucket_s)
        self.first_start = now
        for c in self.conns:
            self._connect(c, now)
        now = time.perf_counter()
        self.phase_t0 = now
        self.win = Window(now, self.bucket_s)
        self.first_start = now
        if self.duration is not None:
            self.stop_at = now + self.duration
        stdin_fd = -1
        stdin_buf = b""
        if self.control:
            stdin_fd = sys.stdin.fileno()
            os.set_blocking(stdin_fd, False)
            self.ep.register(stdin_fd, select.EPOLLIN)
        poll = self.ep.poll
        reconnect_check = now + RECONNECT_S
        while True:
            now = time.perf_counter()
            if stopping and self.stop_at > now:
                self.stop_at = now
            if now >= self.stop_at:
                break
            if self.idle:
                self._send_due(now)
            if now >= reconnect_check:
                reconnect_check = now + RECONNECT_S
                self._reconnect_due(now)
            next_due = self.phase_t0 + self.next_j / self.rate
            wait = min(MAX_WAIT_S, max(0.0, next_due - time.perf_counter())) if self.idle else MAX_WAIT_S
            events = poll(wait)
            now = time.perf_counter()
            for fd, _ev in events:
                if fd == stdin_fd:
                    try:
                        chunk = os.read(stdin_fd, 65536)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        self.ep.unregister(stdin_fd)
                        stdin_fd = -1
                        self.stop_at = now
                        continue
                    stdin_buf += chunk
                    while b"\n" in stdin_buf:
                        line, stdin_buf = stdin_buf.split(b"\n", 1)
                        if line.strip():
                            self._command(line.decode(), now)
                else:
                    self._readable(fd, now)
        self._drain()
        return self.summary(time.perf_counter())

    def _drain(self) -> None:
        end = time.perf_counter() + DRAIN_S
        while any(c.due is not None for c in self.conns):
            now = time.perf_counter()
            if now >= end:
                for c in self.conns:
                    if c.due is not None:
                        self._drop(c, now, "no answer before the run ended")
                break
            for fd, _ev in self.ep.poll(min(MAX_WAIT_S, end - now)):
                if fd in self.by_fd:
                    self._readable(fd, time.perf_counter())
        for c in self.conns:
            if c.sock is not None:
                c.sock.close()

    def summary(self, now: float) -> dict[str, Any]:
        w = self.win
        elapsed = now - w.start
        ru = resource.getrusage(resource.RUSAGE_SELF)
        cpu = ru.ru_utime + ru.ru_stime - w.cpu0
        total = w.ok + w.failed
        return {
            "connections": len(self.conns),
            "depth": 1,
            "rate_target": self.rate,
            "count": self.count,
            "ok": w.ok,
            "failed": w.failed,
            "scheduled": w.scheduled,
            "no_idle_connection": w.no_idle_conn,
            "errors": dict(sorted(w.errors.items(), key=lambda kv: -kv[1])[:5]),
            "elapsed_s": round(elapsed, 3),
            "ok_per_s": round(w.ok / elapsed, 1) if elapsed > 0 else 0.0,
            "latency_ms": percentiles(w.latencies_ms),
            "send_lag_ms": percentiles(w.lags_ms),
            "bucket_s": w.bucket_s,
            "timeline": w.timeline,
            "cpu_s": round(cpu, 3),
            "cpu_us_per_request": round(cpu / total * 1e6, 1) if total else None,
        }


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50, p90, p99, max and count of ``values`` (None when empty)."""
    if not values:
        return {"p50": None, "p90": None, "p99": None, "max": None, "n": 0}
    v = sorted(values)

    def q(p: float) -> float:
        return round(v[min(len(v) - 1, int(p * len(v)))], 3)

    return {"p50": q(0.50), "p90": q(0.90), "p99": q(0.99), "max": round(v[-1], 3), "n": len(v)}
