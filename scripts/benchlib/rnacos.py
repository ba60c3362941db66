"""r-nacos 0.8.8 (a Rust re-implementation of the Nacos server) as the second peer of ``scripts/bench``.

It is built once from crates.io with ``cargo install rnacos --version 0.8.8 --locked`` into a cache outside
the repository (``~/.cache/distro-bench/rnacos-0.8.8``, or ``$DISTRO_BENCH_CACHE/rnacos-0.8.8``), with cargo's
progress shown; ``RNACOS_BIN`` names a binary to use instead. Without cargo the phase is skipped with a note.

A cluster is three members on 127.0.0.1: member 1 initialises raft (r-nacos keeps its membership in raft),
the others join it through member 1's gRPC port; naming data (what the benchmark drives) is replicated by
r-nacos's Distro-like protocol between the members that raft knows. Each member's data lives under the
benchmark's temporary directory. r-nacos 0.8.8 often panics while initialising raft on a fresh data
directory on a busy machine (a start-up race: ``raftapply.rs`` unwraps a dependency that is injected a
moment later); the member then runs but its raft is dead. ``RnacosCluster.start_first`` works around it
(member 1 starts from a template of a clean boot, kept in the build cache), and
the cluster counts as ready only once a probe instance registered on member 1 is listed by every member.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from benchlib.procs import Proc, ProcessSet, free_ports, http_get, log

VERSION = "0.8.8"
NS = "/nacos/v1/ns"
# Each member's gRPC port is its HTTP port + 1000: r-nacos's default, and what Nacos 2.x clients (and the gRPC
# load generators of benchlib.grpcbench) assume.
GRPC_OFFSET = 1000


def cache_root() -> Path:
    base = os.environ.get("DISTRO_BENCH_CACHE") or str(Path.home() / ".cache" / "distro-bench")
    return Path(base) / f"rnacos-{VERSION}"


def ensure_rnacos() -> tuple[str | None, str]:
    """(path of the r-nacos binary, how it was found) or (None, why not)."""
    given = os.environ.get("RNACOS_BIN")
    if given:
        return (given, "RNACOS_BIN") if os.access(given, os.X_OK) else (None, f"RNACOS_BIN={given} is not executable")
    root = cache_root()
    binary = root / "bin" / "rnacos"
    if os.access(binary, os.X_OK):
        return str(binary), f"cached in {root}"
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    if not os.access(cargo, os.X_OK):
        return None, ("cargo not found: r-nacos is skipped (install Rust from https://rustup.rs, or set RNACOS_BIN "
                      "to an rnacos 0.8.8 binary)")
    cmd = [cargo, "install", "rnacos", "--version", VERSION, "--locked", "--root", str(root)]
    log(f"building r-nacos {VERSION} from crates.io (about 20 minutes on two cores, once): {' '.join(cmd)}")
    started = time.monotonic()
    with subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stderr is not None
        compiled = 0
        for line in proc.stderr:
            line = line.strip()
            if line.startswith("Compiling"):
                compiled += 1
                if compiled % 25 == 1:
                    log(f"  cargo: {compiled} crates compiled ({time.monotonic() - started:.0f} s): {line}")
            elif line.startswith(("error", "Installed", "Finished", "Downloaded")):
                log(f"  cargo: {line}")
    if proc.returncode != 0 or not os.access(binary, os.X_OK):
        return None, f"cargo install rnacos {VERSION} failed (exit status {proc.returncode}): r-nacos skipped"
    return str(binary), f"built in {time.monotonic() - started:.0f} s into {root}"


def instance_count(addr: str, prefix: str = "") -> int:
    """Instances the member lists (``catalog/services``), over services named ``prefix-*`` (all services when
    ``prefix`` is empty)."""
    total = 0
    page = 1
    while True:
        status, body = http_get(f"http://{addr}{NS}/catalog/services?pageNo={page}&pageSize=1000", 5.0)
        if status != 200:
            return -1
        rows = json.loads(body).get("serviceList", [])
        for row in rows:
            if not prefix or str(row.get("name", "")).startswith(prefix + "-"):
                total += int(row.get("ipCount", 0))
        if len(rows) < 1000:
            return total
        page += 1


@dataclass
class RnacosCluster:
    """Three r-nacos members on 127.0.0.1 (free HTTP and console ports, gRPC on HTTP + 1000), started for one
    phase."""

    ps: ProcessSet
    binary: str
    label: str
    http_ports: list[int]
    grpc_ports: list[int]
    console_ports: list[int]
    env: dict[str, str]
    nodes: list[Proc | None]
    last_failure: str = ""

    @property
    def addrs(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.http_ports]

    def data_dir(self, i: int, attempt: int = 0) -> Path:
        return self.ps.workdir / f"{self.label}-r{i + 1}" / f"db{attempt}"

    def start_node(self, i: int, attempt: int = 0, join: bool = True) -> Proc:
        """Member ``r{i+1}``: member 1 initialises raft on a fresh directory; the others join member 1."""
        data = self.data_dir(i, attempt)
        data.mkdir(parents=True, exist_ok=True)
        env = {
            **self.env,
            "RNACOS_HTTP_PORT": str(self.http_ports[i]), "RNACOS_GRPC_PORT": str(self.grpc_ports[i]),
            "RNACOS_HTTP_CONSOLE_PORT": str(self.console_ports[i]), "RNACOS_RAFT_NODE_ID": str(i + 1),
            "RNACOS_RAFT_NODE_ADDR": f"127.0.0.1:{self.grpc_ports[i]}", "RNACOS_DATA_DIR": str(data),
            "RNACOS_RAFT_AUTO_INIT": "true" if i == 0 else "false",
        }
        if i > 0 and join:
            env["RNACOS_RAFT_JOIN_ADDR"] = f"127.0.0.1:{self.grpc_ports[0]}"
        boost = i == 0 and os.geteuid() == 0 and shutil.which("chrt") is not None
        cmd = ["chrt", "-f", "10", self.binary] if boost else [self.binary]
        proc = self.ps.start(f"{self.label}-r{i + 1}", cmd, env=env)
        self.nodes[i] = proc
        return proc

    def node(self, i: int) -> Proc:
        proc = self.nodes[i]
        assert proc is not None
        return proc

    def healthy(self, i: int) -> bool:
        return http_get(f"http://{self.addrs[i]}/health", 1.0)[0] == 200

    def _panicked(self, i: int) -> bool:
        try:
            return "panicked" in self.node(i).log_path.read_text(errors="replace")
        except OSError:
            return False

    def _boot_clean(self, attempt: int, timeout: float) -> bool:
        """Start member 1 on ``data_dir(0, attempt)``; True when it is healthy and did not panic."""
        proc = self.start_node(0, attempt)
        deadline = time.monotonic() + timeout
        while not self.healthy(0) and time.monotonic() < deadline and proc.alive():
            time.sleep(0.05)
        time.sleep(0.5)  # the race shows within a moment of raft's initialisation
        _demote(proc.pid)
        alive, healthy, panicked = proc.alive(), self.healthy(0), self._panicked(0)
        if alive and healthy and not panicked:
            return True
        self.last_failure = f"alive {alive}, /health {'ok' if healthy else 'not ok'}, panicked {panicked}"
        self.ps.stop(proc)
        return False

    def start_first(self, timeout: float = 30.0) -> None:
        """Member 1 with raft initialised.

        A fresh data directory often loses r-nacos's start-up race on a busy machine (4 of 6 boots at a load
        average of 12 here, and at times every one of a dozen); booting under SCHED_FIFO (``chrt -f 10``, as
        root; every thread goes back to the normal scheduler as soon as it answers) helped at times but not
        always. Restarting on a directory whose first boot went well never panicked: nothing is left to apply
        when raft starts. So the first clean boot is kept as a template in the build cache (the directory holds
        raft's log and config data, no naming data), and every cluster starts member 1 on a copy of it, then
        waits until r-nacos re-records the member's new address in raft (it does so 5 s after start-up when it
        finds a single-member cluster with another address)."""
        template = cache_root() / "member1-template"
        for attempt in range(20):
            if template.exists():
                shutil.copytree(template, self.data_dir(0, attempt), dirs_exist_ok=True)
                if self._boot_clean(attempt, timeout):
                    time.sleep(6.0)
                    return
            elif self._boot_clean(attempt, timeout):
                self.ps.stop(self.node(0))
                shutil.copytree(self.data_dir(0, attempt), template)
                log(f"  r-nacos: kept member 1's first clean boot as a template in {template}")
                if self._boot_clean(attempt, timeout):
                    return
            log(f"  r-nacos member 1 failed to start (attempt {attempt + 1}: {self.last_failure}): retrying")
        raise RuntimeError("r-nacos member 1 did not start:\n" + self.node(0).tail())

    def wait_replicating(self, timeout: float = 60.0) -> None:
        """Until an instance registered on member 1 is listed by every member (raft membership and naming
        replication both work), then deregister it."""
        url = f"{NS}/instance?serviceName=bench-ready&ip=10.254.254.254&port=1"
        deadline = time.monotonic() + timeout
        while True:
            for i, proc in enumerate(self.nodes):
                if proc is None or not proc.alive():
                    raise RuntimeError(f"r-nacos member {i + 1} exited:\n{proc.tail() if proc else ''}")
            _post(self.addrs[0], url, "POST")
            seen = [b'"10.254.254.254"' in http_get(f"http://{a}{NS}/instance/list?serviceName=bench-ready", 1.0)[1]
                    for a in self.addrs]
            if all(seen):
                _post(self.addrs[0], url, "DELETE")
                return
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- r{i + 1}\n{self.node(i).tail()}" for i in range(len(self.nodes)))
                raise RuntimeError(f"r-nacos cluster {self.label} not replicating after {timeout:.0f} s:\n{tails}")
            time.sleep(0.2)

    def stop(self) -> None:
        for proc in self.nodes:
            if proc is not None:
                self.ps.stop(proc)
        self.nodes = [None] * len(self.http_ports)


def _demote(pid: int) -> None:
    """Every thread of ``pid`` back to the normal scheduler (member 1 boots under SCHED_FIFO, see
    :meth:`RnacosCluster.start_first`; it must not keep an edge over the rest while measured)."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return
    for tid in tids:
        with contextlib.suppress(OSError):
            os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))


def _post(addr: str, target: str, method: str) -> None:
    import urllib.request

    req = urllib.request.Request(f"http://{addr}{target}", method=method, data=b"")
    try:
        with urllib.request.urlopen(req, timeout=2.0) as resp:
            resp.read()
    except OSError:
        pass


def start_rnacos(ps: ProcessSet, binary: str, label: str, *, long_timeouts: bool, workers: int = 2,
                 size: int = 3, extra_env: dict[str, str] | None = None) -> RnacosCluster:
    """A fresh three-member cluster. ``long_timeouts``: instances that never beat stay healthy for an hour
    (as ours run with ``--heartbeat-timeout-ms 3600000``); otherwise r-nacos's defaults (15 s, 30 s).
    ``extra_env``: more of r-nacos's settings, for one phase."""
    env = {"RUST_LOG": "warn", "RNACOS_HTTP_WORKERS": str(workers), **(extra_env or {})}
    if long_timeouts:
        env.update({"RNACOS_NAMING_HEALTH_TIMEOUT_SECOND": "3600", "RNACOS_NAMING_INSTANCE_TIMEOUT_SECOND": "3600"})
    http_ports = free_ports(size, GRPC_OFFSET)
    cluster = RnacosCluster(ps, binary, label, http_ports, [p + GRPC_OFFSET for p in http_ports], free_ports(size),
                            env, [None] * size)
    try:
        cluster.start_first()
        for i in range(1, size):
            cluster.start_node(i)
        cluster.wait_replicating()
    except BaseException:
        cluster.stop()
        raise
    return cluster
