"""The load generator's open loop steered over stdin (``loadgen --control``, benchlib/openloop.py), as the
heartbeat ramp drives it: beats cycle over the instances, ``set`` widens the cycle to new ones, ``report``
counts a window. Against a tiny beat server in a thread; nothing about speed is asserted."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import IO, Any

from tests.polling import wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from benchlib.openloop import OpenLoop, Window

ROOT = Path(__file__).resolve().parents[2]
ANSWER = b'{"clientBeatInterval":5000,"code":10200,"lightBeatEnabled":true}'
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER)
IP = re.compile(rb"ip=10\.(\d+)\.(\d+)\.(\d+)")


class BeatServer:
    """Answers every request with a 10200 beat answer and counts the beats per instance number."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.beats: Counter[int] = Counter()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buf += data
                while b"\r\n\r\n" in buf:
                    head, buf = buf.split(b"\r\n\r\n", 1)
                    m = IP.search(head)
                    if m:
                        g = (int(m[1]) << 16) | (int(m[2]) << 8) | int(m[3])
                        with self.lock:
                            self.beats[g] += 1
                    conn.sendall(RESPONSE)

    def seen(self) -> set[int]:
        with self.lock:
            return set(self.beats)

    def close(self) -> None:
        self.listener.close()


def ask(proc: subprocess.Popen[str], msg: dict[str, Any]) -> dict[str, Any]:
    stdin: IO[str] | None = proc.stdin
    stdout: IO[str] | None = proc.stdout
    assert stdin is not None and stdout is not None
    stdin.write(json.dumps(msg) + "\n")
    stdin.flush()
    line = stdout.readline()
    assert line, proc.stderr.read() if proc.stderr else "no answer"
    out: dict[str, Any] = json.loads(line)
    return out


def test_steered_beats_cycle_widen_and_report() -> None:
    server = BeatServer()
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchlib.loadgen", "--workload", "distro-beat", "--targets",
         f"127.0.0.1:{server.port}", "--connections", "8", "--rate", "400", "--count", "50", "--duration", "600",
         "--services", "10", "--prefix", "hb", "--control"],
        cwd=ROOT, env={"PYTHONPATH": f"{ROOT / 'scripts'}:{ROOT}", "PATH": "/usr/bin:/bin"},
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_until(lambda: server.seen() == set(range(50)), "every one of the first 50 instances beaten")
        first = ask(proc, {"cmd": "report"})
        assert first["ok"] > 0 and first["failed"] == 0 and first["scheduled"] >= first["ok"]
        assert first["count"] == 50 and first["rate_target"] == 400

        assert ask(proc, {"cmd": "set", "count": 120, "rate": 600}) == {"ok": True}
        wait_until(lambda: server.seen() == set(range(120)), "the cycle widened to 120 instances")
        second = ask(proc, {"cmd": "report"})
        assert second["count"] == 120 and second["rate_target"] == 600
        assert second["failed"] == 0 and second["ok"] > 0
        assert second["latency_ms"]["n"] == second["ok"]
        assert max(server.seen()) == 119  # never past the count
    finally:
        if proc.stdin is not None:
            proc.stdin.close()  # the run ends when its stdin closes
        proc.wait(timeout=30)
        server.close()
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""


def test_a_bounded_open_loop_sends_each_request_once() -> None:
    server = BeatServer()
    try:
        out = subprocess.run(
            [sys.executable, "-m", "benchlib.loadgen", "--workload", "distro-register", "--targets",
             f"127.0.0.1:{server.port}", "--connections", "4", "--rate", "500", "--count", "200", "--base", "1000",
             "--duration", "600", "--services", "10", "--prefix", "hb"],
            cwd=ROOT, env={"PYTHONPATH": f"{ROOT / 'scripts'}:{ROOT}", "PATH": "/usr/bin:/bin"},
            capture_output=True, text=True, timeout=120, check=True,
        )
    finally:
        server.close()
    summary = json.loads(out.stdout)
    # the beat server's answer is not "ok", so every registration counts as failed: what matters is how many
    assert summary["ok"] + summary["failed"] == 200 and summary["scheduled"] == 200
    assert set(server.beats) == set(range(1000, 1200)) and set(server.beats.values()) == {1}


def test_widening_the_cycle_carries_on_from_where_it_was() -> None:
    """``set`` continues the cycle at the instance that was next: 2.5 cycles into 1,000 instances that is
    instance 500, whatever the new count (modulo the new count it was 2,500 % 1,200 = 100, and instances
    100-499 waited a second cycle for their beat)."""
    loop = OpenLoop(["127.0.0.1:9"], 1, rate=200.0, count=1000, duration=None,
                    make=lambda i, ctx: b"", check=lambda status, body: True, control=True, cycle=True)
    loop.next_j = 2500
    loop._command(json.dumps({"cmd": "set", "count": 1200, "rate": 240.0}), now=20.0)
    assert loop.phase_i0 == 500 and loop.count == 1200 and loop.next_j == 0
    assert loop.phase_t0 == 12.5  # the next beat was due at 2,500 / 200 s, and stays due then


class _CountingSocket:
    """Takes every request whole and counts them."""

    def __init__(self) -> None:
        self.sent = 0

    def send(self, data: bytes, flags: int = 0) -> int:
        self.sent += 1
        return len(data)


def test_requests_rotate_over_the_idle_connections() -> None:
    """A due request takes the connection idle longest, so requests spread over every connection (and so every
    target); taking the one that came back last sent nearly everything to whichever node answered fastest."""
    loop = OpenLoop([f"127.0.0.{t}:9" for t in (1, 2, 3)], 6, rate=1000.0, count=100, duration=None,
                    make=lambda i, ctx: b"x", check=lambda status, body: True, cycle=True)
    loop.win = Window(0.0, 0.25)
    sockets = []
    for c in loop.conns:
        sock = _CountingSocket()
        sockets.append(sock)
        c.sock = sock  # type: ignore[assignment]
        loop.idle.append(c)
    for step in range(1, 31):
        loop._send_due(step / 1000.0)
        for c in loop.conns:  # each answered at once: idle again, at the back
            if c.due is not None:
                c.due = None
                loop.idle.append(c)
    sent = [s.sent for s in sockets]
    assert sum(sent) == 31 and max(sent) - min(sent) <= 1, sent  # due at 0, 1, ..., 30 ms
