"""The one way to start ``distro-node`` child processes on this machine.

:class:`LocalNode` is one node process: its command line (the cluster secret travels in the environment,
never on the command line, so ``ps`` does not show it), its log file, and start, stop, kill and restart.
Free-port helpers pick ports whose gRPC port (``+ GRPC_PORT_OFFSET``) and peer-link port
(``+ PEER_PORT_OFFSET``) are free too. Used by
``distroctl local-cluster`` (:mod:`cluster.tools.localcluster`), the benchmark (``scripts/benchlib/procs.py``)
and the tests that run real nodes.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import httpx

from distro.errors import ClusterError

__all__ = [
    "GRPC_PORT_OFFSET",
    "LOCALHOST",
    "PEER_PORT_OFFSET",
    "ClusterError",
    "LocalNode",
    "ephemeral_port_range",
    "free_port_range",
    "free_ports",
    "node_command",
    "port_is_free",
]

GRPC_PORT_OFFSET = 1000
"""Nacos's rule: 2.x/3.x clients reach a node over gRPC on its HTTP port + 1000 (``--grpc-port-offset``)."""
PEER_PORT_OFFSET = 1001
"""Peer links listen on the HTTP port + 1001, Nacos's cluster port (``--peer-port-offset``)."""
_OFFSETS = (GRPC_PORT_OFFSET, PEER_PORT_OFFSET)
LOCALHOST = "127.0.0.1"
_PR_SET_PDEATHSIG = 1


def node_command() -> list[str]:
    """How to run ``distro-node``: the script next to this interpreter, on PATH, or ``python -c``."""
    candidate = Path(sys.executable).parent / "distro-node"
    if candidate.exists():
        return [str(candidate)]
    found = shutil.which("distro-node")
    if found:
        return [found]
    return [sys.executable, "-c", "from cluster.node.main import main; main()"]


def port_is_free(port: int, host: str = LOCALHOST) -> bool:
    """True when a listener could bind ``host:port`` now (with SO_REUSEADDR, as the node does)."""
    if not 0 < port < 65536:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


_LOWEST_PORT = 10000
"""Ports are picked at or above this (below it sit well-known services)."""
_recently_picked: set[int] = set()
"""Ports (with their offsets) this process handed out, so two calls in a row never return the same one
before the first caller binds it. Bounded: cleared when it holds more than 4,096."""


def ephemeral_port_range() -> tuple[int, int]:
    """The kernel's range of source ports for outgoing connections (Linux's
    ``net.ipv4.ip_local_port_range``; 32768-60999, its default, where it cannot be read)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(field) for field in f.read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def _candidate_windows(max_offset: int) -> list[tuple[int, int]]:
    """Inclusive ranges of base ports ``p`` such that ``p`` and ``p + max_offset`` both lie outside the
    ephemeral range: a port picked there cannot be taken meanwhile as the source port of some outgoing
    connection (which is what made bind-port-0-then-release pickers fail now and then)."""
    low, high = ephemeral_port_range()
    windows = [(_LOWEST_PORT, low - 1 - max_offset), (high + 1, 65535 - max_offset)]
    return [(a, b) for a, b in windows if b - a >= 100]


def free_ports(
    count: int, *, host: str = LOCALHOST, offsets: tuple[int, ...] = _OFFSETS, attempts: int = 400
) -> list[int]:
    """``count`` distinct ports ``p`` such that ``p`` and ``p + offset`` for every one of ``offsets`` (the
    gRPC and peer-link ports) are free now.

    They are picked at random outside the kernel's ephemeral range (:func:`ephemeral_port_range`), so no
    outgoing connection of this machine can take one before its node binds it; another program picking
    ports could, so callers still retry on a bind failure (:meth:`LocalCluster.start_with_retries`).
    Falls back to letting the kernel pick (port 0) where the ephemeral range leaves no room.
    """
    max_offset = max(offsets, default=0)
    windows = _candidate_windows(max_offset)
    if len(_recently_picked) > 4096:
        _recently_picked.clear()
    chosen: list[int] = []
    for _ in range(attempts):
        if len(chosen) == count:
            break
        if windows:
            low, high = random.choice(windows)
            port = random.randint(low, high)
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
                port = int(sock.getsockname()[1])
        family = {port, *(port + offset for offset in offsets)}
        if max(family) > 65535 or family & _recently_picked:
            continue
        if not all(port_is_free(p, host) for p in family):
            continue
        chosen.append(port)
        _recently_picked.update(family)
    if len(chosen) < count:
        shown = ", ".join(f"port+{offset}" for offset in offsets)
        raise ClusterError(f"could not find {count} free ports (with {shown} free too) on {host}")
    return chosen


def free_port_range(
    count: int, *, host: str = LOCALHOST, step: int = 10, offsets: tuple[int, ...] = _OFFSETS, attempts: int = 200
) -> int:
    """A base port ``b`` such that ``b, b+step, ..., b+(count-1)*step`` and the same plus each of ``offsets``
    are all free now (``distroctl local-cluster --port-step``)."""
    spread = tuple(sorted({i * step + offset for i in range(count) for offset in (0, *offsets)} - {0}))
    try:
        (base,) = free_ports(1, host=host, offsets=spread, attempts=attempts)
    except ClusterError:
        raise ClusterError(f"could not find {count} consecutive free port pairs on {host}") from None
    return base


def _die_with_parent() -> None:  # runs in the child between fork and exec
    """Linux: SIGTERM this child when the process that started it dies (no orphans after a kill -9)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except Exception:  # not Linux, or no prctl: best effort
        pass


class LocalNode:
    """One ``distro-node`` child process.

    ``die_with_parent``: SIGTERM it when we die (Linux); ``own_process_group``: its own process group, so a
    terminal's Ctrl-C does not reach it; ``new_session``: its own session (and group), for callers that
    signal the whole group; ``hermetic_env``: our ``DISTRO_*`` variables are not passed on; ``cwd``: its
    working directory (ours by default); ``data_dir``: its ``--data-dir`` (by default a temporary folder
    of its own, made at the first start, kept across restarts of this node and removed with this object,
    so that a node's cluster data survives its restarts and never leaks into another run).
    """

    def __init__(
        self,
        node_id: str,
        port: int,
        peers: Sequence[str],
        secret: str,
        *,
        host: str = LOCALHOST,
        node_args: Sequence[str] = (),
        log_path: Path | None = None,
        die_with_parent: bool = False,
        own_process_group: bool = False,
        new_session: bool = False,
        hermetic_env: bool = False,
        cwd: Path | None = None,
        data_dir: Path | None = None,
    ) -> None:
        self.node_id = node_id
        self.host = host
        self.port = port
        self.peers = tuple(peers)
        self.secret = secret
        self.node_args = tuple(node_args)
        self.log_path = log_path
        self.die_with_parent = die_with_parent
        self.own_process_group = own_process_group
        self.new_session = new_session
        self.hermetic_env = hermetic_env
        self.cwd = cwd
        self._data_dir = data_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log_offset = 0  # where the current run's output begins in the log file

    def __repr__(self) -> str:
        return f"LocalNode({self.node_id} {self.address} pid={self.pid})"

    @property
    def address(self) -> str:
        """``host:port`` (HTTP)."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.address}"

    @property
    def peer_port(self) -> int:
        """The peer link's port."""
        return self.port + PEER_PORT_OFFSET

    @property
    def grpc_port(self) -> int:
        """The Nacos 2.x gRPC port (clients are given the HTTP address and add 1000 themselves)."""
        return self.port + GRPC_PORT_OFFSET

    @property
    def data_dir(self) -> Path:
        """The node's ``--data-dir`` (a temporary folder of its own unless one was given)."""
        if self._data_dir is None:
            folder = Path(tempfile.mkdtemp(prefix=f"distro-{self.node_id}-"))
            weakref.finalize(self, shutil.rmtree, folder, ignore_errors=True)
            self._data_dir = folder
        return self._data_dir

    @property
    def pid(self) -> int | None:
        """The current process id (None before start)."""
        return None if self.process is None else self.process.pid

    def command(self) -> list[str]:
        """The ``distro-node`` command line (the secret travels in the environment)."""
        return [
            *node_command(),
            "--node-id", self.node_id,
            "--host", self.host,
            "--port", str(self.port),
            "--advertise-address", self.address,
            "--peers", ",".join(self.peers),
            "--peer-port-offset", str(PEER_PORT_OFFSET),
            "--grpc-port-offset", str(GRPC_PORT_OFFSET),
            "--data-dir", str(self.data_dir),
            *self.node_args,
        ]

    def environment(self) -> dict[str, str]:
        """The child's environment: ours (without DISTRO_* when hermetic) plus the cluster secret."""
        env = {k: v for k, v in os.environ.items() if not (self.hermetic_env and k.startswith("DISTRO_"))}
        env["DISTRO_CLUSTER_SECRET"] = self.secret
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def start(self) -> None:
        """Start the process (its output goes to ``log_path``, or to our stderr without one)."""
        if self.running():
            raise ClusterError(f"node {self.node_id} is already running (pid {self.pid})")
        log_file: IO[bytes] | None = None
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log_file = open(self.log_path, "ab")  # noqa: SIM115 (the child keeps its own copy)
            self.log_offset = log_file.tell()
        try:
            self.process = subprocess.Popen(
                self.command(),
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log_file if log_file is not None else 2,  # our stderr
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if self.die_with_parent else None,
                process_group=0 if self.own_process_group and not self.new_session else None,
                start_new_session=self.new_session,
                cwd=self.cwd,
            )
        finally:
            if log_file is not None:
                log_file.close()
        self.starts += 1

    def running(self) -> bool:
        """True while the process has not exited."""
        return self.process is not None and self.process.poll() is None

    def returncode(self) -> int | None:
        """The exit code once exited (negative: killed by that signal)."""
        return None if self.process is None else self.process.poll()

    def kill(self) -> None:
        """``kill -9`` and reap."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            self.process.wait()

    def signal(self, signum: int) -> None:
        """Send a signal if the process is still running."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL; the exit code."""
        if self.process is None:
            return None
        self.signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.process.returncode

    def restart(self) -> None:
        """Start again on the same ports (after a kill or a stop)."""
        if self.running():
            self.stop()
        self.start()

    def is_ready(self, client: httpx.Client) -> bool:
        """``GET /readyz`` answers 200."""
        try:
            return client.get(f"{self.url}/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def log_text(self, *, current_run_only: bool = False) -> str:
        """The node's log (all runs, or only the current one)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        data = self.log_path.read_bytes()
        if current_run_only:
            data = data[self.log_offset :]
        return data.decode("utf-8", errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the log."""
        return "\n".join(self.log_text().splitlines()[-lines:])
