"""Switches are cluster data: a real ``distro-node`` with a data folder keeps a changed switch across a
restart (SIGTERM, then start again on the same folder)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from cluster.tools.launcher import LocalNode, free_ports

NS = "/nacos/v1/ns"


def _wait_ready(node: LocalNode, client: httpx.Client) -> None:
    deadline = time.monotonic() + 30
    while not node.is_ready(client):
        assert node.running() and time.monotonic() < deadline, node.log_tail()
        time.sleep(0.05)


def test_a_changed_switch_survives_a_restart(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    node = LocalNode("sw1", port, [], "", data_dir=tmp_path / "data", log_path=tmp_path / "sw1.log",
                     die_with_parent=True, hermetic_env=True)
    node.start()
    try:
        with httpx.Client(timeout=5) as client:
            _wait_ready(node, client)
            put = client.put(f"{node.url}{NS}/operator/switches", params={"entry": "pushVersion", "value": "java:2.3.4"})
            assert (put.status_code, put.text) == (200, "ok")
            node.stop()
            node.start()
            _wait_ready(node, client)
            domain = client.get(f"{node.url}{NS}/operator/switches").json()
            assert domain["pushJavaVersion"] == "2.3.4"
            assert domain["pushGoVersion"] == "0.1.0"  # untouched switches keep their defaults
    finally:
        node.stop()
