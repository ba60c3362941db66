"""``distroctl`` as a user runs it: a subprocess against a real cluster, and ``local-cluster`` itself."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import httpx
import pytest

from cluster.tools.launcher import free_port_range, free_ports, port_is_free

from .conftest import INSTANCE_EXPIRE_S, Beater, RunningCluster, unique, wait_until

pytestmark = pytest.mark.slow

DISTROCTL = Path(sys.executable).parent / "distroctl"


def ctl(*args: str, servers: list[str] | None = None, timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTRO_")}
    if servers is not None:
        env["DISTRO_SERVERS"] = ",".join(servers)
    return subprocess.run([str(DISTROCTL), *args], capture_output=True, text=True, timeout=timeout_s, env=env)


class LineReader:
    """Collects a pipe's lines on a thread, so a test can wait for one with a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, predicate_text: str, timeout_s: float = 20.0) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            for line in self.lines:
                if predicate_text in line:
                    self.lines.remove(line)
                    return line
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line with {predicate_text!r} within {timeout_s} s; got {self.lines}")
            try:
                item = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if item is None:
                raise AssertionError(f"output ended without {predicate_text!r}; got {self.lines}")
            self.lines.append(item)


def _popen_ctl(*args: str) -> tuple[subprocess.Popen[str], LineReader]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTRO_")}
    process = subprocess.Popen([str(DISTROCTL), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=env)
    return process, LineReader(process.stdout)  # type: ignore[arg-type]


def test_register_keepalive_list_services_members(cluster: RunningCluster) -> None:
    """``register --keepalive`` keeps the instance alive past the 6 s expiry; Ctrl-C deregisters it."""
    service = unique("ctl")
    n1, n2, n3 = cluster.addresses
    keeper, keeper_out = _popen_ctl("--server", n1, "register", service, "10.8.0.1", "8080", "--metadata",
                                    "zone=a,v=2", "--weight", "2.5", "--cluster", "c1", "--keepalive",
                                    "--beat-interval", "0.5")
    try:
        line = keeper_out.wait_for("registered ")
        assert line == f"registered 10.8.0.1:8080 (cluster c1) in DEFAULT_GROUP@@{service} via {n1}"
        keeper_out.wait_for("beating every 0.5 s")
        registered_at = time.monotonic()

        def listed_on_n3() -> str | None:
            out = ctl("list", service, servers=[n3])
            return out.stdout if "10.8.0.1:8080" in out.stdout else None

        text = wait_until(listed_on_n3, "distroctl list on n3 to show the instance")
        row = next(line for line in text.splitlines() if line.startswith("10.8.0.1:8080"))
        assert row.split() == ["10.8.0.1:8080", "c1", "2.5", "true", "true", "v=2,zone=a"]

        as_json = ctl("list", service, "--json", servers=[n2])
        assert as_json.returncode == 0, as_json.stderr
        hosts = json.loads(as_json.stdout)["hosts"]
        assert [(h["ip"], h["port"], h["metadata"]) for h in hosts] == [("10.8.0.1", 8080, {"zone": "a", "v": "2"})]
        assert ctl("list", service, "--clusters", "other", servers=[n2]).stdout.count("10.8.0.1") == 0

        services = ctl("services", servers=[n2])
        assert services.returncode == 0, services.stderr
        rows = [line.split() for line in services.stdout.splitlines()]
        assert ["DEFAULT_GROUP", service, "1", "1", "1"] in rows, services.stdout
        assert service not in ctl("services", "--group", "OTHER", servers=[n2]).stdout

        members = ctl("members", servers=[n1])
        assert members.returncode == 0, members.stderr
        assert "3 member(s), 3 up" in members.stdout
        for node in cluster.nodes:
            line = next(line for line in members.stdout.splitlines() if line.startswith(node.node_id + " "))
            assert line.split()[:3] == [node.node_id, node.address, "UP"]
        members_json = json.loads(ctl("members", "--json", servers=[n1]).stdout)
        assert len(members_json["servers"]) == 3

        # Still there (and healthy) after the expiry time, thanks to the beats.
        wait_until(lambda: time.monotonic() - registered_at > INSTANCE_EXPIRE_S + 1, "the expiry time to pass",
                   timeout_s=INSTANCE_EXPIRE_S + 5)
        for node in cluster.nodes:
            host = cluster.host(node, service, "10.8.0.1", 8080)
            assert host is not None and host["healthy"] is True, (node.node_id, host)
    finally:
        keeper.send_signal(signal.SIGINT)
        code = keeper.wait(20)
    assert code == 0, keeper_out.lines
    keeper_out.wait_for(f"deregistered 10.8.0.1:8080 from DEFAULT_GROUP@@{service} via ")
    for node in cluster.nodes:
        wait_until(lambda node=node: cluster.host(node, service, "10.8.0.1", 8080) is None,
                   f"the instance gone from {node.node_id}", timeout_s=3.0)


def test_register_then_deregister(cluster: RunningCluster) -> None:
    service = unique("ctlreg")
    n1, n2, _ = cluster.addresses
    done = ctl("register", service, "10.8.0.2", "8080", "--group", "G2", servers=[n1])
    assert done.returncode == 0, done.stderr
    assert f"in G2@@{service} via {n1}" in done.stdout
    node = cluster.nodes[1]
    wait_until(lambda: cluster.hosts(node, service, groupName="G2"), "the instance on n2", timeout_s=3.0)
    gone = ctl("deregister", service, "10.8.0.2", "8080", "-g", "G2", servers=[n2])
    assert gone.returncode == 0, gone.stderr
    assert gone.stdout.startswith(f"deregistered 10.8.0.2:8080 (cluster DEFAULT) from G2@@{service} via {n2}")
    # (well before the 6 s expiry could have removed it)
    for node in cluster.nodes:
        wait_until(lambda node=node: cluster.hosts(node, service, groupName="G2") == [],
                   f"the instance gone from {node.node_id}", timeout_s=3.0)


def test_list_shows_real_health_when_protect_threshold_is_reached(cluster: RunningCluster) -> None:
    """Clients get every instance as healthy once protection kicks in; distroctl says so and shows the truth."""
    node = cluster.nodes[0]
    service = unique("ctl-protected")
    created = cluster.call(node, "POST", "/nacos/v1/ns/service", serviceName=service, protectThreshold="0.9")
    assert created.text == "ok", created.text
    beater = Beater(node, service, "10.8.2.1", 80, interval_s=0.5)
    assert cluster.register(node, service, "10.8.2.1", 80).text == "ok"
    assert cluster.register(node, service, "10.8.2.2", 80).text == "ok"  # never beats
    beater.start()
    try:
        wait_until(
            lambda: (cluster.host(node, service, "10.8.2.2", 80) or {}).get("healthy") is True
            and cluster.call(node, "GET", "/nacos/v1/ns/instance", serviceName=service, ip="10.8.2.2",
                             port="80").json().get("healthy") is False,
            "the silent instance to turn unhealthy while the list still reports it healthy",
        )
        done = ctl("list", service, servers=cluster.addresses)
        assert done.returncode == 0, done.stderr
        assert "2 instance(s), 1 healthy" in done.stdout, done.stdout
        assert "protect threshold reached" in done.stdout, done.stdout
    finally:
        beater.stop()
        cluster.deregister(node, service, "10.8.2.1", 80)
        cluster.deregister(node, service, "10.8.2.2", 80)


def test_errors_are_clear(cluster: RunningCluster) -> None:
    (dead_port,) = free_ports(1)
    dead = f"127.0.0.1:{dead_port}"
    out = ctl("list", "x", servers=[dead])
    assert out.returncode == 1
    assert f"cannot reach {dead}: connection refused" in out.stderr, out.stderr

    # A dead server first: the next one answers.
    out = ctl("--server", f"{dead},{cluster.addresses[1]}", "members")
    assert out.returncode == 0, out.stderr
    assert "3 member(s)" in out.stdout

    out = ctl("register", "x", "10.8.0.300", "80", servers=cluster.addresses)
    assert out.returncode == 1
    assert "register failed" in out.stderr and "400" in out.stderr
    assert "instance format invalid: Your IP address is spelled incorrectly" in out.stderr

    out = ctl("register", "x", "10.8.0.1", "80", "--metadata", "novalue", servers=cluster.addresses)
    assert out.returncode == 2 and "key=value" in out.stderr

    out = ctl("list", "x", servers=["not a server"])
    assert out.returncode == 2 and "bad server address" in out.stderr

    out = ctl("register", "x", "10.8.0.1", "99999", servers=cluster.addresses)
    assert out.returncode == 2 and "not a port" in out.stderr


@pytest.mark.parametrize("mode", ["watch-api", "poll"])
def test_watch_prints_changes(cluster: RunningCluster, mode: str) -> None:
    """``distroctl watch`` long-polls ``instance/watch`` (or polls ``instance/list`` with ``--poll``)."""
    service = unique("watched")
    beater = Beater(cluster.nodes[0], service, "10.8.1.1", 80, interval_s=0.5)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTRO_")}
    watcher = subprocess.Popen(
        [str(DISTROCTL), "--server", cluster.addresses[2], "watch", service, "--interval", "0.2",
         *(["--poll"] if mode == "poll" else [])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        out = LineReader(watcher.stdout)  # type: ignore[arg-type]
        out.wait_for(f"watching DEFAULT_GROUP@@{service}: 0 instance(s)")
        cluster.register(cluster.nodes[0], service, "10.8.1.1", 80)
        beater.start()
        added = out.wait_for("+ 10.8.1.1:80 DEFAULT")
        assert "healthy=true" in added
        response = cluster.call(cluster.nodes[1], "PUT", "/nacos/v1/ns/instance", serviceName=service,
                                ip="10.8.1.1", port=80, weight=4)
        assert response.text == "ok"
        changed = out.wait_for("~ 10.8.1.1:80 DEFAULT")
        assert "weight: 1.0 -> 4.0" in changed
        beater.stop()
        cluster.deregister(cluster.nodes[1], service, "10.8.1.1", 80)
        out.wait_for("- 10.8.1.1:80 DEFAULT")
    finally:
        beater.stop()
        watcher.send_signal(signal.SIGINT)
        code = watcher.wait(10)
    errors = watcher.stderr.read() if watcher.stderr else ""
    assert code == 0, errors
    assert ("no instance/watch" in errors) is False, errors  # the nodes have it: no fallback to polling


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def _start_local_cluster(tmp_path: Path, nodes: int) -> tuple[subprocess.Popen[str], LineReader, int, list[int]]:
    base = free_port_range(nodes)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTRO_")}
    process = subprocess.Popen(
        [str(DISTROCTL), "local-cluster", "--nodes", str(nodes), "--base-port", str(base),
         "--log-dir", str(tmp_path), "--heartbeat-timeout-ms", "3000", "--instance-expire-ms", "6000",
         "--node-arg=--ping-interval-ms=250", "--node-arg=--snapshot-timeout-ms=1500"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    out = LineReader(process.stdout)  # type: ignore[arg-type]
    pids = [int(out.wait_for(f"n{i}  http://127.0.0.1:{base + 10 * (i - 1)}  pid ").split("pid ")[1].split(",")[0])
            for i in range(1, nodes + 1)]
    ready = out.wait_for("ready: ", timeout_s=60)
    addresses = ",".join(f"127.0.0.1:{base + 10 * i}" for i in range(nodes))
    assert ready.startswith(f"ready: {nodes} node(s) at {addresses} "), ready
    return process, out, base, pids


def test_local_cluster_starts_and_stops_on_sigint(tmp_path: Path) -> None:
    process, out, base, pids = _start_local_cluster(tmp_path, 2)
    try:
        assert all(_alive(pid) for pid in pids)
        with httpx.Client(timeout=5) as http:
            for port in (base, base + 10):
                assert http.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
        members = ctl("members", servers=[f"127.0.0.1:{base + 10}"])
        assert "2 member(s), 2 up" in members.stdout, members.stdout + members.stderr
        registered = ctl("register", "lc", "10.9.0.1", "80", servers=[f"127.0.0.1:{base}"])
        assert registered.returncode == 0, registered.stderr
        wait_until(lambda: "10.9.0.1:80" in ctl("list", "lc", servers=[f"127.0.0.1:{base + 10}"]).stdout,
                   "the instance on the second node")
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(30)
    out.wait_for("stopped")
    assert code == 0, out.lines
    assert not any(_alive(pid) for pid in pids), "orphan distro-node processes"
    for port in (base, base + 10, base + 1000, base + 1001, base + 1010, base + 1011):
        assert port_is_free(port), f"port {port} still taken"
    assert "stopped" in (tmp_path / "n1.log").read_text().splitlines()[-1]


def test_local_cluster_children_die_with_it(tmp_path: Path) -> None:
    """Even a kill -9 of distroctl leaves no node behind (they get SIGTERM when their parent dies)."""
    process, _, _, pids = _start_local_cluster(tmp_path, 1)
    process.kill()
    process.wait(10)
    wait_until(lambda: not any(_alive(pid) for pid in pids), "the node to exit after its parent died", 15)
