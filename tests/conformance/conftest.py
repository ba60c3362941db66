"""Real ``distro-node`` processes for the conformance suite, started with the project's launcher.

- ``open_node``: one node without auth (shared by the whole suite; every case uses its own service names);
- ``auth_node``: one node with ``--auth`` (the admin user ``nacos`` and :data:`PASSWORD`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cluster.tools.launcher import LocalNode, free_ports

PASSWORD = "conformance-password"
TOKEN_SECRET = "conformance-token-secret-of-32-bytes!"
START_TIMEOUT_S = 30.0


def _start(node_id: str, log_dir: Path, *args: str) -> LocalNode:
    (port,) = free_ports(1)
    node = LocalNode(node_id, port, [], "", node_args=args, log_path=log_dir / f"{node_id}.log",
                     die_with_parent=True, hermetic_env=True)
    node.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    with httpx.Client(timeout=2.0) as client:
        while not node.is_ready(client):
            if not node.running() or time.monotonic() > deadline:
                node.stop()
                pytest.fail(f"{node_id} did not become ready:\n{node.log_tail()}")
            time.sleep(0.05)
    return node


@pytest.fixture(scope="session")
def open_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNode]:
    node = _start("conf-open", tmp_path_factory.mktemp("conformance"))
    yield node
    node.stop()


@pytest.fixture(scope="session")
def auth_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNode]:
    node = _start("conf-auth", tmp_path_factory.mktemp("conformance-auth"), "--auth",
                  "--token-secret", TOKEN_SECRET, "--admin-password", PASSWORD)
    yield node
    node.stop()
