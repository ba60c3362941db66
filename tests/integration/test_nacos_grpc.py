"""Today's Nacos clients, unchanged, against real ``distro-node`` processes over the Nacos 2.x gRPC protocol.

Two outside clients from PyPI: nacos-sdk-python 3.x (in its own venv, tests/grpc/outside.py) and the
official Rust SDK through ``nacos-sdk-rust-binding-py``. Each is given HTTP addresses and adds 1000 for gRPC,
as Nacos's clients do. The nodes run with a 3 s heartbeat timeout and a 6 s expiry (conftest.NODE_ARGS), so
a gRPC connection's instances are renewed every second and an orphan expires within seconds; one test runs
Nacos's default timings, which nacos-sdk-python 3.x's 30-second redo needs.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from cluster.tools.launcher import LocalNode, free_ports
from cluster.tools.localcluster import LocalCluster
from tests.grpc.outside import Nacos3Client, RustClient, poll, rust_instance
from tests.integration.conftest import INSTANCE_EXPIRE_S, NODE_ARGS, START_TIMEOUT_S, RunningCluster, unique

pytestmark = pytest.mark.slow

# The integration cluster's timings, but Nacos's default health timings (15 s unhealthy, 30 s expiry).
DEFAULT_TIMINGS_ARGS = tuple(
    arg for i, arg in enumerate(NODE_ARGS)
    if arg not in ("--heartbeat-timeout-ms", "--instance-expire-ms")
    and NODE_ARGS[i - 1] not in ("--heartbeat-timeout-ms", "--instance-expire-ms")
)


def listed(cluster: RunningCluster, node: LocalNode, service: str) -> list[tuple[str, int, bool]]:
    """``(ip, port, healthy)`` of every instance a node lists over the v1 HTTP API."""
    return sorted((h["ip"], h["port"], h["healthy"]) for h in cluster.hosts(node, service))


def everywhere(cluster: RunningCluster, service: str, expected: list[tuple[str, int, bool]]) -> bool:
    return all(listed(cluster, node, service) == expected for node in cluster.nodes if node.running())


def metric(node: LocalNode, name: str) -> float:
    """One unlabelled sample of a node's /metrics."""
    text = httpx.get(f"{node.url}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)


def holds_for(predicate: Any, seconds: float) -> None:
    """``predicate()`` is true at every look during ``seconds`` (AssertionError the first time it is not)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert predicate(), "the condition stopped holding"
        time.sleep(0.2)


def test_python_sdk_3_registers_lists_subscribes_and_deregisters(cluster: RunningCluster, tmp_path: Path) -> None:
    service = unique("py3")
    n1, n2, n3 = cluster.nodes
    client = Nacos3Client([n1.address], tmp_path / "py3")
    try:
        assert client.call("register", service=service, ip="10.1.0.1", port=8080, metadata={"zone": "a"}) is True
        # registered through node 1 over gRPC, read over v1 HTTP on node 3
        poll(lambda: everywhere(cluster, service, [("10.1.0.1", 8080, True)]), "the gRPC instance on every node")
        assert cluster.hosts(n3, service)[0]["metadata"] == {"zone": "a"}
        assert client.call("list", service=service) == [
            {"ip": "10.1.0.1", "port": 8080, "healthy": True, "cluster": "DEFAULT", "metadata": {"zone": "a"}}]
        assert client.call("subscribe", service=service) is True
        rows = cluster.call(n3, "GET", "/nacos/v1/ns/service/subscribers", serviceName=service).json()["subscribers"]
        assert [row["protocol"] for row in rows] == ["grpc"]  # gathered from node 1, asked on node 3
        # a v1 HTTP registration on node 2 is pushed to the gRPC subscriber
        cluster.register(n2, service, "10.1.0.2", 80)
        poll(lambda: [("10.1.0.1", 8080), ("10.1.0.2", 80)] in client.pushed(service), "the push of the v1 instance")
        assert service in client.call("services")
        assert client.call("deregister", service=service, ip="10.1.0.1", port=8080) is True
        poll(lambda: everywhere(cluster, service, [("10.1.0.2", 80, True)]), "the deregistration on every node")
        poll(lambda: client.pushed(service)[-1] == [("10.1.0.2", 80)], "the push of the deregistration")
        # a closed client's instances are gone everywhere at once (no waiting for an expiry)
        assert client.call("register", service=service, ip="10.1.0.3", port=8080) is True
        poll(lambda: ("10.1.0.3", 8080, True) in listed(cluster, n3, service), "the second gRPC instance")
    finally:
        client.close()
    poll(lambda: everywhere(cluster, service, [("10.1.0.2", 80, True)]), "the closed client's instance gone",
         timeout_s=INSTANCE_EXPIRE_S - 1)
    assert metric(n1, "distro_grpc_connections_open") == 0


def test_rust_sdk_registers_batches_subscribes_and_deregisters(cluster: RunningCluster) -> None:
    service = unique("rust")
    _, n2, n3 = cluster.nodes
    pushes: list[list[tuple[str, int]]] = []
    lock = threading.Lock()

    def on_change(instances: Any) -> None:
        with lock:
            pushes.append(sorted((i.ip, i.port) for i in instances))

    client = RustClient([n2.address])
    try:
        client.call("register_instance", service, "DEFAULT_GROUP", rust_instance("10.2.0.1", 9000, metadata={"k": "v"}))
        poll(lambda: everywhere(cluster, service, [("10.2.0.1", 9000, True)]), "the Rust client's instance everywhere")
        found = client.call("get_all_instances", service, "DEFAULT_GROUP", None, False)
        assert [(i.ip, i.port, i.metadata) for i in found] == [("10.2.0.1", 9000, {"k": "v"})]
        client.call("subscribe", service, "DEFAULT_GROUP", None, on_change)
        cluster.register(n3, service, "10.2.0.9", 80)  # v1 HTTP, elsewhere
        poll(lambda: [("10.2.0.1", 9000), ("10.2.0.9", 80)] in pushes, "the push of the v1 instance")
        client.call("batch_register_instance", service, "DEFAULT_GROUP",
                    [rust_instance("10.2.0.1", 9000), rust_instance("10.2.0.2", 9001)])
        expected = [("10.2.0.1", 9000, True), ("10.2.0.2", 9001, True), ("10.2.0.9", 80, True)]
        poll(lambda: everywhere(cluster, service, expected), "the batch everywhere")
        client.call("deregister_instance", service, "DEFAULT_GROUP", rust_instance("10.2.0.2", 9001))
        poll(lambda: everywhere(cluster, service, [("10.2.0.1", 9000, True), ("10.2.0.9", 80, True)]),
             "the deregistration everywhere")
        poll(lambda: pushes and pushes[-1] == [("10.2.0.1", 9000), ("10.2.0.9", 80)], "the push of the deregistration")
        assert metric(n2, "distro_connection_instances") >= 1
    finally:
        client.close()  # the binding has no shutdown: its connection lives until the process ends


def holder_of_instances(cluster: RunningCluster) -> list[LocalNode]:
    """The running nodes that hold gRPC connections with instances bound to them."""
    return [n for n in cluster.nodes if n.running() and metric(n, "distro_connection_instances") > 0]


def test_killing_a_clients_node_keeps_its_instance_and_drops_an_orphan(
    fresh_cluster: RunningCluster, tmp_path: Path
) -> None:
    """The Rust SDK knows all three nodes: it reconnects to a survivor and registers again at once. A
    nacos-sdk-python 3.x client that knew only the killed node cannot: its instance (an orphan) is gone from
    the survivors within the expiry (6 s here), counted from when they saw its node die."""
    cluster = fresh_cluster
    service = unique("kill")
    rust = RustClient([n.address for n in cluster.nodes])
    try:
        rust.call("register_instance", service, "DEFAULT_GROUP", rust_instance("10.3.0.2", 2))
        poll(lambda: everywhere(cluster, service, [("10.3.0.2", 2, True)]), "the Rust instance everywhere")
        victim = holder_of_instances(cluster)[0]
        lonely = Nacos3Client([victim.address], tmp_path / "lonely")
        try:
            lonely.call("register", service=service, ip="10.3.0.3", port=3)
            both = [("10.3.0.2", 2, True), ("10.3.0.3", 3, True)]
            poll(lambda: everywhere(cluster, service, both), "both instances everywhere")
            cluster.kill9(victim)
            survivors = [n for n in cluster.nodes if n.running()]
            kept = [("10.3.0.2", 2, True)]
            poll(lambda: all(listed(cluster, n, service) == kept for n in survivors),
                 "the orphan gone and the Rust instance kept", timeout_s=3 * INSTANCE_EXPIRE_S)
            # and it stays, healthy, well past the expiry: renewed by the node the client moved to
            holds_for(lambda: all(listed(cluster, n, service) == kept for n in survivors), INSTANCE_EXPIRE_S + 1)
        finally:
            lonely.kill()
    finally:
        rust.close()


def test_python_sdk_3_keeps_its_instance_when_its_node_is_killed(tmp_path: Path) -> None:
    """nacos-sdk-python 3.2.0 reconnects at once but registers again only on its 30-second redo timer. With
    the default expiry (30 s, counted from when the survivors saw the node die) its instance never leaves."""
    local = LocalCluster(free_ports(3), node_args=DEFAULT_TIMINGS_ARGS, log_dir=tmp_path / "nodes", hermetic_env=True)
    local.start_with_retries(START_TIMEOUT_S)
    cluster = RunningCluster(local)
    service = unique("py3kill")
    client: Nacos3Client | None = None
    try:
        cluster.wait_settled()
        client = Nacos3Client([n.address for n in cluster.nodes], tmp_path / "py3")
        client.call("register", service=service, ip="10.4.0.1", port=1)
        kept = [("10.4.0.1", 1, True)]
        poll(lambda: everywhere(cluster, service, kept), "the instance everywhere")
        [victim] = holder_of_instances(cluster)
        cluster.kill9(victim)
        survivors = [n for n in cluster.nodes if n.running()]
        # listed and healthy on both survivors all along, until a survivor holds the client's new connection
        # and renews the instance (the SDK's redo, at most 30 s later)
        deadline = time.monotonic() + 40
        while not holder_of_instances(cluster):
            assert all(listed(cluster, n, service) == kept for n in survivors), "the instance left meanwhile"
            assert time.monotonic() < deadline, "the SDK never registered again"
            time.sleep(0.2)
        assert all(listed(cluster, n, service) == kept for n in survivors)
    finally:
        if client is not None:
            client.kill()
        cluster.close()
