"""SIGTERM on a real ``distro-node`` with gRPC clients: ConnectResetRequest moves them before the connection closes.

Three real nodes. The outside SDKs at hand do not act on ConnectResetRequest (nacos-sdk-python 3.2.0 does not
know the type and logs it; the Rust binding 0.8.0 has no handler), so the client that follows it is the h2 test
client doing what the Java client and nacos-sdk-go do: answer, connect to the recommended member, set up,
register again, close the old connection. nacos-sdk-python 3.x is tested too, as it is: it ignores the request,
and its instance must still never leave the other nodes while it reconnects and registers again.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from cluster.tools.launcher import LocalNode, free_ports
from cluster.tools.localcluster import LocalCluster
from tests.grpc.h2client import GrpcTestClient
from tests.grpc.outside import Nacos3Client
from tests.integration.conftest import NODE_ARGS, NS, START_TIMEOUT_S, RunningCluster, unique

pytestmark = pytest.mark.slow

DRAIN_ARGS = ("--grpc-drain-ms", "60000")  # the drain must end because the clients went, not at its grace
INSTANCE_EXPIRE_S = 6.0  # NODE_ARGS


def register_body(service: str, ip: str, port: int) -> dict[str, Any]:
    return {"namespace": "public", "serviceName": service, "groupName": "DEFAULT_GROUP", "type": "registerInstance",
            "instance": {"ip": ip, "port": port, "weight": 1.0, "healthy": True, "enabled": True,
                         "ephemeral": True, "clusterName": "DEFAULT", "metadata": {}}}


async def listed(http: httpx.AsyncClient, node: LocalNode, service: str) -> list[str]:
    response = await http.get(f"{node.url}{NS}/instance/list", params={"serviceName": service})
    return [h["ip"] for h in response.json()["hosts"]]


async def watch_survivors(http: httpx.AsyncClient, nodes: list[LocalNode], service: str, gaps: list[str],
                          *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Record every look at which a survivor did not list the instance (until cancelled)."""
    task_status.started()
    while True:
        for node in nodes:
            if await listed(http, node, service) != ["10.8.0.1"]:
                gaps.append(f"{node.node_id} at {time.monotonic():.2f}")
        await trio.sleep(0.05)


async def test_a_stopping_node_moves_its_clients_and_their_instances_stay(tmp_path: Path) -> None:
    local = LocalCluster(free_ports(3), node_args=(*NODE_ARGS, *DRAIN_ARGS), log_dir=tmp_path / "nodes",
                         hermetic_env=True)
    local.start_with_retries(START_TIMEOUT_S)
    cluster = RunningCluster(local)
    n1, n2, n3 = cluster.nodes
    service = unique("drain")
    try:
        cluster.wait_settled()
        async with httpx.AsyncClient(timeout=5.0) as http, trio.open_nursery() as nursery:
            old = await GrpcTestClient.connect(n1.grpc_port)
            nursery.start_soon(old.pump)
            await old.setup()
            assert (await old.call("InstanceRequest", register_body(service, "10.8.0.1", 80)))["success"]
            with trio.fail_after(20):
                while [await listed(http, n, service) for n in (n2, n3)] != [["10.8.0.1"]] * 2:
                    await trio.sleep(0.05)
            gaps: list[str] = []
            await nursery.start(watch_survivors, http, [n2, n3], service, gaps)

            n1.signal(signal.SIGTERM)
            reset = await old.next_push("ConnectResetRequest", timeout_s=20)
            recommended = f"{reset['serverIp']}:{reset['serverPort']}"
            assert recommended in (n2.address, n3.address), reset  # a live member, by its advertised address
            target = local.by_address(recommended)

            new = await GrpcTestClient.connect(target.grpc_port)  # what the Java client does on a reset
            nursery.start_soon(new.pump)
            await new.setup()
            assert (await new.call("InstanceRequest", register_body(service, "10.8.0.1", 80)))["success"]
            await old.aclose()
            with trio.fail_after(30):  # its last client gone, n1 stops long before its 60 s grace
                while n1.returncode() is None:
                    await trio.sleep(0.05)
            assert n1.returncode() == 0, n1.log_tail()
            assert "draining: 1 clients asked to move" in n1.log_text()
            # renewed by the node the client moved to: it stays well past the expiry
            await trio.sleep(INSTANCE_EXPIRE_S + 1)
            assert gaps == [], f"the instance left a survivor: {gaps}"
            await new.aclose()
            nursery.cancel_scope.cancel()
    finally:
        cluster.close()


def holder(cluster: RunningCluster, nodes: list[LocalNode]) -> LocalNode | None:
    """The node whose /metrics shows one open gRPC connection."""
    for node in nodes:
        for line in cluster.http.get(f"{node.url}/metrics").text.splitlines():
            if line == "distro_grpc_connections_open 1":
                return node
    return None


def test_python_sdk_3_ignores_the_reset_and_keeps_its_instance(tmp_path: Path) -> None:
    """nacos-sdk-python 3.2.0 drops ConnectResetRequest ("unknown payload type"), reconnects when the stopping
    node closes its connection, and registers again only on its 30-second redo timer. With Nacos's default
    timings (30 s expiry, counted from when the survivors saw the node go) its instance never leaves them."""
    default_timings = tuple(
        arg for i, arg in enumerate(NODE_ARGS)
        if arg not in ("--heartbeat-timeout-ms", "--instance-expire-ms")
        and NODE_ARGS[i - 1] not in ("--heartbeat-timeout-ms", "--instance-expire-ms")
    )
    local = LocalCluster(free_ports(3), node_args=(*default_timings, "--grpc-drain-ms", "2000"),
                         log_dir=tmp_path / "nodes", hermetic_env=True)
    local.start_with_retries(START_TIMEOUT_S)
    cluster = RunningCluster(local)
    service = unique("py3drain")
    sdk: Nacos3Client | None = None
    try:
        cluster.wait_settled()
        sdk = Nacos3Client([n.address for n in cluster.nodes], tmp_path / "py3")
        sdk.call("register", service=service, ip="10.8.0.2", port=1)
        kept = ["10.8.0.2"]

        def everywhere(nodes: list[LocalNode]) -> bool:
            return all([h["ip"] for h in cluster.hosts(n, service)] == kept for n in nodes)

        deadline = time.monotonic() + 20
        while not (everywhere(cluster.nodes) and holder(cluster, cluster.nodes)):
            assert time.monotonic() < deadline, "the instance never showed everywhere"
            time.sleep(0.05)
        victim = holder(cluster, cluster.nodes)
        assert victim is not None
        survivors = [n for n in cluster.nodes if n is not victim]
        victim.signal(signal.SIGTERM)
        deadline = time.monotonic() + 45
        while victim.returncode() is None or holder(cluster, survivors) is None:
            assert everywhere(survivors), "the instance left a survivor"
            assert time.monotonic() < deadline, "the SDK never moved"
            time.sleep(0.2)
        assert victim.returncode() == 0 and "draining: 1 clients asked to move" in victim.log_text()
        # registered again through the node it moved to (the SDK's redo): held there, listed everywhere
        deadline = time.monotonic() + 40
        while not redo_seen(cluster, survivors):
            assert everywhere(survivors), "the instance left a survivor"
            assert time.monotonic() < deadline, "the SDK never registered again"
            time.sleep(0.2)
        assert everywhere(survivors)
    finally:
        if sdk is not None:
            sdk.kill()
        cluster.close()


def redo_seen(cluster: RunningCluster, nodes: list[LocalNode]) -> bool:
    """A survivor's connection table binds an instance (the SDK registered again through it)."""
    for node in nodes:
        for line in cluster.http.get(f"{node.url}/metrics").text.splitlines():
            if line.startswith("distro_connection_instances ") and float(line.split()[1]) >= 1:
                return True
    return False
