"""The pause probe (benchlib.pauseprobe) against a tiny /healthz server in the same trio run: it records each
node's answers and its own late wake-ups, so a stall of the probe's process is told from a node's. Nothing
about speed is asserted: the stall is made on purpose (the probe's loop blocked for 150 ms)."""

from __future__ import annotations

import sys
import time
from functools import partial
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from benchlib import pauseprobe

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def _serve_healthz(stream: trio.SocketStream) -> None:
    buffered = b""
    async with stream:
        while True:
            data = await stream.receive_some(4096)
            if not data:
                return
            buffered += data
            while b"\r\n\r\n" in buffered:
                _, buffered = buffered.split(b"\r\n\r\n", 1)
                await stream.send_all(ANSWER)


def test_a_stall_of_the_probe_itself_shows_in_its_own_lag() -> None:
    async def main() -> dict[str, object]:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, _serve_healthz, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            result: dict[str, object] = {}

            async def probe() -> None:
                result.update(await pauseprobe.run([f"127.0.0.1:{port}"], 0.01, 0.6))

            async def stall_the_probe() -> None:
                await trio.sleep(0.2)
                time.sleep(0.15)  # the probe's own process stops: this is the stall being measured

            async with trio.open_nursery() as probing:
                probing.start_soon(probe)
                probing.start_soon(stall_the_probe)
            nursery.cancel_scope.cancel()
        return result

    result = trio.run(main)
    lag = result["probe_lag"]
    assert isinstance(lag, dict)
    assert lag["n"] > 10 and lag["over_50ms"] >= 1
    worst_ms, at_s = lag["slowest"][0]
    assert worst_ms >= 100 and 0.1 <= at_s <= 0.4
    node = next(iter(result["nodes"].values()))  # type: ignore[attr-defined]
    assert node["n"] > 10 and node["errors"] == 0
