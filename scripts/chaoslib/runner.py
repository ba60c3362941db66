"""One chaos run on trio: the workload and the checks in the background, the rounds of faults in front."""

from __future__ import annotations

import argparse
import random
import signal
from collections import Counter
from typing import Any

import trio

from chaoslib.checks import Checker
from chaoslib.compose import NodeRef, restore_cluster
from chaoslib.console import Console
from chaoslib.faults import Faults
from chaoslib.grpcchecks import GrpcChecks
from chaoslib.grpcworkload import GrpcWorkload
from chaoslib.nodes import NodeSet
from chaoslib.plan import PlannedRound, plan_rounds
from chaoslib.state import GrpcBounds, Recorder, RoundState, Timing
from chaoslib.workload import Workload


class Chaos:
    """A run: set up the workload, check agreement, play the planned rounds, check the end state."""

    def __init__(self, args: argparse.Namespace, nodes: list[NodeRef], timing: dict[str, Any],
                 console: Console) -> None:
        self.args = args
        self.console = console
        self.timing = Timing.from_settings(args, timing)
        self.rng = random.Random(args.seed * 7919 + 1)
        self.rec = Recorder(console)
        self.nodes = NodeSet(nodes, self.rng, self.rec.now, max_idle=args.concurrency)
        self.workload = Workload(args, self.rec, self.nodes, self.timing, self.rng)
        self.grpc_bounds = GrpcBounds.from_settings(args, timing)
        self.grpc = GrpcWorkload(args, self.rec, {n.name: n.grpc_port for n in nodes}, self.grpc_bounds,
                                 self.workload.services, self.rng)
        self.grpc_checks = GrpcChecks(self.rec, self.grpc, self.grpc_bounds, [n.name for n in nodes])
        self.checker = Checker(args, self.rec, self.nodes, self.workload, self.timing, self.rng, self.grpc_checks)
        self.faults = Faults(console)
        self.interrupted = False
        self.aborted = ""
        self.final: dict[str, Any] = {}

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as bg:
                bg.start_soon(self.watch_sigterm, bg.cancel_scope)
                bg.start_soon(self.ticker)
                bg.start_soon(self.checker.sweeper)
                await self.setup()
                bg.start_soon(self.workload.beat_loop)
                await self.setup_grpc(bg)
                await self.baseline()
                plan = plan_rounds(self.args.rounds, self.args.seed, self.timing.heartbeat_timeout_ms,
                                   kinds=self.args.kinds)
                for planned in plan:
                    await self.run_round(planned)
                self.rec.current = None
                await self.final_checks()
                await self.grpc.aclose()
                bg.cancel_scope.cancel()
            if not self.args.keep and not self.interrupted:
                self.rec.set_phase("cleanup")
                await self.workload.cleanup()
        finally:
            with trio.CancelScope(shield=True):
                await self.nodes.aclose()

    async def setup(self) -> None:
        self.rec.set_phase("register")
        t0 = self.rec.now()
        fresh = await self.workload.register_all(t0 + 60)
        ok = sum(1 for i in fresh if i.state == "live")
        self.console.line(f"registered {ok}/{len(fresh)} instances in {len(self.workload.services)} services "
                          f"in {self.rec.now() - t0:.1f}s (services chaos-{self.workload.tag}-NN)")
        if ok < len(fresh):
            self.rec.violation("setup", detail=f"only {ok}/{len(fresh)} registrations acknowledged within 60s")

    async def setup_grpc(self, bg: trio.Nursery) -> None:
        """Start the gRPC clients and wait until they have registered."""
        if not self.grpc_bounds.clients:
            return
        t0 = self.rec.now()
        await bg.start(self.grpc.run)
        ok = await self.grpc.wait_live(self.grpc.actors, 60.0)
        held = {n.name: self.grpc.held_by(n.name) for n in self.nodes.nodes}
        self.console.line(f"gRPC: {sum(held.values())}/{len(self.grpc.actors)} clients connected and registered in "
                          f"{self.rec.now() - t0:.1f}s ({', '.join(f'{k} {v}' for k, v in held.items())})")
        if not ok:
            self.rec.violation("setup", detail="gRPC clients not all registered within 60s")

    async def baseline(self) -> None:
        self.rec.set_phase("baseline")
        t0 = self.rec.now()
        took, problems = await self.checker.wait_agreement(t0, self.timing.converge_bound_s)
        if took is None:
            self.rec.violation("no-agreement-after-heal", detail="the nodes did not agree before the first fault",
                               problems=problems[:10])
        else:
            self.console.line(f"baseline: all nodes agree ({took * 1000:.0f} ms)")

    async def ensure_healthy(self) -> None:
        """Before a round and at the end: every node running and ready. A container that stopped on its
        own is a violation (with its last log lines); whatever a failed heal left behind is restored."""
        nodes = self.nodes.nodes
        for n in nodes:
            state = await self.faults.container_state(n)
            if not state.startswith(("running", "paused")):
                tail = await self.faults.logs_tail(n, 30)
                self.rec.violation("node-exited", node=n.name, detail=f"container is {state}", logs=tail)
        not_ready = [n for n in nodes if await self.nodes.wait_ready(n, 0.1) is None]
        if not not_ready:
            return
        actions = await trio.to_thread.run_sync(lambda: restore_cluster(nodes, 60.0, self.console.line))
        not_ready = [n for n in nodes if await self.nodes.wait_ready(n, 5.0) is None]
        if not_ready:
            self.rec.violation("node-not-ready",
                               detail=f"{[n.name for n in not_ready]} not ready; restore did {actions}")

    async def run_round(self, planned: PlannedRound) -> None:
        await self.ensure_healthy()
        started = self.rec.now()
        record: dict[str, Any] = {
            "round": planned.index, "fault": planned.fault, "node": planned.node,
            "started_at": self.rec.wall(started), "planned_ms": planned.duration_ms, "long": planned.long,
        }
        rs = RoundState(planned, started, record)
        self.rec.rounds.append(rs)
        self.rec.current = rs
        self.console.line(
            f"round {planned.index}/{self.args.rounds}: {planned.fault} {planned.node} for "
            f"{planned.duration_ms / 1000:.1f}s{' (longer than the heartbeat timeout)' if planned.long else ''}"
        )
        await self.grpc.prepare_round(planned.node)
        record["grpc_clients_on_node"] = self.grpc.held_by(planned.node)
        self.rec.set_phase("fault")
        async with trio.open_nursery() as nursery:
            t_heal = await self._fault_and_heal(planned, record, nursery)
            self.rec.set_phase("converge")
            await self._converge(planned, record, t_heal)
        self.rec.set_phase("settle")
        await trio.sleep(self.args.settle_ms / 1000)
        record["stats"] = dict(rs.stats)
        record["max_beat_gap_ms"] = int(rs.max_beat_gap * 1000)
        conv = "never" if record["converge_ms"] is None else f"{record['converge_ms']} ms"
        self.console.line(
            f"round {planned.index} done: {planned.fault} {planned.node} held {record['duration_ms'] / 1000:.1f}s, "
            f"converged in {conv}, {len(rs.violations)} violation(s), beats {rs.stats['beats']} "
            f"(errors {rs.stats['beat_errors']}, 20404 {rs.stats['beats_20404']})"
        )

    async def _fault_and_heal(self, planned: PlannedRound, record: dict[str, Any], nursery: trio.Nursery) -> float:
        """Inject the fault, churn the workload meanwhile, heal it when its time is up; when it was healed."""
        node = self.nodes.by_name[planned.node]
        window: list[float | None] = [self.rec.now(), None]
        self.rec.fault_windows.append(window)
        applied = await self.faults.inject(planned.fault, node)
        t_applied = self.rec.now()
        if not applied:
            self.rec.violation("fault-not-applied", node=planned.node,
                               detail=f"docker could not {planned.fault} it: {self.faults.docker_error}",
                               container_state=await self.faults.container_state(node))
        duration = planned.duration_ms / 1000
        churn_delay = self.rng.uniform(0.2, 0.8) * duration
        nursery.start_soon(self.workload.churn, churn_delay)
        nursery.start_soon(self._grpc_churn, churn_delay)
        await trio.sleep_until(t_applied + duration)
        self.rec.set_phase("heal")
        healed = await self.faults.heal(planned.fault, node)
        t_heal = self.rec.now()
        window[1] = t_heal
        record["duration_ms"] = int((t_heal - t_applied) * 1000)
        if not healed:
            self.rec.violation("heal-failed", node=planned.node,
                               detail=f"docker could not undo {planned.fault}: {self.faults.docker_error}",
                               container_state=await self.faults.container_state(node))
        return t_heal

    async def _grpc_churn(self, delay: float) -> None:
        await trio.sleep(delay)
        self.grpc.churn()

    async def _converge(self, planned: PlannedRound, record: dict[str, Any], t_heal: float) -> None:
        """How long after the heal the node was ready and the nodes agreed (invariant 3)."""
        bound = self.timing.converge_bound_s
        ready = await self.nodes.wait_ready(self.nodes.by_name[planned.node], bound)
        record["ready_ms"] = None if ready is None else int((self.rec.now() - t_heal) * 1000)
        took, problems = await self.checker.wait_agreement(t_heal, bound)
        record["converge_ms"] = None if took is None else int(took * 1000)
        record["disagreement_sample"] = problems[:5]
        if took is None:
            self.rec.violation(
                "no-agreement-after-heal", node=planned.node,
                detail=f"nodes did not agree within {bound:.1f}s of the heal",
                problems=problems[:10],
            )

    async def final_checks(self) -> None:
        """After the last round: everything agrees, live instances listed and healthy, silent ones gone."""
        self.rec.set_phase("final")
        await self.ensure_healthy()
        t0 = self.rec.now()
        took, problems = await self.checker.wait_agreement(t0, self.timing.converge_bound_s)
        start = self.rec.now()
        # the gRPC clients that ended last must be gone by their gone bound (after the sweep that shows it)
        deadline = max(start + self.timing.expire_s + self.timing.heartbeat_timeout_s + 10.0,
                       self.grpc_checks.final_deadline() + 2 * self.timing.read_interval_s + 5.0)
        while True:
            issues = self.checker.final_issues(start)
            grpc_issues = self.checker.grpc_final_issues(start)
            if not (issues or grpc_issues) or self.rec.now() > deadline:
                break
            with trio.move_on_after(1.0):
                await self.checker.sweep_event.wait()
        for invariant, node, inst, detail in issues:
            self.rec.violation(invariant, node=node, service=inst.service, instance=inst.key, detail=detail,
                               history=self.rec.history(inst))
        for issue in grpc_issues:
            self.rec.violation(issue.pop("invariant"), **issue)
        self.final = {
            "agreement_ms": None if took is None else int(took * 1000),
            "settled_ms": int((self.rec.now() - start) * 1000),
            "issues": len(issues) + len(grpc_issues),
        }
        if took is None:
            self.rec.violation("no-agreement-after-heal", detail="nodes did not agree at the end",
                               problems=problems[:10])
        self.console.line(f"final: {'agree' if took is not None else 'DISAGREE'}, {len(issues)} issue(s) after "
                          f"{self.final['settled_ms'] / 1000:.1f}s")

    async def ticker(self) -> None:
        stats = self.rec.stats
        last = Counter(stats)
        last_t = self.rec.now()
        while True:
            await trio.sleep(1.0)
            t = self.rec.now()
            dt = max(1e-3, t - last_t)
            rate = {k: (stats[k] - last[k]) / dt for k in ("beats", "reads")}
            last, last_t = Counter(stats), t
            r = self.rec.current
            where = f"r{r.plan.index}/{self.args.rounds} {r.plan.fault} {r.plan.node}" if r else "--"
            reach = "".join("+" if not self.nodes.suspect(n.name) else "-" for n in self.nodes.nodes)
            live = sum(1 for i in self.workload.instances if i.state == "live")
            grpc_on = "/".join(str(self.grpc.held_by(n.name)) for n in self.nodes.nodes)
            self.console.tick(
                f"{where} {self.rec.phase} {t - self.rec.phase_since:5.1f}s | nodes {reach} | live {live} | "
                f"grpc {grpc_on} | "
                f"beats {rate['beats']:.0f}/s err {stats['beat_errors']} 20404 {stats['beats_20404']} | "
                f"reads {rate['reads']:.0f}/s err {stats['read_errors']} sweep {self.checker.last_sweep_s:.2f}s | "
                f"violations {len(self.rec.violations)}"
            )

    async def watch_sigterm(self, cancel: trio.CancelScope) -> None:
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                self.interrupted = True
                cancel.cancel()
                return
