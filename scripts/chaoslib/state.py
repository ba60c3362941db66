"""What the workload and the checks share: the instances, the time bounds, and the record of the run."""

from __future__ import annotations

import argparse
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from chaoslib.console import Console
from chaoslib.plan import PlannedRound
from distro.config import DistroConfig

# Added to the gRPC gone bound: a sweep of every node (the checks see a change that much later) and replication.
GRPC_SLACK_MS = 5_000


class HasHistory(Protocol):
    """Anything with a short history of events (an instance, a gRPC client)."""

    history: deque[tuple[float, str]]


@dataclass
class Inst:
    """One instance of the workload and what the workload knows about it."""

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
    """One node's answers to one full sweep: every service's hosts, and which of them were unhealthy."""

    number: int
    started: float
    ended: float
    hosts: dict[str, frozenset[str]]
    unhealthy: dict[str, frozenset[str]]


@dataclass
class RoundState:
    """One round as it runs: its plan, its report record, its violations and counters."""

    plan: PlannedRound
    started_at: float  # monotonic
    record: dict[str, Any]
    violations: list[dict[str, Any]] = field(default_factory=list)
    stats: Counter[str] = field(default_factory=Counter)
    max_beat_gap: float = 0.0


@dataclass(frozen=True)
class Timing:
    """The bounds the checks judge by and the pace of the workload, in seconds."""

    heartbeat_timeout_ms: int
    expire_ms: int
    converge_bound_s: float
    beat_range_s: tuple[float, float]
    read_interval_s: float
    read_timeout_s: float
    write_timeout_s: float

    @property
    def heartbeat_timeout_s(self) -> float:
        return self.heartbeat_timeout_ms / 1000

    @property
    def expire_s(self) -> float:
        return self.expire_ms / 1000

    @classmethod
    def from_settings(cls, args: argparse.Namespace, timing: dict[str, Any]) -> Timing:
        """From the flags and the effective heartbeat timeout and expiry (compose.effective_timing)."""
        hb_ms: int = timing["heartbeat_timeout_ms"]
        exp_ms: int = timing["instance_expire_ms"]
        beat_base = args.beat_interval_ms or min(2_000, hb_ms // 2)
        return cls(
            heartbeat_timeout_ms=hb_ms,
            expire_ms=exp_ms,
            converge_bound_s=(args.converge_bound_ms or (exp_ms + 10_000)) / 1000,
            beat_range_s=(beat_base / 2000, beat_base / 1000),
            read_interval_s=args.read_interval_ms / 1000,
            read_timeout_s=args.read_timeout_ms / 1000,
            write_timeout_s=(args.write_timeout_ms or min(3_000, max(1_000, hb_ms // 2))) / 1000,
        )


@dataclass(frozen=True)
class GrpcBounds:
    """The gRPC workload's pace and the bounds its invariants judge by, in seconds, from the nodes' settings.

    ``present_s``: a connected client's instances are listed by every reachable node within this of its
    (re)registration, and never missing longer while it stays connected: three renewal intervals (the
    holder renews every heartbeat timeout / 3 and registers again what an owner lacks), i.e. the heartbeat
    timeout. ``gone_s``: an instance of a client that closed, stopped answering or lost its node and gave up
    is listed nowhere this long after that: the later of expiry (a holder that is down, or a lost
    deregistration: the instance is no longer renewed) and detection (probe after idle + give up + check
    interval), plus the peer timeout and ``slack_ms``. A fault in effect meanwhile does not restart it (an
    orphan's expiry counts from its holder's death whatever the membership does next, docs/protocol.md);
    it only gives a node that was cut off ``heal_s`` after the heal to learn of the deletion: the peer
    timeout (the nodes see each other again, digests go out), the anti-entropy interval and ``slack_ms``.
    """

    clients: int
    services_per_client: int
    keepalive_s: float
    call_timeout_s: float
    present_s: float
    gone_s: float
    heal_s: float
    components_ms: dict[str, int]

    @classmethod
    def from_settings(cls, args: argparse.Namespace, timing: dict[str, Any]) -> GrpcBounds:
        """From the flags and the timings the containers run with (compose.effective_timing)."""
        hb_ms: int = timing["heartbeat_timeout_ms"]
        parts = {
            "instance_expire_ms": int(timing["instance_expire_ms"]),
            "renew_interval_ms": hb_ms // 3,
            "peer_timeout_ms": int(timing["peer_timeout_ms"]),
            "probe_after_idle_ms": int(timing["grpc_probe_after_idle_ms"]),
            "give_up_after_ms": int(timing["grpc_give_up_after_ms"]),
            "check_interval_ms": int(timing["grpc_check_interval_ms"]),
            "verify_interval_ms": int(timing.get("verify_interval_ms", DistroConfig().verify_interval_ms)),
            "slack_ms": GRPC_SLACK_MS,
        }
        expiry = parts["instance_expire_ms"] + max(parts["renew_interval_ms"], parts["peer_timeout_ms"])
        detection = parts["probe_after_idle_ms"] + parts["give_up_after_ms"] + parts["check_interval_ms"]
        gone_ms = args.grpc_gone_bound_ms or max(expiry, detection) + parts["peer_timeout_ms"] + GRPC_SLACK_MS
        heal_ms = parts["peer_timeout_ms"] + parts["verify_interval_ms"] + GRPC_SLACK_MS
        present_ms = args.grpc_present_bound_ms or hb_ms
        keepalive_ms = args.grpc_keepalive_ms or min(5_000, max(500, hb_ms // 3))
        return cls(
            clients=args.grpc_clients,
            services_per_client=min(args.grpc_services_per_client, args.services),
            keepalive_s=keepalive_ms / 1000,
            call_timeout_s=min(3_000, keepalive_ms) / 1000,
            present_s=present_ms / 1000,
            gone_s=gone_ms / 1000,
            heal_s=heal_ms / 1000,
            components_ms=parts,
        )

    def report(self) -> dict[str, Any]:
        """The report's ``settings.grpc``."""
        return {
            "clients": self.clients, "services_per_client": self.services_per_client,
            "keepalive_ms": int(self.keepalive_s * 1000), "call_timeout_ms": int(self.call_timeout_s * 1000),
            "present_bound_ms": int(self.present_s * 1000), "gone_bound_ms": int(self.gone_s * 1000),
            "gone_after_heal_ms": int(self.heal_s * 1000),
            "bound_components_ms": dict(self.components_ms),
        }


class Recorder:
    """The run's clock and record: violations, warnings, counters, the rounds and the current phase."""

    def __init__(self, console: Console) -> None:
        self.console = console
        # wall clock = monotonic + offset (for the report)
        self.mono0 = trio.current_time()
        self.wall0 = time.time()
        self.violations: list[dict[str, Any]] = []
        self.warnings: list[dict[str, Any]] = []
        self.warning_counts: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()
        self.rounds: list[RoundState] = []
        self.current: RoundState | None = None
        self.phase = "setup"
        self.phase_since = self.now()
        # [applied, healed or None while in effect], one per round (monotonic seconds)
        self.fault_windows: list[list[float | None]] = []

    def clock_start(self, since: float) -> float | None:
        """When a bound counted from ``since`` starts, given the faults: the heal of the last fault still in
        effect after ``since`` (None while one is in effect: nothing can be judged yet), else ``since``."""
        start = since
        for _applied, healed in self.fault_windows:
            if healed is None:
                return None
            if healed > since:
                start = max(start, healed)
        return start

    def now(self) -> float:
        return float(trio.current_time())

    def wall(self, mono: float) -> float:
        return round(self.wall0 + (mono - self.mono0), 3)

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        self.phase_since = self.now()

    def violation(self, invariant: str, at: float | None = None, **detail: Any) -> dict[str, Any]:
        """Record a broken invariant (in the run and in the current round) and print it."""
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

    def event(self, inst: HasHistory, what: str) -> None:
        inst.history.append((self.now(), what))

    def history(self, inst: HasHistory) -> list[str]:
        return [f"{self.wall(t):.3f} {what}" for t, what in inst.history]

    def count(self, what: str, n: int = 1) -> None:
        self.stats[what] += n
        if self.current is not None:
            self.current.stats[what] += n
