"""The invariants, checked all the time against every list answer:

  1. live-instance-missing      a live, heartbeating instance missing from a reachable node's list for longer
                                than the heartbeat timeout;
  2. deregistered-still-listed  an instance listed by a reachable node more than the expiry after its
                                deregistration was acknowledged;
  3. no-agreement-after-heal    the nodes not listing the same instances within the bound after a heal;

and, once at the end, what the final sweeps must show (:meth:`Checker.final_issues`). The gRPC clients'
instances are judged by chaoslib.grpcchecks on the same answers.
"""

from __future__ import annotations

import argparse
import random
from typing import Any

import trio

from chaoslib.grpcchecks import GrpcChecks
from chaoslib.nodes import HttpFailure, NodeSet
from chaoslib.state import Inst, Recorder, Sweep, Timing
from chaoslib.workload import Workload


class Checker:
    """Sweeps every service on every node, forever, and judges each answer by invariants 1 and 2; answers
    whether (and when) the nodes agree (invariant 3) and what is wrong at the end."""

    def __init__(self, args: argparse.Namespace, rec: Recorder, nodes: NodeSet, workload: Workload,
                 timing: Timing, rng: random.Random, grpc: GrpcChecks) -> None:
        self.args = args
        self.grpc = grpc
        self.rec = rec
        self.nodes = nodes
        self.workload = workload
        self.timing = timing
        self.rng = rng
        names = [n.name for n in nodes.nodes]
        self.reachable_since: dict[str, float | None] = {n: None for n in names}
        self.missing_since: dict[str, dict[tuple[str, str], float]] = {n: {} for n in names}
        self.missing_reported: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.dereg_reported: set[tuple[str, str, str]] = set()
        self.sweeps: dict[str, Sweep] = {}
        self.sweep_event = trio.Event()
        self.last_sweep_s = 0.0

    # -- readers and invariants 1 and 2 ----------------------------------------------------------
    async def sweeper(self) -> None:
        """List every service on every node, forever (a sweep, a pause, a sweep, ...)."""
        sweep_no = 0
        while True:
            sweep_no += 1
            t = self.rec.now()
            await self.sweep(sweep_no)
            self.last_sweep_s = self.rec.now() - t
            self.rec.count("sweeps")
            self.sweep_event.set()
            self.sweep_event = trio.Event()
            await trio.sleep(self.timing.read_interval_s * self.rng.uniform(0.8, 1.2))

    async def sweep(self, sweep_no: int) -> None:
        """One sweep. The three nodes are asked for a service at the same moment, so their answers can be
        compared (invariant 3); a node that fails is skipped for the rest of the sweep. Every answer is also
        checked against invariants 1 and 2."""
        limiter = trio.CapacityLimiter(self.args.read_parallelism)
        started = self.rec.now()
        names = [n.name for n in self.nodes.nodes]
        failed: set[str] = set()
        hosts: dict[str, dict[str, frozenset[str]]] = {n: {} for n in names}
        unhealthy: dict[str, dict[str, frozenset[str]]] = {n: {} for n in names}

        async def list_one(node: str, svc: str) -> None:
            if node in failed:
                return
            t = self.rec.now()
            body = await self._list(node, svc)
            if body is None:
                if node not in failed:
                    failed.add(node)
                    self.rec.count("read_errors")
                    self.node_unreachable(node)
                return
            self.rec.count("reads")
            ids = frozenset(f"{h.get('ip')}:{h.get('port')}" for h in body)
            bad = frozenset(f"{h.get('ip')}:{h.get('port')}" for h in body if not h.get("healthy", True))
            self.observe(node, svc, t, ids)
            hosts[node][svc] = ids
            unhealthy[node][svc] = bad

        async def service(svc: str) -> None:
            async with limiter, trio.open_nursery() as nursery:
                for n in names:
                    nursery.start_soon(list_one, n, svc)

        async with trio.open_nursery() as nursery:
            for svc in self.workload.services:
                nursery.start_soon(service, svc)
        ended = self.rec.now()
        for n in names:
            if n not in failed:
                self.sweeps[n] = Sweep(sweep_no, started, ended, hosts[n], unhealthy[n])

    async def _list(self, node: str, svc: str) -> list[dict[str, Any]] | None:
        """The hosts ``node`` lists for ``svc``; None when it did not answer with a host list."""
        try:
            resp = await self.nodes.request(node, "GET", "/instance/list", {"serviceName": svc},
                                            self.timing.read_timeout_s)
            body = resp.json() if resp.status_code == 200 else None
        except (HttpFailure, ValueError):
            return None
        hosts = body.get("hosts") if isinstance(body, dict) else None
        return hosts if isinstance(hosts, list) else None

    def node_unreachable(self, node: str) -> None:
        self.nodes.note_fail(node)
        self.reachable_since[node] = None
        self.missing_since[node].clear()
        self.grpc.node_unreachable(node)

    def observe(self, node: str, svc: str, t: float, ids: frozenset[str]) -> None:
        """One successful list of ``svc`` on ``node``, requested at ``t``."""
        self.nodes.note_ok(node)
        if self.reachable_since[node] is None:
            self.reachable_since[node] = t
        reach = self.reachable_since[node] or t
        missing = self.missing_since[node]
        for inst in self.workload.by_service.get(svc, ()):
            k = (svc, inst.key)
            if inst.state == "live" and inst.live_since is not None and inst.live_since <= t:
                self._check_live(node, svc, t, ids, inst, missing)
            else:
                missing.pop(k, None)
                if inst.state == "deregistered" and inst.dereg_at is not None and inst.key in ids:
                    self._check_deregistered(node, svc, t, reach, inst, inst.dereg_at)
        self.grpc.observe(node, svc, t, ids, reach)

    def _check_live(self, node: str, svc: str, t: float, ids: frozenset[str], inst: Inst,
                    missing: dict[tuple[str, str], float]) -> None:
        """Invariant 1 for one live instance in one answer."""
        assert inst.live_since is not None
        hb = self.timing.heartbeat_timeout_s
        k = (svc, inst.key)
        if inst.key in ids:
            if k in missing:
                del missing[k]
                rep = self.missing_reported.pop((node, svc, inst.key), None)
                if rep is not None:
                    rep["missing_ms"] = int((t - rep["_since"]) * 1000)
                    rep["detail"] = f"missing for {rep['missing_ms'] / 1000:.1f}s (bound {hb:.1f}s)"
                    del rep["_since"]
            return
        since = missing.setdefault(k, t)
        since = max(since, inst.live_since)
        if t - since > hb and (node, svc, inst.key) not in self.missing_reported:
            v = self.rec.violation(
                "live-instance-missing", at=t, node=node, service=svc, instance=inst.key,
                missing_since=self.rec.wall(since),
                detail=f"missing for more than {hb:.1f}s (heartbeat timeout) while heartbeating",
                history=self.rec.history(inst),
            )
            v["_since"] = since
            self.missing_reported[(node, svc, inst.key)] = v

    def _check_deregistered(self, node: str, svc: str, t: float, reach: float, inst: Inst, dereg_at: float) -> None:
        """Invariant 2 for one deregistered instance that ``node`` still lists."""
        exp = self.timing.expire_s
        deadline = max(dereg_at, reach) + exp
        if t > deadline and (node, svc, inst.key) not in self.dereg_reported:
            self.dereg_reported.add((node, svc, inst.key))
            self.rec.violation(
                "deregistered-still-listed", at=t, node=node, service=svc, instance=inst.key,
                deregistered_at=self.rec.wall(dereg_at), node_reachable_since=self.rec.wall(reach),
                history=self.rec.history(inst),
                detail=f"still listed {t - dereg_at:.1f}s after its deregistration (bound {exp:.1f}s)",
            )

    # -- invariant 3: agreement --------------------------------------------------------------------
    def agreement(self, after: float) -> tuple[bool, float, list[str]]:
        """Do the latest full sweeps (all started after ``after``) of every node agree? (ok, at, problems)."""
        problems: list[str] = []
        sweeps = []
        for n in self.nodes.nodes:
            s = self.sweeps.get(n.name)
            if s is None or s.started < after:
                problems.append(f"{n.name}: no full read since")
            else:
                sweeps.append(s)
        if problems:
            return False, 0.0, problems
        if len({s.number for s in sweeps}) != 1:
            return False, 0.0, ["the nodes' latest full reads are from different sweeps"]
        for svc in self.workload.services:
            sets = [s.hosts.get(svc, frozenset()) for s in sweeps]
            if any(x != sets[0] for x in sets[1:]):
                union = frozenset().union(*sets)
                diff = {n.name: sorted(union - s)[:5] for n, s in zip(self.nodes.nodes, sets, strict=True) if union - s}
                problems.append(f"{svc}: lacking {diff}")
        return not problems, max(s.ended for s in sweeps), problems

    async def wait_agreement(self, after: float, bound: float) -> tuple[float | None, list[str]]:
        """Seconds from ``after`` until the nodes agree, or None after ``bound``. Also returns the last
        disagreement seen on the way (empty if the first complete sweep agreed)."""
        deadline = after + bound
        seen: list[str] = []
        last_print = self.rec.now()
        while True:
            ok, at, problems = self.agreement(after)
            if ok:
                return max(0.0, at - after), seen
            if problems and not problems[0].endswith("no full read since") and "different sweeps" not in problems[0]:
                seen = problems[:10]
                if self.args.verbose and self.rec.now() - last_print >= 2.0:
                    last_print = self.rec.now()
                    self.rec.console.line(f"  disagree: {'; '.join(problems[:3])}")
            if self.rec.now() > deadline:
                return None, seen or problems[:10]
            with trio.move_on_at(deadline + 0.01):
                await self.sweep_event.wait()

    # -- the end -------------------------------------------------------------------------------------
    def grpc_final_issues(self, after: float) -> list[dict[str, Any]]:
        """The gRPC clients' issues on the latest sweeps (all started after ``after``)."""
        if any(self.sweeps.get(n.name) is None or self.sweeps[n.name].started < after for n in self.nodes.nodes):
            return [{"invariant": "final-no-read", "detail": "no full read"}]
        return self.grpc.final_issues(self.sweeps)

    def final_issues(self, after: float) -> list[tuple[str, str, Inst, str]]:
        """What the latest sweeps (started after ``after``) show wrong: (invariant, node, instance, detail)."""
        instances = self.workload.instances
        issues: list[tuple[str, str, Inst, str]] = []
        for n in self.nodes.nodes:
            s = self.sweeps.get(n.name)
            if s is None or s.started < after:
                return [("final-no-read", n.name, instances[0], "no full read")] if instances else []
        for n in self.nodes.nodes:
            s = self.sweeps[n.name]
            for inst in instances:
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
