"""The Java client 1.4.2 trap of a short heartbeat timeout (issue 12): a node whose timeout is below twice
the beat interval it announces warns at start (a real ``distro-node`` process), naming the fix."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from cluster.node.settings import beat_timing_warning, parse_settings
from cluster.tools.launcher import LocalNode, free_ports


def test_the_warning_follows_the_two_knobs() -> None:
    def warning(*argv: str) -> str | None:
        return beat_timing_warning(parse_settings(["--port", "18848", *argv]).core)

    text = warning("--heartbeat-timeout-ms", "3000", "--instance-expire-ms", "6000")
    assert text is not None and "--heartbeat-timeout-ms 3000" in text and "--client-beat-interval-ms 1000" in text
    assert warning() is None  # 15000 against 5000
    assert warning("--heartbeat-timeout-ms", "10000") is None  # exactly twice is enough
    assert warning("--heartbeat-timeout-ms", "3000", "--client-beat-interval-ms", "1000") is None


def test_a_node_started_with_a_short_timeout_logs_the_warning(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    node = LocalNode("w1", port, [], "", node_args=("--heartbeat-timeout-ms", "3000", "--instance-expire-ms", "6000"),
                     log_path=tmp_path / "w1.log", die_with_parent=True)
    node.start()
    try:
        deadline = time.monotonic() + 30
        with httpx.Client(timeout=2) as client:
            while not node.is_ready(client):
                assert node.running() and time.monotonic() < deadline, node.log_tail()
                time.sleep(0.05)
        assert "is less than twice the beat interval announced to clients" in node.log_text()
    finally:
        node.stop()
