"""The compose cluster seen from the host, synchronously: its nodes' containers, ports and network (through
scripts/lib/compose.sh), the timings they run with, and putting it back together after a run."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from chaoslib.plan import DEFAULT_HEARTBEAT_TIMEOUT_MS, DEFAULT_INSTANCE_EXPIRE_MS, NODE_NAMES
from distro.config import DistroConfig

ROOT = Path(__file__).resolve().parents[2]
GRPC_CONTAINER_PORT = 9848  # every node's gRPC port inside its container (HTTP 8848 + 1000)
# gRPC bounds' ingredients: DISTRO_* variable -> the report's name (defaults: distro.config.DistroConfig)
GRPC_TIMINGS = {
    "DISTRO_PEER_TIMEOUT_MS": ("peer_timeout_ms", "peer_timeout_ms"),
    "DISTRO_GRPC_PROBE_AFTER_IDLE_MS": ("grpc_probe_after_idle_ms", "connection_probe_after_idle_ms"),
    "DISTRO_GRPC_GIVE_UP_AFTER_MS": ("grpc_give_up_after_ms", "connection_give_up_after_ms"),
}


@dataclass
class NodeRef:
    """One node of the compose cluster: its service name, published host port, container and network."""

    name: str
    port: int
    container: str
    network: str = ""
    aliases: list[str] = field(default_factory=list)
    grpc_port: int = 0  # the published gRPC port (the node's 9848), 0 when none is published

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _compose_env() -> dict[str, str]:
    env = dict(os.environ)
    if not env.get("DISTRO_CLUSTER_SECRET") and not dotenv().get("DISTRO_CLUSTER_SECRET"):
        env["DISTRO_CLUSTER_SECRET"] = "unset"  # compose interpolates it even for `ps`
    return env


def dotenv() -> dict[str, str]:
    """The repository's .env (what compose reads), as a dict; empty when there is none."""
    values: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for raw in (ROOT / ".env").read_text().splitlines():
            line = raw.strip()
            if line and not line.startswith("#") and "=" in line:
                k, _, v = line.partition("=")
                values[k.strip()] = v.strip().strip("'\"")
    return values


def docker(*args: str, timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``docker ARGS`` synchronously (used outside trio: discovery and restore)."""
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=check)


def discover_nodes() -> list[NodeRef]:
    """The three nodes' containers and host ports, through scripts/lib/compose.sh (node_container, node_port)."""
    # One helper call per node, the three at once (docker-compose v1 takes a second or more per call).
    script = '. "$1/scripts/lib/compose.sh"; printf "%s %s %s\\n" "$2" "$(node_port "$2")" "$(node_container "$2")"'
    procs = [
        subprocess.Popen(["bash", "-c", script, "chaos", str(ROOT), name], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=_compose_env())
        for name in NODE_NAMES
    ]
    nodes = []
    errors = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        errors.append(err.strip())
        parts = out.split()
        if len(parts) == 3:
            nodes.append(NodeRef(parts[0], int(parts[1]), parts[2]))
        elif len(parts) == 2:
            nodes.append(NodeRef(parts[0], int(parts[1]), ""))
    if len(nodes) != 3:
        raise SystemExit(f"chaos: could not list the nodes through scripts/lib/compose.sh: {' '.join(errors)}")
    for node in nodes:
        if node.container:
            _find_network(node)
            node.grpc_port = _published_port(node.container, GRPC_CONTAINER_PORT)
        if node.name not in node.aliases:
            node.aliases.insert(0, node.name)
    return nodes


def _published_port(container: str, port: int) -> int:
    """The host port ``container``'s TCP ``port`` is published on (0 when it is not)."""
    res = docker("port", container, f"{port}/tcp")
    for line in res.stdout.splitlines():
        host_port = line.strip().rpartition(":")[2]
        if host_port.isdigit():
            return int(host_port)
    return 0


def _find_network(node: NodeRef) -> None:
    res = docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", node.container)
    networks: dict[str, Any] = json.loads(res.stdout or "{}") or {}
    if networks:
        # The compose network is "<project>_distro"; a container only has that one.
        name = next((n for n in networks if n.endswith("_distro")), next(iter(networks)))
        node.network = name
        short = node.container[:12]
        node.aliases = [a for a in (networks[name].get("Aliases") or []) if a and a != short]


def container_env(container: str) -> dict[str, str]:
    """The environment a container was started with."""
    res = docker("inspect", "-f", "{{json .Config.Env}}", container)
    env: dict[str, str] = {}
    with contextlib.suppress(ValueError, TypeError):
        for item in json.loads(res.stdout or "[]") or []:
            k, _, v = item.partition("=")
            env[k] = v
    return env


def effective_timing(args: argparse.Namespace, nodes: list[NodeRef]) -> dict[str, Any]:
    """Heartbeat timeout and expiry: option > the containers' environment > our environment > .env > default."""
    cenv = container_env(nodes[0].container) if nodes and nodes[0].container else {}
    denv = dotenv()

    def pick(option: int | None, var: str, default: int) -> tuple[int, str]:
        if option:
            return option, "option"
        for source, values in (("container", cenv), ("environment", os.environ), (".env", denv)):
            raw = values.get(var, "")
            if raw.strip().isdigit():
                return int(raw), source
        return default, "default"

    hb, hb_src = pick(args.heartbeat_timeout_ms, "DISTRO_HEARTBEAT_TIMEOUT_MS", DEFAULT_HEARTBEAT_TIMEOUT_MS)
    exp, exp_src = pick(args.instance_expire_ms, "DISTRO_INSTANCE_EXPIRE_MS", DEFAULT_INSTANCE_EXPIRE_MS)
    timing: dict[str, Any] = {
        "heartbeat_timeout_ms": hb,
        "instance_expire_ms": exp,
        "timing_source": {"heartbeat_timeout_ms": hb_src, "instance_expire_ms": exp_src},
    }
    defaults = DistroConfig()
    for var, (name, field_name) in GRPC_TIMINGS.items():
        timing[name], timing["timing_source"][name] = pick(None, var, getattr(defaults, field_name))
    # not a knob: the node checks its connections this often
    timing["grpc_check_interval_ms"] = defaults.connection_check_interval_ms
    for var in ("DISTRO_VERIFY_INTERVAL_MS", "DISTRO_SYNC_DELAY_MS"):
        if cenv.get(var):
            timing[var.lower().removeprefix("distro_")] = int(cenv[var]) if cenv[var].isdigit() else cenv[var]
    if cenv:
        for var, value in (("DISTRO_HEARTBEAT_TIMEOUT_MS", hb), ("DISTRO_INSTANCE_EXPIRE_MS", exp)):
            if cenv.get(var, "").isdigit() and int(cenv[var]) != value:
                timing.setdefault("warnings", []).append(
                    f"the containers run with {var}={cenv[var]} but the checks use {value}"
                )
    return timing


def node_ready_sync(node: NodeRef, timeout: float = 2.0) -> bool:
    """Does the node answer GET /readyz with 200 (synchronously, outside trio)?"""
    try:
        return httpx.get(node.url + "/readyz", timeout=timeout, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def restore_cluster(nodes: list[NodeRef], wait_ready_s: float = 90.0, say: Callable[[str], Any] = print) -> list[str]:
    """Make every node running, unpaused and on its network again, whatever state chaos left it in.

    Synchronous and idempotent: runs after trio has exited (also on Ctrl-C). Returns what it did.
    """
    actions: list[str] = []
    for node in nodes:
        if node.container:
            actions += _restore_node(node)
    if actions:
        for a in actions:
            say(f"restore: {a}")
        deadline = time.monotonic() + wait_ready_s
        while time.monotonic() < deadline and not all(node_ready_sync(n) for n in nodes):
            time.sleep(0.5)
        not_ready = [n.name for n in nodes if not node_ready_sync(n)]
        say("restore: all nodes ready" if not not_ready else f"restore: NOT ready after {wait_ready_s:.0f}s: {not_ready}")
        if not_ready:
            actions.append(f"not ready after restore: {', '.join(not_ready)}")
    return actions


def _restore_node(node: NodeRef) -> list[str]:
    actions: list[str] = []
    res = docker("inspect", "-f", "{{.State.Status}} {{json .NetworkSettings.Networks}}", node.container)
    if res.returncode != 0:
        return [f"{node.name}: container {node.container[:12]} is gone ({res.stderr.strip()})"]
    status, _, nets = res.stdout.strip().partition(" ")
    networks = json.loads(nets or "{}") or {}
    if status == "paused":
        docker("unpause", node.container)
        actions.append(f"{node.name}: unpaused")
    if node.network and node.network not in networks:
        cmd = ["network", "connect"]
        for alias in node.aliases:
            cmd += ["--alias", alias]
        r = docker(*cmd, node.network, node.container)
        actions.append(f"{node.name}: reconnected to {node.network}" + ("" if r.returncode == 0 else f" FAILED: {r.stderr.strip()}"))
    if status in ("exited", "created", "dead"):
        r = docker("start", node.container)
        actions.append(f"{node.name}: started" + ("" if r.returncode == 0 else f" FAILED: {r.stderr.strip()}"))
    return actions
