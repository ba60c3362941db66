"""Starting and stopping the systems under test: our three-node cluster and a three-member etcd.

Every process is started in its own session (so its whole process group can be signalled) and recorded
in a :class:`ProcessSet`; ``ProcessSet.stop_all()`` (called from ``finally``) sends SIGTERM to every
group, waits, then SIGKILLs what is left.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from cluster.tools.launcher import LocalNode
from cluster.tools.launcher import free_ports as launcher_free_ports

ROOT = Path(__file__).resolve().parents[2]


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_ports(count: int, offset: int = 0) -> list[int]:
    """``count`` ports free on 127.0.0.1 such that ``port + offset`` is free too (when offset > 0), outside
    the kernel's ephemeral range and never handed out twice by this process
    (:func:`cluster.tools.launcher.free_ports`)."""
    return launcher_free_ports(count, offsets=(offset,) if offset else ())


def rss_bytes(pid: int) -> int:
    """Resident set size from /proc/PID/status (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def schedstat(pid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for a CPU), summed over the process's threads."""
    run = wait = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0, 0.0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                a, b, _ = f.read().split()
        except (OSError, ValueError):
            continue
        run += int(a)
        wait += int(b)
    return run / 1e9, wait / 1e9


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, ValueError):
        return 0, b""


@dataclass
class Proc:
    """A process the benchmark started, with its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    started_at: float

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class ProcessSet:
    """Every process the benchmark started."""

    workdir: Path
    procs: list[Proc] = field(default_factory=list)

    def start(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> Proc:
        log_path = self.workdir / f"{name}.log"
        out = open(log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        popen = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, **(env or {})}, cwd=ROOT,
        )
        out.close()
        return self.adopt(name, popen, log_path)

    def adopt(self, name: str, popen: subprocess.Popen[bytes], log_path: Path) -> Proc:
        """Record a process started elsewhere (in its own session, like ours) so stop_all() stops it."""
        proc = Proc(name, popen, log_path, time.perf_counter())
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc, grace: float = 5.0) -> None:
        if proc.alive():
            proc.kill(signal.SIGTERM)
            try:
                proc.popen.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill(signal.SIGKILL)
                proc.popen.wait(5)
        proc.kill(signal.SIGKILL)  # anything left in its process group
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.procs):
            if proc.alive():
                proc.kill(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in list(self.procs):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(max(0.0, deadline - time.monotonic()))
        for proc in list(self.procs):
            proc.kill(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(5)
        self.procs.clear()


# ----------------------------------------------------------------------------------------------
# our cluster
# ----------------------------------------------------------------------------------------------
@dataclass
class DistroCluster:
    """Our nodes on 127.0.0.1 (peer links on port + 1000), started for one phase."""

    ps: ProcessSet
    label: str
    ports: list[int]
    secret: str
    extra_flags: list[str]
    nodes: list[Proc | None]

    @property
    def addrs(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.ports]

    def start_node(self, i: int) -> Proc:
        """Start node ``n{i+1}`` with the one launcher (cluster/tools/launcher.py), in its own session."""
        name = f"{self.label}-n{i + 1}"
        node = LocalNode(f"n{i + 1}", self.ports[i], self.addrs, self.secret, node_args=self.extra_flags,
                         log_path=self.ps.workdir / f"{name}.log", new_session=True, cwd=ROOT)
        node.start()
        assert node.process is not None and node.log_path is not None
        proc = self.ps.adopt(name, node.process, node.log_path)
        self.nodes[i] = proc
        return proc

    def node(self, i: int) -> Proc:
        proc = self.nodes[i]
        assert proc is not None
        return proc

    def wait_ready(self, indexes: list[int] | None = None, timeout: float = 30.0) -> None:
        """Until every given node answers /readyz 200 and sees the others up."""
        idx = list(range(len(self.ports))) if indexes is None else indexes
        deadline = time.monotonic() + timeout
        while True:
            pending = []
            for i in idx:
                proc = self.nodes[i]
                if proc is None or not proc.alive():
                    raise RuntimeError(f"node n{i + 1} exited:\n{proc.tail() if proc else ''}")
                status, _ = http_get(f"http://{self.addrs[i]}/readyz", 1.0)
                if status != 200:
                    pending.append(i)
                    continue
                status, body = http_get(f"http://{self.addrs[i]}/nacos/v1/ns/operator/servers?healthy=true", 1.0)
                up = body.count(b'"state":"UP"') if status == 200 else 0
                if up < len(idx):
                    pending.append(i)
            if not pending:
                return
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- n{i + 1}\n{self.node(i).tail()}" for i in pending)
                raise RuntimeError(f"cluster {self.label} not ready after {timeout}s:\n{tails}")
            time.sleep(0.05)

    def stop(self) -> None:
        for proc in self.nodes:
            if proc is not None:
                self.ps.stop(proc)
        self.nodes = [None] * len(self.ports)


def start_distro(ps: ProcessSet, label: str, extra_flags: list[str], size: int = 3, attempts: int = 3) -> DistroCluster:
    """Start a ``size``-node cluster on ports whose gRPC and peer-link neighbours are free too; when a node
    could not bind (another process took a port in between), start again on new ports."""
    for attempt in range(1, attempts + 1):
        ports = node_ports(size)
        cluster = DistroCluster(ps, label, ports, secrets.token_hex(32), extra_flags, [None] * size)
        for i in range(size):
            cluster.start_node(i)
        try:
            cluster.wait_ready()
            return cluster
        except RuntimeError as exc:
            cluster.stop()
            if attempt == attempts or "Address already in use" not in str(exc):
                raise
            log(f"{label}: a port was taken while the nodes started; retrying on new ports")
    raise AssertionError("unreachable")


def node_ports(size: int) -> list[int]:
    """HTTP ports for our nodes, each with its gRPC (+1000) and peer-link (+1001) ports free as well."""
    return launcher_free_ports(size)


# ----------------------------------------------------------------------------------------------
# etcd
# ----------------------------------------------------------------------------------------------
def ensure_etcd() -> str | None:
    """Path of etcd 3.4 (installing Debian's etcd-server when absent and apt-get works), or None."""
    found = shutil.which("etcd")
    if found:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return None
    log("etcd not found: apt-get install -y etcd-server etcd-client")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "install", "-y", "etcd-server", "etcd-client"],
                ["apt-get", "update"],
                ["apt-get", "install", "-y", "etcd-server", "etcd-client"]):
        res = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        if res.returncode == 0 and cmd[1] == "install":
            break
    return shutil.which("etcd")


@dataclass
class EtcdCluster:
    """Three etcd members on 127.0.0.1, started for the etcd phase."""

    ps: ProcessSet
    client_ports: list[int]
    members: list[Proc]

    @property
    def addrs(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.client_ports]

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            ok = 0
            for i, addr in enumerate(self.addrs):
                if not self.members[i].alive():
                    raise RuntimeError(f"etcd member {i + 1} exited:\n{self.members[i].tail()}")
                status, body = http_get(f"http://{addr}/health", 1.0)
                if status == 200 and b'"true"' in body:
                    ok += 1
            if ok == len(self.addrs):
                return
            if time.monotonic() > deadline:
                raise RuntimeError("etcd not healthy:\n" + "\n".join(m.tail() for m in self.members))
            time.sleep(0.1)

    def stop(self) -> None:
        for proc in self.members:
            self.ps.stop(proc)


def start_etcd(ps: ProcessSet, etcd: str, size: int = 3) -> EtcdCluster:
    client = free_ports(size)
    peer = free_ports(size)
    token = "bench-" + secrets.token_hex(4)
    initial = ",".join(f"e{i + 1}=http://127.0.0.1:{peer[i]}" for i in range(size))
    members = []
    for i in range(size):
        data = ps.workdir / f"etcd-e{i + 1}"
        data.mkdir(parents=True, exist_ok=True)
        cmd = [
            etcd, "--name", f"e{i + 1}", "--data-dir", str(data),
            "--listen-client-urls", f"http://127.0.0.1:{client[i]}",
            "--advertise-client-urls", f"http://127.0.0.1:{client[i]}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer[i]}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer[i]}",
            "--initial-cluster", initial, "--initial-cluster-state", "new",
            "--initial-cluster-token", token, "--enable-v2=false", "--log-level", "warn",
        ]
        members.append(ps.start(f"etcd-e{i + 1}", cmd))
    cluster = EtcdCluster(ps, client, members)
    cluster.wait_ready()
    return cluster
