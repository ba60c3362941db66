"""Run a registry cluster as local ``distro-node`` processes on one machine.

Used by ``distroctl local-cluster`` and by the integration tests (tests/integration). Each node is a
child process started by :mod:`cluster.tools.launcher`, listening on ``host:port`` (HTTP),
``host:port+1000`` (Nacos 2.x gRPC) and ``host:port+1001`` (peer link), with node ids ``n1..nN`` and a cluster secret generated here (passed
through the environment, never on the command line, so ``ps`` does not show it).

    cluster = LocalCluster([8848, 8858, 8868], log_dir=Path("/tmp/logs"))
    cluster.start()
    cluster.wait_ready(timeout_s=30)
    ...
    cluster.stop()
"""

from __future__ import annotations

import secrets
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx

from cluster.tools.launcher import (
    LOCALHOST,
    ClusterError,
    LocalNode,
    free_ports,
    port_is_free,
)


class LocalCluster:
    """N local nodes ``n1..nN`` that list each other as peers."""

    def __init__(
        self,
        ports: Sequence[int],
        *,
        host: str = LOCALHOST,
        secret: str | None = None,
        node_args: Sequence[str] = (),
        log_dir: Path | None = None,
        die_with_parent: bool = False,
        own_process_group: bool = False,
        hermetic_env: bool = False,
        data_root: Path | None = None,
    ) -> None:
        if not ports:
            raise ClusterError("a cluster needs at least one node")
        self.host = host
        self.secret = secret or secrets.token_hex(32)
        self.node_args = tuple(node_args)
        self.log_dir = log_dir
        self.die_with_parent = die_with_parent
        self.own_process_group = own_process_group
        self.hermetic_env = hermetic_env
        self.data_root = data_root  # each node's --data-dir is data_root/nN (else a temporary folder)
        self.nodes: list[LocalNode] = []
        self._build(list(ports))

    def _build(self, ports: list[int]) -> None:
        peers = [f"{self.host}:{port}" for port in ports]
        self.nodes = [
            LocalNode(
                f"n{index}",
                port,
                peers,
                self.secret,
                host=self.host,
                node_args=self.node_args,
                log_path=None if self.log_dir is None else self.log_dir / f"n{index}.log",
                die_with_parent=self.die_with_parent,
                own_process_group=self.own_process_group,
                hermetic_env=self.hermetic_env,
                data_dir=None if self.data_root is None else self.data_root / f"n{index}",
            )
            for index, port in enumerate(ports, start=1)
        ]

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __iter__(self) -> Iterator[LocalNode]:
        return iter(self.nodes)

    @property
    def addresses(self) -> list[str]:
        """Every node's ``host:port``."""
        return [node.address for node in self.nodes]

    def node(self, node_id: str) -> LocalNode:
        """The node with this id."""
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(node_id)

    def by_address(self, address: str) -> LocalNode:
        """The node with this ``host:port``."""
        for node in self.nodes:
            if node.address == address:
                return node
        raise KeyError(address)

    def check_ports_free(self) -> None:
        """Raise ClusterError naming the first HTTP, gRPC or peer-link port already taken."""
        for node in self.nodes:
            for port, what in ((node.port, "HTTP"), (node.grpc_port, "gRPC"), (node.peer_port, "peer link")):
                if not port_is_free(port, self.host):
                    raise ClusterError(
                        f"port {port} on {self.host} ({what} port of {node.node_id}) is already in use"
                    )

    def start(self) -> None:
        """Start every node."""
        for node in self.nodes:
            node.start()

    def wait_ready(
        self,
        timeout_s: float = 60.0,
        *,
        interrupted: Callable[[], bool] = lambda: False,
        poll_s: float = 0.05,
    ) -> float:
        """Poll every node's ``/readyz`` until all answer 200; the seconds it took.

        Raises ClusterError when a node exits first (with its log tail) or at the deadline (naming the
        nodes not ready); returns early (without raising) when ``interrupted()`` turns true.
        """
        started = time.monotonic()
        deadline = started + timeout_s
        pending = list(self.nodes)
        with httpx.Client(timeout=1.0) as client:
            while pending:
                if interrupted():
                    break
                for node in list(pending):
                    code = node.returncode()
                    if code is not None:
                        tail = node.log_tail()
                        raise ClusterError(
                            f"node {node.node_id} ({node.address}) exited with code {code} before it was ready"
                            + (f"; last log lines:\n{tail}" if tail else "")
                        )
                    if node.is_ready(client):
                        pending.remove(node)
                if not pending:
                    break
                if time.monotonic() > deadline:
                    names = ", ".join(f"{n.node_id} ({n.address})" for n in pending)
                    raise ClusterError(f"not ready within {timeout_s:g} s: {names}")
                time.sleep(poll_s)
        return time.monotonic() - started

    def start_with_retries(self, timeout_s: float = 60.0, attempts: int = 3) -> None:
        """Start and wait for readiness; when a node could not bind its ports, pick new free ports and retry.

        Only sensible for clusters built on :func:`free_ports` (the ports change between attempts).
        """
        for attempt in range(1, attempts + 1):
            self.start()
            try:
                self.wait_ready(timeout_s)
                return
            except ClusterError:
                self.stop()
                logs = "\n".join(node.log_text(current_run_only=True) for node in self.nodes)
                bind_failed = "Address already in use" in logs or "Errno 98" in logs
                if attempt == attempts or not bind_failed:
                    raise
                self._build(free_ports(len(self.nodes), host=self.host))

    def stop(self, timeout_s: float = 10.0, *, force: Callable[[], bool] = lambda: False) -> dict[str, int | None]:
        """SIGTERM every running node, wait up to ``timeout_s`` in all, SIGKILL the rest; exit codes by id.

        ``force()`` turning true (a second Ctrl-C) kills the remaining nodes at once.
        """
        for node in self.nodes:
            node.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while any(node.running() for node in self.nodes) and time.monotonic() < deadline and not force():
            time.sleep(0.02)
        for node in self.nodes:
            node.kill()
        return {node.node_id: node.returncode() for node in self.nodes}


__all__ = ["LocalCluster"]
