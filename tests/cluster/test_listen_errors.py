"""A node that cannot open one of its ports says which one and why, and exits with status 2 (no traceback).

Real ``distro-node`` processes; the port is taken by a real listening socket.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from cluster.tools.launcher import free_ports, node_command

GRPC_OFFSET = 1000
PEER_OFFSET = 1001


@pytest.mark.parametrize(("offset", "what"), [(0, "the HTTP port"), (GRPC_OFFSET, "the gRPC port"),
                                              (PEER_OFFSET, "the peer-link port")])
def test_a_taken_port_is_a_clear_error(tmp_path: Path, offset: int, what: str) -> None:
    (port,) = free_ports(1)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port + offset))
        squatter.listen()
        done = subprocess.run([*node_command(), "--host", "127.0.0.1", "--port", str(port),
                               "--data-dir", str(tmp_path / "data")],
                              capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr[-2000:]
    expected = f"distro-node: cannot listen on 127.0.0.1:{port + offset} ({what}): Address already in use"
    assert expected in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
