"""Fixtures for the Docker end-to-end tests: the compose cluster of docker-compose.yml, with short health
timings so that faults and expiries play out in seconds.

The cluster runs as its own compose project (``distro-e2e-<pid>``) on free host ports, so a test run never
touches the cluster a developer (or another test run) has up on 8848-8850, and vice versa.

Without a usable Docker engine (``docker info`` fails) the tests skip and say why; with
``DISTRO_REQUIRE_DOCKER=1`` they fail instead (CI machines that are meant to have Docker).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cluster.tools.launcher import free_ports

ROOT = Path(__file__).resolve().parents[2]

# Passed to `scripts/cluster up` (compose reads them over .env): an instance is unhealthy after 3 s without
# a beat and deleted after 6 s; anti-entropy every second so that a healed partition converges quickly; a
# gRPC connection idle 3 s is probed and given up 1 s later (the chaos run's frozen clients).
E2E_ENV = {
    "DISTRO_HEARTBEAT_TIMEOUT_MS": "3000",
    "DISTRO_INSTANCE_EXPIRE_MS": "6000",
    "DISTRO_VERIFY_INTERVAL_MS": "1000",
    "DISTRO_GRPC_PROBE_AFTER_IDLE_MS": "3000",
    "DISTRO_GRPC_GIVE_UP_AFTER_MS": "1000",
}
NODE_PORTS = {"node1": 8848, "node2": 8849, "node3": 8850}


def docker_problem() -> str | None:
    """Why the Docker end-to-end tests cannot run here, or None if they can."""
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 30 s"
    if info.returncode != 0:
        lines = (info.stderr or info.stdout).strip().splitlines()
        return f"`docker info` failed: {lines[-1] if lines else 'exit status ' + str(info.returncode)}"
    v2 = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30, check=False)
    if v2.returncode != 0 and shutil.which("docker-compose") is None:
        return "neither `docker compose` (v2) nor `docker-compose` (v1) is available"
    return None


def require_docker() -> None:
    problem = docker_problem()
    if problem is None:
        return
    if os.environ.get("DISTRO_REQUIRE_DOCKER") == "1":
        pytest.fail(f"DISTRO_REQUIRE_DOCKER=1 but there is no usable Docker engine: {problem}", pytrace=False)
    pytest.skip(f"no usable Docker engine ({problem}); set DISTRO_REQUIRE_DOCKER=1 to fail instead of skipping")


@dataclass
class ComposeCluster:
    """The running cluster: environment it was started with, and the nodes' URLs on the host."""

    env: dict[str, str]
    up_seconds: float
    up_log: str
    urls: dict[str, str] = field(default_factory=dict)

    def script(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run ``scripts/<args[0]> args[1:]`` from the repository root with the cluster's environment."""
        return subprocess.run(
            [str(ROOT / "scripts" / args[0]), *args[1:]],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout, check=False,
        )


def isolated_env() -> dict[str, str]:
    """Our environment plus E2E_ENV, a private compose project name and free host ports for the nodes (HTTP
    and gRPC) and the demo profile's consumer."""
    *ports, demo_port = free_ports(2 * len(NODE_PORTS) + 1, offsets=())
    env = {**os.environ, **E2E_ENV, "COMPOSE_PROJECT_NAME": f"distro-e2e-{os.getpid()}",
           "DEMO_CONSUMER_PORT": str(demo_port)}
    for name, port, grpc_port in zip(NODE_PORTS, ports[: len(NODE_PORTS)], ports[len(NODE_PORTS):], strict=True):
        env[f"DISTRO_NODE{name[-1]}_PORT"] = str(port)
        env[f"DISTRO_NODE{name[-1]}_GRPC_PORT"] = str(grpc_port)
    return env


def _ports(env: dict[str, str]) -> dict[str, str]:
    return {
        name: f"http://127.0.0.1:{env.get(f'DISTRO_NODE{name[-1]}_PORT', str(port))}"
        for name, port in NODE_PORTS.items()
    }


@pytest.fixture(scope="session")
def compose_cluster() -> Iterator[ComposeCluster]:
    """`scripts/cluster up` (builds the image if the sources changed) with E2E_ENV as a private compose
    project; `scripts/cluster down` afterwards, whatever happened."""
    require_docker()
    env = isolated_env()
    cluster = ComposeCluster(env=env, up_seconds=0.0, up_log="", urls=_ports(env))
    t0 = time.monotonic()
    try:
        up = cluster.script("cluster", "up", "--timeout", "180", timeout=900)
        cluster.up_seconds = time.monotonic() - t0
        cluster.up_log = up.stdout + up.stderr
        if up.returncode != 0:
            pytest.fail(f"scripts/cluster up failed (exit {up.returncode}):\n{cluster.up_log[-8000:]}", pytrace=False)
        print(f"\n[e2e] scripts/cluster up took {cluster.up_seconds:.1f}s (project {env['COMPOSE_PROJECT_NAME']}, "
              f"{' '.join(cluster.urls.values())})")
        yield cluster
    finally:
        down = cluster.script("cluster", "down", timeout=300)
        if down.returncode != 0:
            print(f"[e2e] scripts/cluster down failed:\n{down.stdout}{down.stderr}")
