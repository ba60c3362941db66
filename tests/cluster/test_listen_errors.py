"""A node that cannot open one of its ports says which one and why, and exits with status 2 (no traceback).

Real ``distro-node`` processes; the port is taken by a real listening socket.
"""

from __future__ import annotations

import errno
import socket
import subprocess
from functools import partial
from pathlib import Path

import pytest
import trio

from cluster.node import listeners
from cluster.tools.launcher import ephemeral_port_range, free_ports, node_command, port_is_free

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


def test_port_pair_on_port_0_moves_on_when_the_second_port_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    """A node on port 0 (tests, embedded use) takes a port whose gRPC port is free: when the port the kernel
    picked has its +offset taken (here by a real socket bound the moment the first port is picked, as an
    outgoing connection might), both are closed and another is tried instead of failing the start."""
    real_open = listeners.open_listeners
    squatters: list[socket.socket] = []
    taken: list[int] = []

    async def open_then_squat(host: str, port: int, *, backlog: int, what: str = "port") -> list[socket.socket]:
        opened = await real_open(host, port, backlog=backlog, what=what)
        if port == 0 and not taken:  # the first pick: its gRPC port gets taken at once
            grpc_port = int(opened[0].getsockname()[1]) + GRPC_OFFSET
            squatter = socket.socket()
            squatters.append(squatter)
            try:
                squatter.bind(("127.0.0.1", grpc_port))
                squatter.listen()
            except OSError as exc:  # something on the machine holds it already: taken all the same
                assert exc.errno == errno.EADDRINUSE
            taken.append(grpc_port)
        return opened

    monkeypatch.setattr(listeners, "open_listeners", open_then_squat)

    async def main() -> None:
        first, second = await listeners.open_listener_pair(
            "127.0.0.1", 0, GRPC_OFFSET, backlogs=(8, 8), whats=("the HTTP port", "the gRPC port")
        )
        try:
            port = first[0].getsockname()[1]
            assert second[0].getsockname()[1] == port + GRPC_OFFSET
            assert port + GRPC_OFFSET != taken[0]  # moved on from the taken pair
        finally:
            for sock in first + second:
                sock.close()

    try:
        trio.run(main)
    finally:
        for squatter in squatters:
            squatter.close()
    assert len(taken) == 1


def test_port_pair_on_a_fixed_port_names_the_taken_one_and_keeps_nothing_open() -> None:
    (port,) = free_ports(1)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port + GRPC_OFFSET))
        squatter.listen()
        with pytest.raises(listeners.ListenError, match=f"127.0.0.1:{port + GRPC_OFFSET} \\(the gRPC port\\)"):
            trio.run(partial(listeners.open_listener_pair, "127.0.0.1", port, GRPC_OFFSET, backlogs=(8, 8),
                             whats=("the HTTP port", "the gRPC port")))
    assert port_is_free(port)  # the HTTP port opened first was closed again


def test_free_ports_lie_outside_the_ephemeral_range_with_their_offsets() -> None:
    """Ports picked for nodes (and their gRPC and peer-link ports) are never in the range the kernel takes
    source ports of outgoing connections from, so no connection can take one before its node binds it."""
    low, high = ephemeral_port_range()
    ports = free_ports(20)
    assert len(set(ports)) == 20
    for port in ports:
        for member in (port, port + GRPC_OFFSET, port + PEER_OFFSET):
            assert not low <= member <= high, (member, low, high)
    assert not set(ports) & set(free_ports(20))  # never handed out twice by one process
