"""Fixtures that run real ``distro-node`` processes on 127.0.0.1 (via :mod:`cluster.tools.localcluster` and :mod:`cluster.tools.launcher`).

- ``cluster``: three nodes ``n1..n3`` shared by the tests of one module (use unique service names).
- ``fresh_cluster``: three nodes for one test only (for tests that kill or restart nodes).

Both use small timing knobs (instances unhealthy after 3 s without beats, removed after 6 s) and write each
node's log to a file under the test's temporary directory; when a test fails, the logs are printed.
"""

from __future__ import annotations

import statistics
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from cluster.tools.launcher import ClusterError, LocalNode, free_ports
from cluster.tools.localcluster import LocalCluster
from tests.polling import wait_until

NS = "/nacos/v1/ns"
HEARTBEAT_TIMEOUT_S = 3.0
INSTANCE_EXPIRE_S = 6.0
NODE_ARGS = (
    "--heartbeat-timeout-ms", "3000",
    "--instance-expire-ms", "6000",
    "--verify-interval-ms", "1000",
    "--peer-timeout-ms", "1500",
    "--ping-interval-ms", "250",
    "--snapshot-timeout-ms", "1500",
    "--log-level", "INFO",
)
START_TIMEOUT_S = 30.0

T = TypeVar("T")

# Figures worth reporting (printed in the terminal summary).
MEASUREMENTS: list[str] = []


def unique(prefix: str) -> str:
    """A service name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def summarize(label: str, seconds: list[float]) -> str:
    """``label: n=.. median=.. ms max=.. ms`` (and remembered for the terminal summary)."""
    text = (
        f"{label}: n={len(seconds)} median={statistics.median(seconds) * 1000:.1f} ms "
        f"p90={sorted(seconds)[int(0.9 * (len(seconds) - 1))] * 1000:.1f} ms max={max(seconds) * 1000:.1f} ms"
    )
    MEASUREMENTS.append(text)
    return text


class RunningCluster:
    """A started :class:`LocalCluster` with an HTTP client and Nacos-API helpers."""

    def __init__(self, local: LocalCluster) -> None:
        self.local = local
        self.http = httpx.Client(timeout=5.0)

    @property
    def nodes(self) -> list[LocalNode]:
        return self.local.nodes

    @property
    def addresses(self) -> list[str]:
        return self.local.addresses

    def close(self) -> None:
        self.http.close()
        self.local.stop(timeout_s=5.0)

    # -- API helpers -----------------------------------------------------------------------------
    def call(self, node: LocalNode, method: str, path: str, **params: Any) -> httpx.Response:
        query = {k: v for k, v in params.items() if v is not None}
        return self.http.request(method, f"{node.url}{path}", params=query)

    def register(self, node: LocalNode, service: str, ip: str, port: int, **params: Any) -> httpx.Response:
        response = self.call(node, "POST", f"{NS}/instance", serviceName=service, ip=ip, port=port, **params)
        assert response.status_code == 200 and response.text == "ok", (response.status_code, response.text)
        return response

    def deregister(self, node: LocalNode, service: str, ip: str, port: int, **params: Any) -> None:
        response = self.call(node, "DELETE", f"{NS}/instance", serviceName=service, ip=ip, port=port, **params)
        assert response.status_code == 200 and response.text == "ok", (response.status_code, response.text)

    def hosts(self, node: LocalNode, service: str, **params: Any) -> list[dict[str, Any]]:
        response = self.call(node, "GET", f"{NS}/instance/list", serviceName=service, **params)
        assert response.status_code == 200, (response.status_code, response.text)
        hosts: list[dict[str, Any]] = response.json()["hosts"]
        return hosts

    def host(self, node: LocalNode, service: str, ip: str, port: int) -> dict[str, Any] | None:
        return next((h for h in self.hosts(node, service) if h["ip"] == ip and h["port"] == port), None)

    def owner_address(self, node: LocalNode, service: str) -> str:
        response = self.call(node, "GET", f"{NS}/operator/distro/server", serviceName=service)
        assert response.status_code == 200, (response.status_code, response.text)
        address: str = response.json()["responsibleServer"]
        return address

    def owner(self, service: str) -> LocalNode:
        """The owner every running node agrees on."""
        running = [n for n in self.nodes if n.running()]

        def agreed() -> str | None:
            owners = {self.owner_address(n, service) for n in running}
            return owners.pop() if len(owners) == 1 else None

        return self.local.by_address(wait_until(agreed, f"nodes to agree on the owner of {service}"))

    def ready(self, node: LocalNode) -> bool:
        return node.is_ready(self.http)

    def peers_up(self, node: LocalNode) -> int:
        servers = self.call(node, "GET", f"{NS}/operator/servers").json()["servers"]
        return sum(1 for s in servers if s["state"] == "UP" and not s["self"])

    def wait_settled(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Every running node is ready and sees every other running node up."""
        running = [n for n in self.nodes if n.running()]
        wait_until(
            lambda: all(self.ready(n) and self.peers_up(n) == len(running) - 1 for n in running),
            "every node ready with all peers up", timeout_s,
        )

    # -- process control -------------------------------------------------------------------------
    def kill9(self, node: LocalNode) -> None:
        node.kill()

    def restart(self, node: LocalNode, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start a stopped or killed node again and wait for its /readyz."""
        node.restart()
        wait_until(lambda: self.ready(node) or node.returncode() is not None, f"{node.node_id} to start", timeout_s)
        assert node.running(), f"{node.node_id} exited with {node.returncode()}:\n{node.log_tail()}"

    def dump_logs(self) -> str:
        parts = []
        for node in self.nodes:
            parts.append(f"===== {node.node_id} {node.address} pid={node.pid} rc={node.returncode()} "
                         f"log={node.log_path} =====\n{node.log_tail(200)}")
        return "\n".join(parts)


class Beater(threading.Thread):
    """A client that light-beats every second through one node and re-registers on code 20404."""

    def __init__(
        self, node: LocalNode, service: str, ip: str, port: int, *, interval_s: float = 1.0, **extra: str
    ) -> None:
        super().__init__(daemon=True)
        self.node, self.service, self.ip, self.port = node, service, ip, port
        self.interval_s = interval_s
        self.extra = extra
        self.stop_event = threading.Event()
        self.beats = 0
        self.reregistered = 0
        self.errors: list[str] = []

    def run(self) -> None:
        with httpx.Client(timeout=5.0) as http:
            while not self.stop_event.wait(self.interval_s):
                params = {"serviceName": self.service, "ip": self.ip, "port": self.port, **self.extra}
                try:
                    response = http.put(f"{self.node.url}{NS}/instance/beat", params=params)
                    if response.status_code != 200:
                        self.errors.append(f"beat: {response.status_code} {response.text}")
                        continue
                    self.beats += 1
                    if response.json().get("code") == 20404:
                        self.reregistered += 1
                        again = http.post(f"{self.node.url}{NS}/instance", params=params)
                        if again.text != "ok":
                            self.errors.append(f"re-register: {again.status_code} {again.text}")
                except (httpx.HTTPError, ValueError) as exc:
                    self.errors.append(f"beat: {exc!r}")

    def stop(self) -> None:
        self.stop_event.set()
        if self.ident is not None:  # started
            self.join(10)


def start_cluster(log_dir: Path, count: int = 3) -> RunningCluster:
    local = LocalCluster(free_ports(count), node_args=NODE_ARGS, log_dir=log_dir, hermetic_env=True)
    try:
        local.start_with_retries(START_TIMEOUT_S)
    except ClusterError as exc:
        logs = "\n".join(f"===== {n.node_id}\n{n.log_tail(100)}" for n in local.nodes)
        pytest.fail(f"cluster did not start: {exc}\n{logs}")
    running = RunningCluster(local)
    try:
        running.wait_settled()
    except AssertionError:
        logs = running.dump_logs()
        running.close()
        pytest.fail(f"cluster did not settle:\n{logs}")
    return running


_SHARED: list[RunningCluster] = []  # module-scoped clusters alive now


def _failed(request: pytest.FixtureRequest) -> bool:
    report = getattr(request.node, "rep_call", None)
    return report is not None and bool(report.failed)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    running = start_cluster(tmp_path_factory.mktemp("cluster"))
    _SHARED.append(running)
    yield running
    _SHARED.remove(running)
    running.close()


@pytest.fixture
def fresh_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningCluster]:
    running = start_cluster(tmp_path / "nodes")
    yield running
    running.close()
    if _failed(request):
        print(f"\n----- node logs (fresh_cluster) -----\n{running.dump_logs()}", file=sys.stderr)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(autouse=True)
def _print_logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if _failed(request) and "cluster" in request.fixturenames:
        for running in _SHARED:
            print(f"\n----- node logs (shared cluster) -----\n{running.dump_logs()}", file=sys.stderr)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if MEASUREMENTS:
        terminalreporter.section("distro integration measurements")
        for line in MEASUREMENTS:
            terminalreporter.write_line(line)
