"""Fair connections on a real ``distro-node`` (issue 14, finding 3): one address cannot hold every slot, and the
node sizes its connection cap to its file descriptor limit (cluster/node/fdlimit.py).

The server's own mechanisms (per-address cap, shedding idle connections, 503 at EMFILE) are tested on the
bare HTTP server in test_http_server.py; these run the node process as an operator would.
"""

from __future__ import annotations

import os
import re
import resource
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from cluster.node.fdlimit import FD_PER_PEER, MIN_CONNECTIONS, plan_connections
from cluster.tools.launcher import free_ports, node_command

GUARD_S = 30


@contextmanager
def node_process(
    args: Sequence[str], *, nofile: tuple[int, int] | None = None, port: int | None = None
) -> Iterator[tuple[int, Path]]:
    """A ``distro-node`` on 127.0.0.1 (optionally with other descriptor limits): (port, log path)."""
    port = port or free_ports(1)[0]
    folder = Path(tempfile.mkdtemp(prefix="distro-conn-"))
    log = folder / "node.log"

    def limits() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, nofile)

    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTRO_")}
    env["DISTRO_CLUSTER_SECRET"] = "connections-test-cluster-secret-0123456789"
    with log.open("wb") as out:
        proc = subprocess.Popen([*node_command(), "--host", "127.0.0.1", "--port", str(port),
                                 "--advertise-address", f"127.0.0.1:{port}", "--data-dir", str(folder / "data"),
                                 *args], stdout=out, stderr=subprocess.STDOUT, preexec_fn=limits, env=env)
    try:
        deadline = time.monotonic() + GUARD_S
        # polled from an address of its own: its keep-alive connection may still count on the node for a
        # moment after it closes, and must not take one of 127.0.0.1's per-address slots
        with httpx.Client(trust_env=False, timeout=1.0,
                          transport=httpx.HTTPTransport(local_address="127.0.0.3")) as http:
            while True:
                try:
                    if http.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        yield port, log
    finally:
        proc.terminate()
        proc.wait(10)


def idle_connection(port: int, source: str = "127.0.0.1") -> socket.socket:
    """A connection that made one keep-alive request and now sits idle."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    return sock


def status_of(sock: socket.socket) -> int:
    """The status of the response waiting on ``sock`` (0 when the server closed without one)."""
    data = b""
    while b"\r\n" not in data:
        try:
            chunk = sock.recv(4096)
        except ConnectionResetError:
            return 0
        if not chunk:
            return 0
        data += chunk
    return int(data.split(b" ", 2)[1])


def test_one_address_holding_idle_sockets_does_not_lock_others_out() -> None:
    # The outside check: more idle keep-alive sockets from one address than --max-connections, while
    # another address asks for /healthz.
    with node_process(["--max-connections", "40", "--max-connections-per-ip", "10"]) as (port, log):
        hog = [idle_connection(port) for _ in range(50)]
        statuses = [status_of(sock) for sock in hog]
        assert statuses.count(200) == 10 and statuses.count(503) + statuses.count(0) == 40
        with httpx.Client(trust_env=False, transport=httpx.HTTPTransport(local_address="127.0.0.2")) as other:
            assert other.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
            text = other.get(f"http://127.0.0.1:{port}/metrics").text
        assert "distro_http_rejected_per_ip_total 40" in text
        for sock in hog:
            sock.close()
        assert "client connections at most 40 (asked 40), 10 per client address (asked 10)" in log.read_text()


def test_the_node_raises_its_soft_limit_and_keeps_connections_below_it() -> None:
    with node_process(["--max-connections", "4096", "--fd-reserve", "200"], nofile=(256, 1024)) as (_, log):
        text = log.read_text()
        assert "soft limit raised from 256 to 1024" in text
        assert "client connections at most 824 (asked 4096), 412 per client address (asked 1024)" in text
    # a hard limit too low for the reserve still leaves a few connections
    with node_process([], nofile=(200, 200)) as (port, log):
        match = re.search(r"client connections at most (\d+)", log.read_text())
        assert match is not None and int(match.group(1)) == MIN_CONNECTIONS
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", trust_env=False).status_code == 200


def test_peer_links_are_accepted_while_clients_hold_every_http_connection() -> None:
    # Issue 14, finding 3: at the soft file limit, HTTP connections took the last descriptors and peer
    # links could not be accepted (nor dialled). The reserve keeps room for them.
    ports = free_ports(2)
    peers = ",".join(f"127.0.0.1:{port}" for port in ports)
    common = ["--peers", peers, "--snapshot-timeout-ms", "500"]
    with node_process([*common, "--node-id", "crowded", "--fd-reserve", "200"], nofile=(300, 300),
                      port=ports[1]) as (crowded, log):
        cap = 300 - 200 - 2 * FD_PER_PEER
        assert f"client connections at most {cap} " in log.read_text()
        held = [idle_connection(crowded, f"127.0.0.{1 + i % 4}") for i in range(320)]  # more than 300 fds
        for sock in held:
            status_of(sock)
        http = httpx.Client(trust_env=False, transport=httpx.HTTPTransport(local_address="127.0.0.9"))
        metrics = http.get(f"http://127.0.0.1:{crowded}/metrics").text
        assert f"distro_http_connections_open {cap}" in metrics  # every client slot is taken
        with node_process([*common, "--node-id", "other"], port=ports[0]) as (other, _):
            deadline = time.monotonic() + GUARD_S
            while True:  # both ends of the link up: the crowded node accepted it, or dialled it, or both
                servers = http.get(f"http://127.0.0.1:{other}/nacos/v1/ns/operator/servers").json()["servers"]
                if [s["state"] for s in servers] == ["UP", "UP"]:
                    break
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.1)
        http.close()
        for sock in held:
            sock.close()


def test_plans() -> None:
    plan = plan_connections(1024, max_connections=4096, max_connections_per_ip=1024, fd_reserve=256, peers=2)
    assert (plan.max_connections, plan.max_connections_per_ip, plan.reserve) == (
        1024 - 256 - 2 * FD_PER_PEER, (1024 - 256 - 2 * FD_PER_PEER) // 2, 256 + 2 * FD_PER_PEER)
    roomy = plan_connections(1 << 20, max_connections=4096, max_connections_per_ip=1024, fd_reserve=256, peers=2)
    assert (roomy.max_connections, roomy.max_connections_per_ip) == (4096, 1024)
    tight = plan_connections(100, max_connections=4096, max_connections_per_ip=1024, fd_reserve=256, peers=0)
    assert (tight.max_connections, tight.max_connections_per_ip) == (MIN_CONNECTIONS, MIN_CONNECTIONS // 2)
    unlimited = plan_connections(resource.RLIM_INFINITY, max_connections=50, max_connections_per_ip=9,
                                 fd_reserve=256, peers=0)
    assert (unlimited.max_connections, unlimited.max_connections_per_ip) == (50, 9)
