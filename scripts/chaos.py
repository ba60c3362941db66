#!/usr/bin/env python3
"""Fault injection against the docker compose cluster while a workload runs and invariants are checked.

    scripts/chaos --rounds N --report FILE [--seed S] [--instances 200] [--services 20] [--up]

The cluster must be running (``scripts/cluster up``; or pass ``--up`` to run it first). Each round injects
one fault into one node, chosen by the seeded RNG (every kind appears at least once when N >= 4, kill and
partition when N >= 2):

  kill       docker kill -s KILL the container, wait, docker start it
  pause      docker pause, wait, docker unpause
  partition  docker network disconnect the container from the compose network, wait, reconnect it
             (with its aliases); the host cannot reach its published port while it is cut
  restart    docker stop -t 10 (graceful), wait, docker start

Half of the rounds (at least one) hold the fault for longer than the heartbeat timeout. Meanwhile a
workload registers --instances instances in --services services through random nodes, light-beats each
one every ~1-2 s (re-registering on code 20404) through a random reachable node, lists every service on
every node continuously, deregisters a few instances and lets a few go silent every round. Checked all
the time, with violations recorded per round:

  1. live-instance-missing      a registered, heartbeating instance is missing from a reachable node's
                                list for longer than the heartbeat timeout (reachable: the list request
                                to that node succeeded; the clock restarts when the node becomes unreachable)
  2. deregistered-still-listed  an instance is still listed by a reachable node more than the expiry after
                                its deregistration was acknowledged (or after the node became reachable again)
  3. no-agreement-after-heal    after a heal, the three nodes do not list the same instances for every
                                service within --converge-bound-ms (default: expiry + 10 s); the time from
                                heal to agreement is the round's converge_ms
  and, once after the last round: silent-not-expired, live-not-listed-at-end, live-unhealthy-at-end.

Timings: --heartbeat-timeout-ms / --instance-expire-ms; by default the values the containers run with
(docker inspect), else $DISTRO_HEARTBEAT_TIMEOUT_MS / $DISTRO_INSTANCE_EXPIRE_MS, else .env, else
15000 / 30000. The cluster is restored (unpaused, reconnected, started) at the end, also on Ctrl-C.
Exit status: 0 no violations, 1 violations, 2 cannot run (cluster not up, bad arguments, or its containers
were removed or recreated by someone else during the run), 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("kill", "pause", "partition", "restart")
NODE_NAMES = ("node1", "node2", "node3")
NS = "/nacos/v1/ns"
DEFAULT_HEARTBEAT_TIMEOUT_MS = 15_000
DEFAULT_INSTANCE_EXPIRE_MS = 30_000


# ------------------------------------------------------------------------------------------------
# The plan: pure, seeded, testable without Docker
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlannedRound:
    index: int
    fault: str
    node: str
    duration_ms: int
    long: bool


def plan_rounds(
    rounds: int, seed: int, heartbeat_timeout_ms: int, nodes: tuple[str, ...] = NODE_NAMES,
    min_fault_ms: int = 1_000, kinds: tuple[str, ...] = KINDS,
) -> list[PlannedRound]:
    """Which fault hits which node for how long, per round. Deterministic in its arguments.

    Every kind appears at least once when ``rounds >= 4``, kill and partition when ``rounds >= 2`` (of
    ``kinds``, when it is narrowed). About
    half of the rounds (at least one) are "long": they hold the fault for 1.2-2.2 x the heartbeat timeout;
    the others for 0.3-0.8 x (never under ``min_fault_ms``).
    """
    rng = random.Random(seed)
    if rounds >= len(kinds) and rounds >= 4:
        must = list(kinds)
    elif rounds >= 2:
        must = [k for k in ("kill", "partition") if k in kinds] or list(kinds[:rounds])
    else:
        must = []
    chosen = must + [rng.choice(kinds) for _ in range(rounds - len(must))]
    rng.shuffle(chosen)
    long_rounds = set(rng.sample(range(rounds), k=max(1, rounds // 2))) if rounds else set()
    plan = []
    for i, kind in enumerate(chosen):
        is_long = i in long_rounds
        factor = rng.uniform(1.2, 2.2) if is_long else rng.uniform(0.3, 0.8)
        duration = max(min_fault_ms, int(heartbeat_timeout_ms * factor))
        plan.append(PlannedRound(i + 1, kind, rng.choice(nodes), duration, is_long))
    return plan


# ------------------------------------------------------------------------------------------------
# Docker and compose
# ------------------------------------------------------------------------------------------------
@dataclass
class NodeRef:
    name: str
    port: int
    container: str
    network: str = ""
    aliases: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _compose_env() -> dict[str, str]:
    env = dict(os.environ)
    if not env.get("DISTRO_CLUSTER_SECRET") and not _dotenv().get("DISTRO_CLUSTER_SECRET"):
        env["DISTRO_CLUSTER_SECRET"] = "unset"  # compose interpolates it even for `ps`
    return env


def _dotenv() -> dict[str, str]:
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
        if not node.container:
            continue
        res = docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", node.container)
        networks: dict[str, Any] = json.loads(res.stdout or "{}") or {}
        if networks:
            # The compose network is "<project>_distro"; a container only has that one.
            name = next((n for n in networks if n.endswith("_distro")), next(iter(networks)))
            node.network = name
            short = node.container[:12]
            node.aliases = [a for a in (networks[name].get("Aliases") or []) if a and a != short]
        if node.name not in node.aliases:
            node.aliases.insert(0, node.name)
    return nodes


def container_env(container: str) -> dict[str, str]:
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
    denv = _dotenv()

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
    try:
        with urllib.request.urlopen(node.url + "/readyz", timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError, ValueError):
        return False


def restore_cluster(nodes: list[NodeRef], wait_ready_s: float = 90.0, say: Any = print) -> list[str]:
    """Make every node running, unpaused and on its network again, whatever state chaos left it in.

    Synchronous and idempotent: runs after trio has exited (also on Ctrl-C). Returns what it did.
    """
    actions: list[str] = []
    for node in nodes:
        if not node.container:
            continue
        res = docker("inspect", "-f", "{{.State.Status}} {{json .NetworkSettings.Networks}}", node.container)
        if res.returncode != 0:
            actions.append(f"{node.name}: container {node.container[:12]} is gone ({res.stderr.strip()})")
            continue
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


# ------------------------------------------------------------------------------------------------
# Output
# ------------------------------------------------------------------------------------------------
class Console:
    """Lines with an elapsed-time prefix and a ticker (rewritten in place on a terminal, else every 5 s)."""

    def __init__(self, quiet: bool = False) -> None:
        self.t0 = time.monotonic()
        self.tty = sys.stdout.isatty()
        self.quiet = quiet
        self._ticker_shown = False
        self._last_tick_line = 0.0

    def stamp(self) -> str:
        return f"[{time.monotonic() - self.t0:7.1f}s]"

    def line(self, msg: str) -> None:
        if self._ticker_shown:
            sys.stdout.write("\r\033[K")
            self._ticker_shown = False
        sys.stdout.write(f"{self.stamp()} {msg}\n")
        sys.stdout.flush()

    def tick(self, msg: str) -> None:
        if self.quiet:
            return
        if self.tty:
            sys.stdout.write(f"\r\033[K{self.stamp()} {msg}")
            sys.stdout.flush()
            self._ticker_shown = True
        elif time.monotonic() - self._last_tick_line >= 5.0:
            self._last_tick_line = time.monotonic()
            self.line(msg)


# ------------------------------------------------------------------------------------------------
# A small keep-alive HTTP/1.1 client on trio
# ------------------------------------------------------------------------------------------------
# httpx costs ~2 ms of CPU per request here; on a 2-core machine that also runs the three nodes, the
# workload's own CPU starvation would then show up as "the registry is slow". This client does only what
# the workload needs (Content-Length bodies, keep-alive, per-request deadlines) at a fraction of the cost.
class HttpFailure(Exception):
    """No response: refused, reset, closed, or (``timeout``) too slow."""

    def __init__(self, message: str, timeout: bool = False, connect: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout
        self.connect = connect  # nothing was sent


@dataclass
class HttpResponse:
    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class NodeClient:
    """Keep-alive connections to one node (``host:port``); any number of concurrent requests."""

    def __init__(self, host: str, port: int, connect_timeout: float = 1.0, max_idle: int = 32) -> None:
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle
        self.idle: list[Any] = []

    async def aclose(self) -> None:
        while self.idle:
            await self.idle.pop().aclose()

    async def request(self, method: str, path: str, params: dict[str, Any] | None, timeout: float) -> HttpResponse:
        import trio

        target = path + ("?" + urllib.parse.urlencode(params) if params else "")
        head = f"{method} {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if method in ("POST", "PUT", "PATCH"):
            head += "Content-Length: 0\r\n"
        data = (head + "\r\n").encode()
        try:
            with trio.fail_after(timeout):
                return await self._request(data)
        except trio.TooSlowError:
            raise HttpFailure(f"{method} {path}: no answer within {timeout:.1f}s", timeout=True) from None

    async def _request(self, data: bytes) -> HttpResponse:
        import trio

        while self.idle:
            stream = self.idle.pop()
            try:
                # A reused connection may have been closed by the server meanwhile (node restarted,
                # idle timeout): then nothing was received and the request is sent again on a new one.
                return await self._exchange(stream, data)
            except _StaleConnection:
                continue
        try:
            with trio.fail_after(self.connect_timeout):
                stream = await trio.open_tcp_stream(self.host, self.port)
        except (OSError, trio.TooSlowError) as exc:
            raise HttpFailure(f"connect to {self.host}:{self.port}: {exc or 'timeout'}",
                              timeout=isinstance(exc, trio.TooSlowError), connect=True) from None
        try:
            return await self._exchange(stream, data)
        except _StaleConnection as exc:
            raise HttpFailure(str(exc)) from None

    async def _exchange(self, stream: Any, data: bytes) -> HttpResponse:
        import trio

        ok = False
        try:
            try:
                await stream.send_all(data)
                buf = b""
                while True:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        if not buf:
                            raise _StaleConnection("connection closed before the response")
                        raise HttpFailure("connection closed in the middle of the response")
                    buf += chunk
                    end = buf.find(b"\r\n\r\n")
                    if end >= 0:
                        break
                head = buf[:end].decode("latin-1")
                status = int(head[9:12])
                length = 0
                close = False
                for line in head.split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    name = name.strip().lower()
                    if name == "content-length":
                        length = int(value)
                    elif name == "connection" and "close" in value.lower():
                        close = True
                body = buf[end + 4 :]
                while len(body) < length:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        raise HttpFailure("connection closed in the middle of the body")
                    body += chunk
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise _StaleConnection(f"connection broken: {exc}") from None
            except ValueError as exc:
                raise HttpFailure(f"unparsable response: {exc}") from None
            ok = not close
            return HttpResponse(status, body[:length])
        finally:
            if ok and len(self.idle) < self.max_idle:
                self.idle.append(stream)
            else:
                with trio.CancelScope(shield=True):
                    await stream.aclose()


class _StaleConnection(Exception):
    pass


class ClusterReplaced(Exception):
    """A node's container vanished during the run (``compose down`` / ``up`` by someone else): the faults
    and checks would be about another cluster, so the run stops instead of reporting violations."""


# ------------------------------------------------------------------------------------------------
# Workload and checks (trio)
# ------------------------------------------------------------------------------------------------
@dataclass
class Inst:
    service: str
    ip: str
    port: int
    state: str = "new"  # new | live | silent | deregistering | deregistered | lost
    live_since: float | None = None  # registration acknowledged (monotonic)
    last_ack: float | None = None
    next_beat: float = 0.0
    busy: bool = False
    uncertain_register: bool = False  # a registration timed out: it may still be applied later
    dereg_at: float | None = None
    silent_at: float | None = None
    history: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=30))

    @property
    def key(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass
class Sweep:
    number: int
    started: float
    ended: float
    hosts: dict[str, frozenset[str]]
    unhealthy: dict[str, frozenset[str]]


@dataclass
class RoundState:
    plan: PlannedRound
    started_at: float  # monotonic
    record: dict[str, Any]
    violations: list[dict[str, Any]] = field(default_factory=list)
    stats: Counter[str] = field(default_factory=Counter)
    max_beat_gap: float = 0.0


class Chaos:
    def __init__(self, args: argparse.Namespace, nodes: list[NodeRef], timing: dict[str, Any], console: Console) -> None:
        import trio

        self.trio = trio
        self.args = args
        self.nodes = nodes
        self.by_name = {n.name: n for n in nodes}
        self.console = console
        self.hb_ms: int = timing["heartbeat_timeout_ms"]
        self.exp_ms: int = timing["instance_expire_ms"]
        self.hb = self.hb_ms / 1000
        self.exp = self.exp_ms / 1000
        self.converge_bound = (args.converge_bound_ms or (self.exp_ms + 10_000)) / 1000
        beat_base = args.beat_interval_ms or min(2_000, self.hb_ms // 2)
        self.beat_range = (beat_base / 2000, beat_base / 1000)
        self.read_interval = args.read_interval_ms / 1000
        self.write_timeout = (args.write_timeout_ms or min(3_000, max(1_000, self.hb_ms // 2))) / 1000
        self.rng = random.Random(args.seed * 7919 + 1)
        self.tag = os.urandom(3).hex()
        self.services = [f"chaos-{self.tag}-{i:02d}" for i in range(args.services)]
        self.instances: list[Inst] = []
        self.by_service: dict[str, list[Inst]] = {}
        self.next_index = 0
        # wall clock = monotonic + offset (for the report)
        self.mono0 = trio.current_time()
        self.wall0 = time.time()
        # node health as the workload sees it
        self.last_ok: dict[str, float] = {}
        self.last_fail: dict[str, float] = {}
        self.reachable_since: dict[str, float | None] = {n.name: None for n in nodes}
        self.missing_since: dict[str, dict[tuple[str, str], float]] = {n.name: {} for n in nodes}
        self.missing_reported: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.dereg_reported: set[tuple[str, str, str]] = set()
        self.sweeps: dict[str, Sweep] = {}
        self.sweep_event = trio.Event()
        # results
        self.violations: list[dict[str, Any]] = []
        self.warnings: list[dict[str, Any]] = []
        self.warning_counts: Counter[str] = Counter()
        self.rounds: list[RoundState] = []
        self.current: RoundState | None = None
        self.phase = "setup"
        self.phase_since = trio.current_time()
        self.stats: Counter[str] = Counter()
        self.clients: dict[str, NodeClient] = {}
        self.last_sweep_s = 0.0
        self.docker_error = ""
        self.interrupted = False
        self.aborted = ""
        self.final: dict[str, Any] = {}

    # -- time and records ------------------------------------------------------------------------
    def now(self) -> float:
        return float(self.trio.current_time())

    def wall(self, mono: float) -> float:
        return round(self.wall0 + (mono - self.mono0), 3)

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        self.phase_since = self.now()

    def violation(self, invariant: str, at: float | None = None, **detail: Any) -> dict[str, Any]:
        at = self.now() if at is None else at
        v: dict[str, Any] = {
            "invariant": invariant,
            "at": self.wall(at),
            "at_iso": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.wall(at))) + "Z",
            "round": self.current.plan.index if self.current else None,
            "phase": self.phase,
            **detail,
        }
        self.violations.append(v)
        if self.current is not None:
            self.current.violations.append(v)
        where = " ".join(f"{k}={detail[k]}" for k in ("node", "service", "instance") if k in detail)
        self.console.line(f"VIOLATION {invariant} {where} {detail.get('detail', '')}".rstrip())
        return v

    def warning(self, kind: str, **detail: Any) -> None:
        """Something worth knowing that is not an invariant (counted; the first examples are kept)."""
        self.warning_counts[kind] += 1
        self.count(f"warn_{kind}")
        if self.warning_counts[kind] <= 20:
            self.warnings.append({"kind": kind, "at": self.wall(self.now()),
                                  "round": self.current.plan.index if self.current else None, **detail})

    def event(self, inst: Inst, what: str) -> None:
        inst.history.append((self.now(), what))

    def history(self, inst: Inst) -> list[str]:
        return [f"{self.wall(t):.3f} {what}" for t, what in inst.history]

    def count(self, what: str, n: int = 1) -> None:
        self.stats[what] += n
        if self.current is not None:
            self.current.stats[what] += n

    # -- node selection ------------------------------------------------------------------------
    def note_ok(self, node: str) -> None:
        t = self.now()
        self.last_ok[node] = t

    def note_fail(self, node: str) -> None:
        self.last_fail[node] = self.now()

    def suspect(self, node: str) -> bool:
        return self.last_fail.get(node, -1.0) > self.last_ok.get(node, -2.0)

    def pick_nodes(self) -> list[str]:
        """Nodes in the order a client should try them: random reachable ones first."""
        names = [n.name for n in self.nodes]
        self.rng.shuffle(names)
        return sorted(names, key=self.suspect)

    # -- HTTP ------------------------------------------------------------------------------------
    async def request(
        self, node: str, method: str, path: str, params: dict[str, Any], timeout: float
    ) -> HttpResponse:
        return await self.clients[node].request(method, NS + path, params, timeout)

    async def register(self, inst: Inst, node: str) -> bool:
        """POST /instance through ``node``; True when it answered ``ok``."""
        params = {"serviceName": inst.service, "ip": inst.ip, "port": inst.port}
        try:
            resp = await self.request(node, "POST", "/instance", params, self.write_timeout)
        except HttpFailure as exc:
            # A request that was sent but not answered may still be applied later (e.g. by a paused node
            # once unpaused): such an instance is never picked for deregistration, whose check it would upset.
            inst.uncertain_register = inst.uncertain_register or not exc.connect
            self.note_fail(node)
            self.count("register_errors")
            self.event(inst, f"register via {node}: {exc}")
            return False
        if resp.status_code == 200 and resp.text.strip() == "ok":
            self.count("registers")
            self.event(inst, f"register via {node}: ok")
            return True
        self.count("register_errors")
        self.event(inst, f"register via {node}: {resp.status_code} {resp.text[:80]!r}")
        if resp.status_code >= 500:
            # e.g. a forward to the owner timed out: the owner may still apply it.
            inst.uncertain_register = True
        return False

    async def register_with_retries(self, inst: Inst, deadline: float) -> bool:
        while self.now() < deadline:
            for node in self.pick_nodes()[:2]:
                if await self.register(inst, node):
                    t = self.now()
                    if inst.state in ("new", "live"):
                        if inst.live_since is None:
                            inst.live_since = t
                        inst.state = "live"
                    inst.last_ack = t
                    inst.next_beat = t + self.rng.uniform(*self.beat_range)
                    return True
            await self.trio.sleep(0.3)
        return False

    def new_instance(self, service: str | None = None) -> Inst:
        i = self.next_index
        self.next_index += 1
        svc_idx = self.rng.randrange(len(self.services)) if service is None else self.services.index(service)
        inst = Inst(self.services[svc_idx], f"10.{100 + svc_idx}.{i // 250}.{i % 250 + 1}", 8080)
        self.instances.append(inst)
        self.by_service.setdefault(inst.service, []).append(inst)
        return inst

    async def beat_one(self, inst: Inst) -> None:
        try:
            await self._beat(inst)
        finally:
            inst.busy = False
            inst.next_beat = self.now() + self.rng.uniform(*self.beat_range)

    async def _beat(self, inst: Inst) -> None:
        params = {"serviceName": inst.service, "ip": inst.ip, "port": inst.port}
        for node in self.pick_nodes()[:2]:
            if inst.state != "live":
                return
            try:
                resp = await self.request(node, "PUT", "/instance/beat", params, self.write_timeout)
            except HttpFailure as exc:
                self.note_fail(node)
                self.count("beat_errors")
                self.event(inst, f"beat via {node}: {exc}")
                continue
            if resp.status_code != 200:
                self.count("beat_errors")
                self.event(inst, f"beat via {node}: {resp.status_code} {resp.text[:80]!r}")
                continue
            try:
                body = resp.json()
            except ValueError:
                body = None
            code = body.get("code") if isinstance(body, dict) else None
            if code == 20404:
                self.count("beats_20404")
                self.event(inst, f"beat via {node}: 20404")
                self.warning("beat-answered-20404", node=node, service=inst.service, instance=inst.key,
                             phase=self.phase, detail="a node did not know a registered, heartbeating instance "
                                                      "(the client re-registers it)",
                             history=self.history(inst)[-8:])
                if inst.state != "live":
                    return
                if not await self.register(inst, node):
                    continue
                self.count("reregistered")
            else:
                self.count("beats")
                self.event(inst, f"beat via {node}: ok")
            self.ack(inst)
            return
        self.count("beats_failed")

    def ack(self, inst: Inst) -> None:
        t = self.now()
        if inst.last_ack is not None:
            gap = t - inst.last_ack
            if self.current is not None:
                self.current.max_beat_gap = max(self.current.max_beat_gap, gap)
            if gap > self.hb:
                self.warning("beat-gap", service=inst.service, instance=inst.key,
                             detail=f"no beat acknowledged for {gap:.1f}s (heartbeat timeout {self.hb:.1f}s)")
            if gap > 0.8 * self.exp:
                # The registry may rightly have expired it: judge it as newly registered from now.
                inst.live_since = t
        inst.last_ack = t

    async def beat_loop(self) -> None:
        # No limit on beats in flight beyond one per instance: a node that hangs must not hold up the
        # beats of instances that another node would answer at once.
        async with self.trio.open_nursery() as nursery:
            while True:
                t = self.now()
                for inst in self.instances:
                    if inst.state == "live" and not inst.busy and inst.next_beat <= t:
                        inst.busy = True
                        nursery.start_soon(self.beat_one, inst)
                await self.trio.sleep(0.05)

    # -- readers and invariants 1 and 2 ----------------------------------------------------------
    async def sweeper(self) -> None:
        """List every service on every node, forever (a sweep, a pause, a sweep, ...)."""
        sweep_no = 0
        while True:
            sweep_no += 1
            t = self.now()
            await self.sweep(sweep_no)
            self.last_sweep_s = self.now() - t
            self.count("sweeps")
            self.sweep_event.set()
            self.sweep_event = self.trio.Event()
            await self.trio.sleep(self.read_interval * self.rng.uniform(0.8, 1.2))

    async def sweep(self, sweep_no: int) -> None:
        """One sweep. The three nodes are asked for a service at the same moment, so their answers can be
        compared (invariant 3); a node that fails is skipped for the rest of the sweep. Every answer is also
        checked against invariants 1 and 2."""
        timeout = self.args.read_timeout_ms / 1000
        limiter = self.trio.CapacityLimiter(self.args.read_parallelism)
        started = self.now()
        failed: set[str] = set()
        hosts: dict[str, dict[str, frozenset[str]]] = {n.name: {} for n in self.nodes}
        unhealthy: dict[str, dict[str, frozenset[str]]] = {n.name: {} for n in self.nodes}

        async def list_one(node: str, svc: str) -> None:
            if node in failed:
                return
            t = self.now()
            try:
                resp = await self.request(node, "GET", "/instance/list", {"serviceName": svc}, timeout)
                body = resp.json() if resp.status_code == 200 else None
            except (HttpFailure, ValueError):
                body = None
            if not isinstance(body, dict) or not isinstance(body.get("hosts"), list):
                if node not in failed:
                    failed.add(node)
                    self.count("read_errors")
                    self.node_unreachable(node)
                return
            self.count("reads")
            ids = frozenset(f"{h.get('ip')}:{h.get('port')}" for h in body["hosts"])
            bad = frozenset(f"{h.get('ip')}:{h.get('port')}" for h in body["hosts"] if not h.get("healthy", True))
            self.observe(node, svc, t, ids)
            hosts[node][svc] = ids
            unhealthy[node][svc] = bad

        async def service(svc: str) -> None:
            async with limiter, self.trio.open_nursery() as nursery:
                for n in self.nodes:
                    nursery.start_soon(list_one, n.name, svc)

        async with self.trio.open_nursery() as nursery:
            for svc in self.services:
                nursery.start_soon(service, svc)
        ended = self.now()
        for n in self.nodes:
            if n.name not in failed:
                self.sweeps[n.name] = Sweep(sweep_no, started, ended, hosts[n.name], unhealthy[n.name])

    def node_unreachable(self, node: str) -> None:
        self.note_fail(node)
        self.reachable_since[node] = None
        self.missing_since[node].clear()

    def observe(self, node: str, svc: str, t: float, ids: frozenset[str]) -> None:
        """One successful list of ``svc`` on ``node``, requested at ``t``."""
        self.note_ok(node)
        if self.reachable_since[node] is None:
            self.reachable_since[node] = t
        reach = self.reachable_since[node] or t
        missing = self.missing_since[node]
        for inst in self.by_service.get(svc, ()):
            k = (svc, inst.key)
            if inst.state == "live" and inst.live_since is not None and inst.live_since <= t:
                if inst.key in ids:
                    if k in missing:
                        del missing[k]
                        rep = self.missing_reported.pop((node, svc, inst.key), None)
                        if rep is not None:
                            rep["missing_ms"] = int((t - rep["_since"]) * 1000)
                            rep["detail"] = f"missing for {rep['missing_ms'] / 1000:.1f}s (bound {self.hb:.1f}s)"
                            del rep["_since"]
                    continue
                since = missing.setdefault(k, t)
                since = max(since, inst.live_since)
                if t - since > self.hb and (node, svc, inst.key) not in self.missing_reported:
                    v = self.violation(
                        "live-instance-missing", at=t, node=node, service=svc, instance=inst.key,
                        missing_since=self.wall(since),
                        detail=f"missing for more than {self.hb:.1f}s (heartbeat timeout) while heartbeating",
                        history=self.history(inst),
                    )
                    v["_since"] = since
                    self.missing_reported[(node, svc, inst.key)] = v
            else:
                missing.pop(k, None)
                if inst.state == "deregistered" and inst.dereg_at is not None and inst.key in ids:
                    deadline = max(inst.dereg_at, reach) + self.exp
                    if t > deadline and (node, svc, inst.key) not in self.dereg_reported:
                        self.dereg_reported.add((node, svc, inst.key))
                        self.violation(
                            "deregistered-still-listed", at=t, node=node, service=svc, instance=inst.key,
                            deregistered_at=self.wall(inst.dereg_at), node_reachable_since=self.wall(reach),
                            history=self.history(inst),
                            detail=f"still listed {t - inst.dereg_at:.1f}s after its deregistration "
                                   f"(bound {self.exp:.1f}s)",
                        )

    # -- invariant 3: agreement --------------------------------------------------------------------
    def agreement(self, after: float) -> tuple[bool, float, list[str]]:
        """Do the latest full sweeps (all started after ``after``) of every node agree? (ok, at, problems)."""
        problems: list[str] = []
        sweeps = []
        for n in self.nodes:
            s = self.sweeps.get(n.name)
            if s is None or s.started < after:
                problems.append(f"{n.name}: no full read since")
            else:
                sweeps.append(s)
        if problems:
            return False, 0.0, problems
        if len({s.number for s in sweeps}) != 1:
            return False, 0.0, ["the nodes' latest full reads are from different sweeps"]
        for svc in self.services:
            sets = [s.hosts.get(svc, frozenset()) for s in sweeps]
            if any(x != sets[0] for x in sets[1:]):
                union = frozenset().union(*sets)
                diff = {n.name: sorted(union - s)[:5] for n, s in zip(self.nodes, sets, strict=True) if union - s}
                problems.append(f"{svc}: lacking {diff}")
        return not problems, max(s.ended for s in sweeps), problems

    async def wait_agreement(self, after: float, bound: float) -> tuple[float | None, list[str]]:
        """Seconds from ``after`` until the nodes agree, or None after ``bound``. Also returns the last
        disagreement seen on the way (empty if the first complete sweep agreed)."""
        deadline = after + bound
        seen: list[str] = []
        last_print = self.now()
        while True:
            ok, at, problems = self.agreement(after)
            if ok:
                return max(0.0, at - after), seen
            if problems and not problems[0].endswith("no full read since") and "different sweeps" not in problems[0]:
                seen = problems[:10]
                if self.args.verbose and self.now() - last_print >= 2.0:
                    last_print = self.now()
                    self.console.line(f"  disagree: {'; '.join(problems[:3])}")
            if self.now() > deadline:
                return None, seen or problems[:10]
            with self.trio.move_on_at(deadline + 0.01):
                await self.sweep_event.wait()

    async def wait_ready(self, node: NodeRef, bound: float) -> float | None:
        t0 = self.now()
        while self.now() - t0 < bound:
            try:
                resp = await self.clients[node.name].request("GET", "/readyz", None, 1.0)
                if resp.status_code == 200:
                    return self.now() - t0
            except HttpFailure:
                pass
            await self.trio.sleep(0.2)
        return None

    # -- docker (async) ------------------------------------------------------------------------------
    async def docker(self, *args: str, timeout: float = 60) -> bool:
        self.docker_error = ""
        with self.trio.move_on_after(timeout):
            res = await self.trio.run_process(["docker", *args], capture_stdout=True, capture_stderr=True, check=False)
            if res.returncode != 0:
                self.docker_error = res.stderr.decode(errors="replace").strip()
                self.console.line(f"docker {' '.join(args)} failed: {self.docker_error}")
            return bool(res.returncode == 0)
        self.docker_error = f"timed out after {timeout:.0f}s"
        self.console.line(f"docker {' '.join(args)} timed out after {timeout:.0f}s")
        return False

    async def container_state(self, node: NodeRef) -> str:
        """``running exit=0 oom=false`` and the like; raises ClusterReplaced when the container is gone."""
        res = await self.trio.run_process(
            ["docker", "inspect", "-f", "{{.State.Status}} exit={{.State.ExitCode}} oom={{.State.OOMKilled}}",
             node.container], capture_stdout=True, capture_stderr=True, check=False)
        err = res.stderr.decode(errors="replace").strip()
        if res.returncode != 0 and "no such" in err.lower():
            raise ClusterReplaced(f"{node.name}'s container {node.container[:12]} no longer exists ({err}); "
                                  "was the cluster taken down or recreated (scripts/cluster up/down, compose "
                                  "up) during the run?")
        return res.stdout.decode(errors="replace").strip() or err

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

    # -- churn -------------------------------------------------------------------------------------
    async def deregister(self, inst: Inst, give_up_at: float) -> None:
        inst.state = "deregistering"
        while inst.busy:
            await self.trio.sleep(0.05)
        params = {"serviceName": inst.service, "ip": inst.ip, "port": inst.port}
        while self.now() < give_up_at:
            for node in self.pick_nodes()[:2]:
                try:
                    resp = await self.request(node, "DELETE", "/instance", params, self.write_timeout)
                except HttpFailure as exc:
                    self.note_fail(node)
                    self.event(inst, f"deregister via {node}: {exc}")
                    continue
                if resp.status_code == 200 and resp.text.strip() == "ok":
                    inst.state = "deregistered"
                    inst.dereg_at = self.now()
                    self.count("deregistered")
                    self.event(inst, f"deregister via {node}: ok")
                    return
                self.event(inst, f"deregister via {node}: {resp.status_code} {resp.text[:80]!r}")
            await self.trio.sleep(0.5)
        # Never acknowledged: it no longer beats, so treat it as silent.
        inst.state = "silent"
        inst.silent_at = self.now()
        self.warning("deregister-failed", service=inst.service, instance=inst.key)

    async def churn(self, delay: float) -> None:
        """Some deregistrations, silences and new registrations at one moment of a round."""
        await self.trio.sleep(delay)
        n_dereg = max(1, round(self.args.instances * self.args.dereg_fraction))
        n_silent = max(1, round(self.args.instances * self.args.silent_fraction))
        candidates = [i for i in self.instances if i.state == "live" and not i.uncertain_register]
        self.rng.shuffle(candidates)
        deregs, silents = candidates[:n_dereg], candidates[n_dereg : n_dereg + n_silent]
        for inst in silents:
            inst.state = "silent"
            inst.silent_at = self.now()
            self.count("silenced")
            self.event(inst, "silenced (no more beats)")
        fresh = [self.new_instance() for _ in range(len(deregs) + len(silents))]
        give_up = self.now() + max(30.0, 2 * self.exp)
        async with self.trio.open_nursery() as nursery:
            for inst in deregs:
                nursery.start_soon(self.deregister, inst, give_up)
            for inst in fresh:
                nursery.start_soon(self.register_new, inst, give_up)

    async def register_new(self, inst: Inst, give_up_at: float) -> None:
        if not await self.register_with_retries(inst, give_up_at):
            inst.state = "lost"
            self.warning("register-failed", service=inst.service, instance=inst.key)

    # -- ticker ----------------------------------------------------------------------------------------
    async def ticker(self) -> None:
        last = Counter(self.stats)
        last_t = self.now()
        while True:
            await self.trio.sleep(1.0)
            t = self.now()
            dt = max(1e-3, t - last_t)
            rate = {k: (self.stats[k] - last[k]) / dt for k in ("beats", "reads")}
            last, last_t = Counter(self.stats), t
            r = self.current
            where = f"r{r.plan.index}/{self.args.rounds} {r.plan.fault} {r.plan.node}" if r else "--"
            reach = "".join("+" if not self.suspect(n.name) else "-" for n in self.nodes)
            live = sum(1 for i in self.instances if i.state == "live")
            self.console.tick(
                f"{where} {self.phase} {t - self.phase_since:5.1f}s | nodes {reach} | live {live} | "
                f"beats {rate['beats']:.0f}/s err {self.stats['beat_errors']} 20404 {self.stats['beats_20404']} | "
                f"reads {rate['reads']:.0f}/s err {self.stats['read_errors']} sweep {self.last_sweep_s:.2f}s | violations {len(self.violations)}"
            )

    async def watch_sigterm(self, cancel: Any) -> None:
        with self.trio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                self.interrupted = True
                cancel.cancel()
                return

    # -- the run -----------------------------------------------------------------------------------------
    async def run(self) -> None:
        trio = self.trio
        self.clients = {n.name: NodeClient("127.0.0.1", n.port, max_idle=self.args.concurrency) for n in self.nodes}
        try:
            async with trio.open_nursery() as bg:
                bg.start_soon(self.watch_sigterm, bg.cancel_scope)
                bg.start_soon(self.ticker)
                bg.start_soon(self.sweeper)
                await self.setup()
                bg.start_soon(self.beat_loop)
                await self.baseline()
                for planned in plan_rounds(self.args.rounds, self.args.seed, self.hb_ms, kinds=self.args.kinds):
                    await self.run_round(planned)
                self.current = None
                await self.final_checks()
                bg.cancel_scope.cancel()
            if not self.args.keep and not self.interrupted:
                await self.cleanup()
        finally:
            with trio.CancelScope(shield=True):
                for c in self.clients.values():
                    await c.aclose()

    async def setup(self) -> None:
        self.set_phase("register")
        per = [self.services[i % len(self.services)] for i in range(self.args.instances)]
        fresh = [self.new_instance(svc) for svc in per]
        deadline = self.now() + 60
        limiter = self.trio.CapacityLimiter(self.args.concurrency)

        async def one(inst: Inst) -> None:
            async with limiter:
                await self.register_new(inst, deadline)

        t0 = self.now()
        async with self.trio.open_nursery() as nursery:
            for inst in fresh:
                nursery.start_soon(one, inst)
        ok = sum(1 for i in fresh if i.state == "live")
        self.console.line(f"registered {ok}/{len(fresh)} instances in {len(self.services)} services "
                          f"in {self.now() - t0:.1f}s (services chaos-{self.tag}-NN)")
        if ok < len(fresh):
            self.violation("setup", detail=f"only {ok}/{len(fresh)} registrations acknowledged within 60s")

    async def baseline(self) -> None:
        self.set_phase("baseline")
        t0 = self.now()
        took, problems = await self.wait_agreement(t0, self.converge_bound)
        if took is None:
            self.violation("no-agreement-after-heal", detail="the nodes did not agree before the first fault",
                           problems=problems[:10])
        else:
            self.console.line(f"baseline: all nodes agree ({took * 1000:.0f} ms)")

    async def ensure_healthy(self) -> None:
        """Before a round and at the end: every node running and ready. A container that stopped on its
        own is a violation (with its last log lines); whatever a failed heal left behind is restored."""
        for n in self.nodes:
            state = await self.container_state(n)
            if not state.startswith(("running", "paused")):
                logs = await self.trio.run_process(["docker", "logs", "--tail", "30", n.container],
                                                   capture_stdout=True, capture_stderr=True, check=False)
                tail = (logs.stdout + logs.stderr).decode(errors="replace").splitlines()[-30:]
                self.violation("node-exited", node=n.name, detail=f"container is {state}", logs=tail)
        not_ready = [n for n in self.nodes if await self.wait_ready(n, 0.1) is None]
        if not not_ready:
            return
        actions = await self.trio.to_thread.run_sync(lambda: restore_cluster(self.nodes, 60.0, self.console.line))
        not_ready = [n for n in self.nodes if await self.wait_ready(n, 5.0) is None]
        if not_ready:
            self.violation("node-not-ready", detail=f"{[n.name for n in not_ready]} not ready; restore did {actions}")

    async def run_round(self, planned: PlannedRound) -> None:
        trio = self.trio
        await self.ensure_healthy()
        node = self.by_name[planned.node]
        started = self.now()
        record: dict[str, Any] = {
            "round": planned.index, "fault": planned.fault, "node": planned.node,
            "started_at": self.wall(started), "planned_ms": planned.duration_ms, "long": planned.long,
        }
        rs = RoundState(planned, started, record)
        self.rounds.append(rs)
        self.current = rs
        self.console.line(
            f"round {planned.index}/{self.args.rounds}: {planned.fault} {planned.node} for "
            f"{planned.duration_ms / 1000:.1f}s{' (longer than the heartbeat timeout)' if planned.long else ''}"
        )
        self.set_phase("fault")
        async with trio.open_nursery() as nursery:
            applied = await self.inject(planned.fault, node)
            t_applied = self.now()
            if not applied:
                self.violation("fault-not-applied", node=planned.node,
                               detail=f"docker could not {planned.fault} it: {self.docker_error}",
                               container_state=await self.container_state(node))
            duration = planned.duration_ms / 1000
            nursery.start_soon(self.churn, self.rng.uniform(0.2, 0.8) * duration)
            await trio.sleep_until(t_applied + duration)
            self.set_phase("heal")
            healed = await self.heal(planned.fault, node)
            t_heal = self.now()
            record["duration_ms"] = int((t_heal - t_applied) * 1000)
            if not healed:
                self.violation("heal-failed", node=planned.node,
                               detail=f"docker could not undo {planned.fault}: {self.docker_error}",
                               container_state=await self.container_state(node))
            self.set_phase("converge")
            ready = await self.wait_ready(node, self.converge_bound)
            record["ready_ms"] = None if ready is None else int((self.now() - t_heal) * 1000)
            took, problems = await self.wait_agreement(t_heal, self.converge_bound)
            record["converge_ms"] = None if took is None else int(took * 1000)
            record["disagreement_sample"] = problems[:5]
            if took is None:
                self.violation(
                    "no-agreement-after-heal", node=planned.node,
                    detail=f"nodes did not agree within {self.converge_bound:.1f}s of the heal",
                    problems=problems[:10],
                )
        self.set_phase("settle")
        await trio.sleep(self.args.settle_ms / 1000)
        record["stats"] = dict(rs.stats)
        record["max_beat_gap_ms"] = int(rs.max_beat_gap * 1000)
        conv = "never" if record["converge_ms"] is None else f"{record['converge_ms']} ms"
        self.console.line(
            f"round {planned.index} done: {planned.fault} {planned.node} held {record['duration_ms'] / 1000:.1f}s, "
            f"converged in {conv}, {len(rs.violations)} violation(s), beats {rs.stats['beats']} "
            f"(errors {rs.stats['beat_errors']}, 20404 {rs.stats['beats_20404']})"
        )

    async def final_checks(self) -> None:
        """After the last round: everything agrees, live instances listed and healthy, silent ones gone."""
        self.set_phase("final")
        await self.ensure_healthy()
        t0 = self.now()
        took, problems = await self.wait_agreement(t0, self.converge_bound)
        start = self.now()
        deadline = start + self.exp + self.hb + 10.0
        while True:
            issues = self.final_issues(start)
            if not issues or self.now() > deadline:
                break
            with self.trio.move_on_after(1.0):
                await self.sweep_event.wait()
        for invariant, node, inst, detail in issues:
            self.violation(invariant, node=node, service=inst.service, instance=inst.key, detail=detail,
                           history=self.history(inst))
        self.final = {
            "agreement_ms": None if took is None else int(took * 1000),
            "settled_ms": int((self.now() - start) * 1000),
            "issues": len(issues),
        }
        if took is None:
            self.violation("no-agreement-after-heal", detail="nodes did not agree at the end", problems=problems[:10])
        self.console.line(f"final: {'agree' if took is not None else 'DISAGREE'}, {len(issues)} issue(s) after "
                          f"{self.final['settled_ms'] / 1000:.1f}s")

    def final_issues(self, after: float) -> list[tuple[str, str, Inst, str]]:
        issues: list[tuple[str, str, Inst, str]] = []
        for n in self.nodes:
            s = self.sweeps.get(n.name)
            if s is None or s.started < after:
                return [("final-no-read", n.name, self.instances[0], "no full read")] if self.instances else []
        for n in self.nodes:
            s = self.sweeps[n.name]
            for inst in self.instances:
                listed = inst.key in s.hosts.get(inst.service, frozenset())
                if inst.state == "live" and inst.live_since is not None and inst.live_since < s.started:
                    if not listed:
                        issues.append(("live-not-listed-at-end", n.name, inst, "heartbeating but not listed"))
                    elif inst.key in s.unhealthy.get(inst.service, frozenset()):
                        issues.append(("live-unhealthy-at-end", n.name, inst, "heartbeating but unhealthy"))
                elif inst.state == "silent" and listed:
                    issues.append(("silent-not-expired", n.name, inst, "silent but still listed"))
                elif (inst.state == "deregistered" and listed
                      and (n.name, inst.service, inst.key) not in self.dereg_reported):
                    issues.append(("deregistered-still-listed", n.name, inst, "deregistered but still listed"))
        return issues

    async def cleanup(self) -> None:
        """Deregister what this run left (best effort)."""
        self.set_phase("cleanup")
        left = [i for i in self.instances if i.state in ("live", "silent")]
        limiter = self.trio.CapacityLimiter(self.args.concurrency)

        async def one(inst: Inst) -> None:
            params = {"serviceName": inst.service, "ip": inst.ip, "port": inst.port}
            async with limiter:
                for node in self.pick_nodes()[:2]:
                    with contextlib.suppress(HttpFailure):
                        resp = await self.request(node, "DELETE", "/instance", params, 3.0)
                        if resp.status_code == 200:
                            return

        with self.trio.move_on_after(30):
            async with self.trio.open_nursery() as nursery:
                for inst in left:
                    nursery.start_soon(one, inst)

    # -- report ----------------------------------------------------------------------------------------
    def report(self, settings: dict[str, Any]) -> dict[str, Any]:
        rounds = []
        for rs in self.rounds:
            rec = dict(rs.record)
            rec.setdefault("duration_ms", None)
            rec.setdefault("converge_ms", None)
            rec.setdefault("stats", dict(rs.stats))
            rec["violations"] = [self._clean(v) for v in rs.violations]
            rounds.append(rec)
        return {
            "rounds": rounds,
            "violations": [self._clean(v) for v in self.violations],
            "seed": self.args.seed,
            "settings": settings,
            "final": self.final,
            "stats": dict(self.stats),
            "warnings": self.warnings,
            "warning_counts": dict(self.warning_counts),
            "interrupted": self.interrupted,
            "aborted": self.aborted,
            "services_prefix": f"chaos-{self.tag}-",
        }

    @staticmethod
    def _clean(v: dict[str, Any]) -> dict[str, Any]:
        return {k: val for k, val in v.items() if not k.startswith("_")}


# ------------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------------
def _kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise argparse.ArgumentTypeError(f"unknown fault kind(s) {bad}; expected some of {','.join(KINDS)}")
    return kinds


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scripts/chaos", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, required=True, help="faults to inject, one per round")
    p.add_argument("--report", required=True, help="write the JSON report here")
    p.add_argument("--seed", type=int, default=None, help="RNG seed (default: random, printed)")
    p.add_argument("--instances", type=int, default=200, help="instances registered at the start (200)")
    p.add_argument("--services", type=int, default=20, help="services they are spread over (20)")
    p.add_argument("--heartbeat-timeout-ms", type=int, default=None, help="default: what the containers run with")
    p.add_argument("--instance-expire-ms", type=int, default=None, help="default: what the containers run with")
    p.add_argument("--beat-interval-ms", type=int, default=None,
                   help="each instance beats every 0.5-1 x this (default min(2000, heartbeat timeout / 2))")
    p.add_argument("--read-interval-ms", type=int, default=500, help="pause between two list sweeps of a node")
    p.add_argument("--read-parallelism", type=int, default=4, help="services listed at once (on all nodes) in a sweep")
    p.add_argument("--read-timeout-ms", type=int, default=2000, help="a list request slower than this fails")
    p.add_argument("--write-timeout-ms", type=int, default=None,
                   help="a beat or registration slower than this fails, the client tries another node "
                        "(default: heartbeat timeout / 2 within 1000..3000)")
    p.add_argument("--converge-bound-ms", type=int, default=None, help="agreement after a heal within (expiry + 10 s)")
    p.add_argument("--settle-ms", type=int, default=1000, help="pause after convergence before the next round")
    p.add_argument("--dereg-fraction", type=float, default=0.01, help="instances deregistered per round (1%%, >= 1)")
    p.add_argument("--silent-fraction", type=float, default=0.005, help="instances going silent per round (>= 1)")
    p.add_argument("--concurrency", type=int, default=32,
                   help="registrations in flight at most at the start; idle connections kept per node")
    p.add_argument("--kinds", type=_kinds, default=KINDS,
                   help="comma-separated fault kinds to draw from (default: kill,pause,partition,restart)")
    p.add_argument("--up", action="store_true", help="run scripts/cluster up first")
    p.add_argument("--keep", action="store_true", help="do not deregister the workload's instances at the end")
    p.add_argument("--plan", action="store_true", help="print the fault plan and exit")
    p.add_argument("--quiet", action="store_true", help="no ticker")
    p.add_argument("--verbose", action="store_true", help="print what disagrees while waiting for agreement")
    return p


def print_summary(report: dict[str, Any], elapsed: float) -> None:
    s = report["settings"]
    print()
    print(f"== chaos summary: seed {report['seed']}, {len(report['rounds'])} round(s), {elapsed:.0f}s, "
          f"heartbeat timeout {s['heartbeat_timeout_ms']} ms, expiry {s['instance_expire_ms']} ms")
    print(f"   {'#':>2}  {'fault':<9} {'node':<6} {'held':>7} {'ready':>8} {'converge':>9}  violations")
    for r in report["rounds"]:
        held = "-" if r.get("duration_ms") is None else f"{r['duration_ms'] / 1000:.1f}s"
        ready = "-" if r.get("ready_ms") is None else f"{r['ready_ms']} ms"
        conv = "never" if r.get("converge_ms") is None else f"{r['converge_ms']} ms"
        print(f"   {r['round']:>2}  {r['fault']:<9} {r['node']:<6} {held:>7} {ready:>8} {conv:>9}  {len(r['violations'])}")
    convs = [r["converge_ms"] for r in report["rounds"] if r.get("converge_ms") is not None]
    if convs:
        print(f"   converge_ms: worst {max(convs)}, median {sorted(convs)[len(convs) // 2]}")
    st = report["stats"]
    print(f"   beats {st.get('beats', 0)} ok, {st.get('beat_errors', 0)} errors, {st.get('beats_failed', 0)} failed "
          f"on 2 nodes, {st.get('beats_20404', 0)} answered 20404 ({st.get('reregistered', 0)} re-registered); "
          f"reads {st.get('reads', 0)} ok, {st.get('read_errors', 0)} failed; deregistered {st.get('deregistered', 0)}, "
          f"silenced {st.get('silenced', 0)}")
    if report["warning_counts"]:
        print("   warnings (not invariants): " + ", ".join(f"{k} x{v}" for k, v in report["warning_counts"].items()))
    if report["aborted"]:
        print(f"ABORTED (the report is partial; violations after the cluster changed mean nothing): "
              f"{report['aborted']}")
    if report["violations"]:
        kinds = Counter(v["invariant"] for v in report["violations"])
        print(f"FAIL: {len(report['violations'])} violation(s): " + ", ".join(f"{k} x{v}" for k, v in kinds.items()))
        for v in report["violations"][:20]:
            where = " ".join(f"{k}={v[k]}" for k in ("round", "node", "service", "instance") if v.get(k) is not None)
            print(f"   - {v['at_iso']} {v['invariant']} {where}: {v.get('detail', '')}")
    elif report["aborted"]:
        pass
    elif report["interrupted"]:
        print("INTERRUPTED: no violations until then; the report is partial")
    else:
        print("PASS: no violations")


def _is_interrupt(exc: BaseException) -> bool:
    """Ctrl-C, also when trio delivers it wrapped in an exception group."""
    if isinstance(exc, KeyboardInterrupt):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return exc.subgroup(lambda e: isinstance(e, KeyboardInterrupt)) is not None
    return False


def _replaced(exc: BaseException) -> ClusterReplaced | None:
    """The ClusterReplaced in ``exc`` (also inside an exception group), if any."""
    if isinstance(exc, ClusterReplaced):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        group = exc.subgroup(lambda e: isinstance(e, ClusterReplaced))
        while isinstance(group, BaseExceptionGroup):
            group = group.exceptions[0]
        return group
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.rounds < 0 or args.instances < 1 or args.services < 1:
        print("chaos: --rounds must be >= 0, --instances and --services >= 1", file=sys.stderr)
        return 2
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 1_000_000)
    if args.plan:
        hb = args.heartbeat_timeout_ms or DEFAULT_HEARTBEAT_TIMEOUT_MS
        for r in plan_rounds(args.rounds, args.seed, hb, kinds=args.kinds):
            print(f"round {r.index}: {r.fault:<9} {r.node} {r.duration_ms} ms{' long' if r.long else ''}")
        return 0
    try:
        import trio
    except ImportError as exc:
        print(f"chaos: {exc}; run it with the project's venv (scripts/chaos does)", file=sys.stderr)
        return 2
    console = Console(args.quiet)
    if args.up:
        console.line("running scripts/cluster up")
        if subprocess.run([str(ROOT / "scripts" / "cluster"), "up"], check=False).returncode != 0:
            print("chaos: scripts/cluster up failed", file=sys.stderr)
            return 2
    nodes = discover_nodes()
    missing = [n.name for n in nodes if not n.container]
    not_ready = [n.name for n in nodes if n.container and not node_ready_sync(n)]
    if missing or not_ready:
        print(f"chaos: the compose cluster is not running (no container: {missing or '-'}, not ready: "
              f"{not_ready or '-'}); start it with scripts/cluster up (or pass --up)", file=sys.stderr)
        return 2
    if any(not n.network for n in nodes):
        print("chaos: could not find the containers' compose network", file=sys.stderr)
        return 2
    timing = effective_timing(args, nodes)
    for w in timing.get("warnings", []):
        console.line(f"warning: {w}")
    settings: dict[str, Any] = {
        **timing,
        "rounds": args.rounds,
        "instances": args.instances,
        "services": args.services,
        "beat_interval_ms": args.beat_interval_ms or min(2_000, timing["heartbeat_timeout_ms"] // 2),
        "read_interval_ms": args.read_interval_ms,
        "converge_bound_ms": args.converge_bound_ms or timing["instance_expire_ms"] + 10_000,
        "dereg_per_round": max(1, round(args.instances * args.dereg_fraction)),
        "silent_per_round": max(1, round(args.instances * args.silent_fraction)),
        "nodes": {n.name: {"url": n.url, "container": n.container[:12], "network": n.network} for n in nodes},
    }
    console.line(
        f"chaos: seed {args.seed}, {args.rounds} round(s), heartbeat timeout {timing['heartbeat_timeout_ms']} ms, "
        f"expiry {timing['instance_expire_ms']} ms ({timing['timing_source']['heartbeat_timeout_ms']}), "
        f"{args.instances} instances in {args.services} services, report {args.report}"
    )
    for r in plan_rounds(args.rounds, args.seed, timing["heartbeat_timeout_ms"], kinds=args.kinds):
        console.line(f"  plan {r.index}: {r.fault} {r.node} {r.duration_ms / 1000:.1f}s")

    import trio

    chaos: Chaos | None = None
    t0 = time.monotonic()

    async def amain() -> None:
        nonlocal chaos
        chaos = Chaos(args, nodes, timing, console)
        await chaos.run()

    rc = 0
    try:
        trio.run(amain)
    except BaseException as exc:  # the cluster is restored whatever happened
        replaced = _replaced(exc)
        if _is_interrupt(exc):
            console.line("interrupted: restoring the cluster")
            rc = 130
            if chaos is not None:
                chaos.interrupted = True
        elif replaced is not None:
            console.line(f"ABORTED: {replaced}")
            rc = 2
            if chaos is not None:
                chaos.aborted = str(replaced)
        elif isinstance(exc, SystemExit):
            raise
        else:
            traceback.print_exception(exc)
            console.line("chaos crashed: restoring the cluster")
            rc = 2
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            restore_cluster(nodes, say=console.line)
        finally:
            signal.signal(signal.SIGINT, previous)
    if chaos is None:
        return rc or 2
    if chaos.interrupted:
        rc = 130
    report = chaos.report(settings)
    report["elapsed_s"] = round(time.monotonic() - t0, 1)
    Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
    print_summary(report, time.monotonic() - t0)
    print(f"report: {args.report}")
    if rc:
        return rc
    return 1 if report["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
