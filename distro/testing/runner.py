"""Run one seeded schedule end to end: faults, heal, settle, check. Used by scripts/simulate and tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from distro.testing.checkers import BeatChecker, SafetyChecker, check_converged
from distro.testing.sim import FaultOptions, Simulator

__all__ = ["ScheduleReport", "run_schedule"]


@dataclass
class ScheduleReport:
    """What one schedule did and found."""

    seed: int
    nodes: int
    steps: int
    simulated_ms: int = 0
    delivered: int = 0
    dropped: int = 0
    clients: int = 0
    data_acknowledged: int = 0
    grpc_clients: int = 0
    violations: list[str] = field(default_factory=list)
    failed_at_step: int | None = None

    @property
    def converged(self) -> bool:
        """True when no safety or liveness violation was found."""
        return not self.violations

    def summary(self) -> str:
        """One line for humans."""
        verdict = "converged" if self.converged else "FAILED"
        where = "" if self.failed_at_step is None else f" at step {self.failed_at_step}"
        return (
            f"seed={self.seed} nodes={self.nodes} steps={self.steps} {verdict}{where}: "
            f"{self.simulated_ms / 1000:.0f}s simulated, {self.delivered} messages delivered, "
            f"{self.dropped} dropped, {self.clients} clients, "
            f"{self.data_acknowledged} cluster-data writes acknowledged"
            + (f", {self.grpc_clients} gRPC clients" if self.grpc_clients else "")
        )


def run_schedule(
    seed: int,
    *,
    nodes: int = 3,
    steps: int = 1000,
    faults: FaultOptions | None = None,
    check_every: int = 1,
    trace: Callable[[str], None] | None = None,
) -> ScheduleReport:
    """Play a random fault schedule, checking safety every ``check_every`` steps, then liveness."""
    sim = Simulator(seed, nodes, faults=faults, trace=trace)
    start = sim.now_ms
    checker = SafetyChecker()
    beats = BeatChecker()
    report = ScheduleReport(seed, nodes, steps)
    for step in range(steps):
        sim.random_step()
        if check_every and step % check_every == 0:
            violations = checker.check(sim) + beats.check(sim)
            if violations:
                report.violations = violations
                report.failed_at_step = step
                break
    if not report.violations:
        sim.stop_faults()
        sim.advance(sim.settle_ms())
        report.violations = checker.check(sim) + beats.check(sim) + check_converged(sim)
    report.simulated_ms = sim.now_ms - start
    report.delivered = sim.delivered
    report.dropped = sim.dropped
    report.clients = len(sim.clients)
    report.data_acknowledged = sim.data.acknowledged
    report.grpc_clients = len(sim.grpc.clients)
    return report
