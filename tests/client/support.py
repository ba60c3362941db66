"""Test clusters for the push, watch and SDK tests.

* :class:`NodeProcesses`: real ``distro-node`` processes on 127.0.0.1 (free ports, logs in a temp dir),
  started by :mod:`cluster.tools.launcher`.
* :class:`InProcessCluster`: NodeServers with the in-memory peer transport, each serving HTTP on
  127.0.0.1:<free port>; for knobs the CLI does not expose (push TTLs, watch bounds, core timings).
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
import trio

from cluster.api.push import PushConfig, PushService
from cluster.api.routes import NamingApi
from cluster.api.watch import WatchConfig, WatchService
from cluster.node.memlink import MemoryNetwork
from cluster.node.pump import NodeRuntime
from cluster.node.settings import parse_settings
from cluster.node.wiring import NodeServer
from cluster.tools.launcher import LocalNode, free_ports
from distro.config import DistroConfig

NS = "/nacos/v1/ns"


class NodeProcesses:
    """``count`` real nodes listing each other, started by the launcher. Use as a context manager."""

    def __init__(self, count: int = 3, args: Sequence[str] = ()) -> None:
        self.count = count
        self.args = list(args)
        self.nodes: list[LocalNode] = []
        self.secret = os.urandom(16).hex()
        self.log_dir = Path(tempfile.mkdtemp(prefix="distro-test-nodes-"))

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def addresses(self) -> list[str]:
        return [node.address for node in self.nodes]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start(self, timeout_s: float = 30.0) -> NodeProcesses:
        ports = free_ports(self.count)
        peers = [f"127.0.0.1:{port}" for port in ports]
        self.nodes = [
            LocalNode(f"n{i + 1}", port, peers, self.secret, node_args=["--snapshot-timeout-ms", "500", *self.args],
                      log_path=self.log_dir / f"n{i + 1}.log", hermetic_env=True)
            for i, port in enumerate(ports)
        ]
        for node in self.nodes:
            node.start()
        self.wait_ready(timeout_s)
        return self

    def wait_ready(self, timeout_s: float = 30.0, indexes: Sequence[int] | None = None) -> None:
        deadline = time.monotonic() + timeout_s
        pending = set(range(self.count) if indexes is None else indexes)
        with httpx.Client(timeout=1.0, trust_env=False) as http:
            while pending:
                for i in list(pending):
                    if not self.nodes[i].running():
                        raise RuntimeError(f"node n{i + 1} exited:\n{self.log(i)}")
                    if self.nodes[i].is_ready(http):
                        pending.discard(i)
                if pending and time.monotonic() > deadline:
                    raise RuntimeError(f"nodes {sorted(pending)} not ready; logs in {self.log_dir}")
                if pending:
                    time.sleep(0.05)

    def log(self, index: int) -> str:
        return self.nodes[index].log_text()[-3000:]

    def stop_node(self, index: int) -> None:
        self.nodes[index].stop(10)

    def start_node(self, index: int) -> None:
        self.nodes[index].start()
        self.wait_ready(indexes=[index])

    def stop(self) -> None:
        for i in range(len(self.nodes)):
            self.stop_node(i)

    def __enter__(self) -> NodeProcesses:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class InProcessNode:
    server: NodeServer
    port: int = 0
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)

    @property
    def runtime(self) -> NodeRuntime:
        return self.server.runtime

    @property
    def api(self) -> NamingApi:
        return self.server.api

    @property
    def push(self) -> PushService:
        return self.server.push

    @property
    def watch(self) -> WatchService:
        return self.server.watch

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class InProcessCluster:
    """NodeServers on a MemoryNetwork (their peer transport), each serving HTTP. ``await cluster.start(nursery)``."""

    def __init__(
        self,
        count: int = 2,
        *,
        push: PushConfig | None = None,
        watch: dict[str, int] | None = None,
        core: DistroConfig | None = None,
        flags: Sequence[str] = (),
    ) -> None:
        self.count = count
        self.flags = list(flags)  # more distro-node flags for every node
        self.push_config = push or PushConfig()
        self.watch_config = WatchConfig(**(watch or {}))
        self.core = core or DistroConfig(cluster_size=count, snapshot_timeout_ms=200)
        self.network = MemoryNetwork()
        self.nodes: list[InProcessNode] = []

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    async def start(self, nursery: trio.Nursery) -> InProcessCluster:
        await nursery.start(self.network.run)
        # HTTP ports whose gRPC neighbour (+1000) is free too: with port 0 the gRPC port could be taken
        ports = free_ports(self.count)
        for i in range(self.count):
            flags = parse_settings(["--node-id", f"n{i}", "--host", "127.0.0.1", "--port", str(9000 + i), *self.flags])
            node_settings = replace(flags, port=ports[i], core=self.core)  # advertised as 127.0.0.1:900i
            server = NodeServer(node_settings, transport=self.network.transport, push=self.push_config,
                                watch=self.watch_config)
            node = InProcessNode(server)
            node.port = await nursery.start(self._serve, node)
            self.nodes.append(node)
        with trio.fail_after(20):
            for node in self.nodes:
                await node.runtime.ready_event.wait()
            while not all(len(n.runtime.node.live_members()) == self.count for n in self.nodes):
                await trio.sleep(0.01)
        return self

    async def _serve(self, node: InProcessNode, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        with node.scope:
            await node.server.run(task_status=task_status)

    def stop_node(self, index: int) -> None:
        node = self.nodes[index]
        node.scope.cancel()
        self.network.detach(node.runtime.node.node_id)


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
async def register(http: httpx.AsyncClient, url: str, service: str, ip: str, port: int, **extra: str) -> None:
    params = {"serviceName": service, "ip": ip, "port": str(port), **extra}
    response = await http.post(f"{url}{NS}/instance", params=params)
    assert response.status_code == 200 and response.text == "ok", response.text


async def deregister(http: httpx.AsyncClient, url: str, service: str, ip: str, port: int) -> None:
    response = await http.delete(f"{url}{NS}/instance", params={"serviceName": service, "ip": ip, "port": str(port)})
    assert response.status_code == 200 and response.text == "ok", response.text


async def list_hosts(http: httpx.AsyncClient, url: str, service: str) -> list[tuple[str, int]]:
    response = await http.get(f"{url}{NS}/instance/list", params={"serviceName": service})
    return sorted((h["ip"], h["port"]) for h in response.json()["hosts"])


async def metric(http: httpx.AsyncClient, url: str, name: str) -> float:
    text = (await http.get(f"{url}/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def decode_push(data: bytes) -> dict[str, object]:
    """What a Java client does with a push datagram: gunzip when it starts with the gzip magic, parse."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    packet = json.loads(data)
    assert isinstance(packet, dict)
    return packet


def unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{time.monotonic_ns() % 10**9}"
