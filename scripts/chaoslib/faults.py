"""The faults, injected and healed with docker (asynchronously, while the workload runs):

  kill       docker kill -s KILL the container, wait, docker start it
  pause      docker pause, wait, docker unpause
  partition  docker network disconnect the container from the compose network, wait, reconnect it
             (with its aliases); the host cannot reach its published port while it is cut
  restart    docker stop -t 10 (graceful), wait, docker start
"""

from __future__ import annotations

import trio

from chaoslib.compose import NodeRef
from chaoslib.console import Console


class ClusterReplaced(Exception):
    """A node's container vanished during the run (``compose down`` / ``up`` by someone else): the faults
    and checks would be about another cluster, so the run stops instead of reporting violations."""


class Faults:
    """docker commands against the nodes' containers; ``docker_error`` holds the last failure's message."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.docker_error = ""

    async def docker(self, *args: str, timeout: float = 60) -> bool:
        """Run ``docker ARGS``; True when it succeeded within ``timeout`` seconds."""
        self.docker_error = ""
        with trio.move_on_after(timeout):
            res = await trio.run_process(["docker", *args], capture_stdout=True, capture_stderr=True, check=False)
            if res.returncode != 0:
                self.docker_error = res.stderr.decode(errors="replace").strip()
                self.console.line(f"docker {' '.join(args)} failed: {self.docker_error}")
            return bool(res.returncode == 0)
        self.docker_error = f"timed out after {timeout:.0f}s"
        self.console.line(f"docker {' '.join(args)} timed out after {timeout:.0f}s")
        return False

    async def container_state(self, node: NodeRef) -> str:
        """``running exit=0 oom=false`` and the like; raises ClusterReplaced when the container is gone."""
        res = await trio.run_process(
            ["docker", "inspect", "-f", "{{.State.Status}} exit={{.State.ExitCode}} oom={{.State.OOMKilled}}",
             node.container], capture_stdout=True, capture_stderr=True, check=False)
        err = res.stderr.decode(errors="replace").strip()
        if res.returncode != 0 and "no such" in err.lower():
            raise ClusterReplaced(f"{node.name}'s container {node.container[:12]} no longer exists ({err}); "
                                  "was the cluster taken down or recreated (scripts/cluster up/down, compose "
                                  "up) during the run?")
        return res.stdout.decode(errors="replace").strip() or err

    async def logs_tail(self, node: NodeRef, lines: int = 30) -> list[str]:
        """The container's last log lines (stdout and stderr)."""
        logs = await trio.run_process(["docker", "logs", "--tail", str(lines), node.container],
                                      capture_stdout=True, capture_stderr=True, check=False)
        return (logs.stdout + logs.stderr).decode(errors="replace").splitlines()[-lines:]

    async def inject(self, kind: str, node: NodeRef) -> bool:
        c = node.container
        if kind == "kill":
            return await self.docker("kill", "-s", "KILL", c)
        if kind == "pause":
            return await self.docker("pause", c)
        if kind == "partition":
            return await self.docker("network", "disconnect", node.network, c)
        if kind == "restart":
            return await self.docker("stop", "-t", "10", c, timeout=30)
        raise ValueError(kind)

    async def heal(self, kind: str, node: NodeRef) -> bool:
        c = node.container
        if kind in ("kill", "restart"):
            return await self.docker("start", c)
        if kind == "pause":
            return await self.docker("unpause", c)
        if kind == "partition":
            cmd = ["network", "connect"]
            for alias in node.aliases:
                cmd += ["--alias", alias]
            return await self.docker(*cmd, node.network, c)
        raise ValueError(kind)
