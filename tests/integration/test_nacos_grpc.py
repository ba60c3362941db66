"""Today's Nacos clients, unchanged, against real ``distro-node`` processes over the Nacos 2.x gRPC protocol.

Two outside clients from PyPI: nacos-sdk-python 3.x (in its own venv, tests/grpc/outside.py) and the
official Rust SDK through ``nacos-sdk-rust-binding-py``. Each is given HTTP addresses and adds 1000 for gRPC,
as Nacos's clients do. The nodes run with a 3 s heartbeat timeout and a 6 s expiry (conftest.NODE_ARGS), so
a gRPC connection's instances are renewed every second and an orphan expires within seconds.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx

from cluster.tools.launcher import LocalNode
from tests.grpc.outside import Nacos3Client, RustClient, poll, rust_instance
from tests.integration.conftest import INSTANCE_EXPIRE_S, RunningCluster, unique


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


def test_a_client_keeps_its_instance_when_its_node_is_killed(fresh_cluster: RunningCluster, tmp_path: Path) -> None:
    """Clients that know all three nodes move to a survivor and register again; one that knew only the killed
    node cannot, and its instance is gone from the survivors within the expiry."""
    cluster = fresh_cluster
    addresses = [n.address for n in cluster.nodes]
    service = unique("kill")
    py3 = Nacos3Client(addresses, tmp_path / "py3")
    rust = RustClient(addresses)
    try:
        py3.call("register", service=service, ip="10.3.0.1", port=1)
        rust.call("register_instance", service, "DEFAULT_GROUP", rust_instance("10.3.0.2", 2))
        both = [("10.3.0.1", 1, True), ("10.3.0.2", 2, True)]
        poll(lambda: everywhere(cluster, service, both), "both instances everywhere")
        holders = [n for n in cluster.nodes if metric(n, "distro_connection_instances") > 0]
        victim = holders[0]
        lonely = Nacos3Client([victim.address], tmp_path / "lonely")  # knows only the node about to die
        lonely.call("register", service=service, ip="10.3.0.3", port=3)
        poll(lambda: everywhere(cluster, service, [*both, ("10.3.0.3", 3, True)]), "the third instance everywhere")
        cluster.kill9(victim)
        survivors = [n for n in cluster.nodes if n.running()]
        poll(lambda: all(listed(cluster, n, service) == both for n in survivors),
             "the orphan gone and the others kept on the survivors", timeout_s=3 * INSTANCE_EXPIRE_S)
        # and they stay, healthy, well past the expiry: renewed by the node each client moved to
        holds_for(lambda: all(listed(cluster, n, service) == both for n in survivors), INSTANCE_EXPIRE_S + 1)
        lonely.kill()
    finally:
        py3.close()
        rust.close()
