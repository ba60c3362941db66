"""The gRPC invariants, judged on every list answer the checker gets (chaoslib.checks calls them):

  grpc-instance-missing     a connected client's instance is missing from a reachable node's list for longer
                            than the present bound after its (re)registration (the clock starts at the later
                            of: the first answer without it, its last registration, the node answering
                            again; a client that is reconnecting is not judged until it registers again)
  grpc-ended-still-listed   an instance of a client that closed, froze (stopped answering) or was abandoned
                            (lost its node and did not reconnect) is listed by a reachable node more than the
                            gone bound after that (and, when a fault was in effect meanwhile, more than the
                            shorter heal bound after its heal: the bound no longer restarts at a heal)

and, at the end, grpc-live-not-listed-at-end / grpc-live-unhealthy-at-end / grpc-ended-still-listed on the
final sweeps. The bounds come from the nodes' settings (chaoslib.state.GrpcBounds).
"""

from __future__ import annotations

from typing import Any

from chaoslib.grpcclients import ENDED, GrpcActor, GrpcInst
from chaoslib.grpcworkload import GrpcWorkload
from chaoslib.state import GrpcBounds, Recorder, Sweep


class GrpcChecks:
    """Judges each list answer for the gRPC clients' instances."""

    def __init__(self, rec: Recorder, workload: GrpcWorkload, bounds: GrpcBounds, nodes: list[str]) -> None:
        self.rec = rec
        self.workload = workload
        self.bounds = bounds
        self.missing_since: dict[str, dict[tuple[str, str], float]] = {n: {} for n in nodes}
        self.missing_reported: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.ended_reported: set[tuple[str, str, str]] = set()

    def node_unreachable(self, node: str) -> None:
        self.missing_since[node].clear()

    def observe(self, node: str, svc: str, t: float, ids: frozenset[str], reach: float) -> None:
        """One successful list of ``svc`` on ``node`` requested at ``t``; the node answers since ``reach``."""
        missing = self.missing_since[node]
        for actor, inst in self.workload.by_service.get(svc, ()):
            if actor.state in ENDED:
                missing.pop((svc, inst.key), None)
                if inst.key in ids:
                    self._check_ended(node, svc, t, reach, actor, inst)
            elif self._judged_present(actor, t):
                self._check_present(node, svc, t, ids, actor, inst, missing)
            else:
                missing.pop((svc, inst.key), None)

    def _judged_present(self, actor: GrpcActor, t: float) -> bool:
        """Must the client's instances be listed at ``t``? While it is connected and registered before ``t``.
        Not while it reconnects: a node that sees its old connection close deregisters it at once (it is
        judged again from its next registration)."""
        return actor.connected and actor.registered_at is not None and actor.registered_at <= t

    def _check_present(self, node: str, svc: str, t: float, ids: frozenset[str], actor: GrpcActor, inst: GrpcInst,
                       missing: dict[tuple[str, str], float]) -> None:
        bound = self.bounds.present_s
        k = (svc, inst.key)
        if inst.key in ids:
            if missing.pop(k, None) is not None:
                rep = self.missing_reported.pop((node, svc, inst.key), None)
                if rep is not None:
                    rep["missing_ms"] = int((t - rep.pop("_since")) * 1000)
                    rep["detail"] = f"missing for {rep['missing_ms'] / 1000:.1f}s (bound {bound:.1f}s)"
            return
        assert actor.registered_at is not None
        since = max(missing.setdefault(k, t), actor.registered_at)
        if t - since > bound and (node, svc, inst.key) not in self.missing_reported:
            v = self.rec.violation(
                "grpc-instance-missing", at=t, node=node, service=svc, instance=inst.key, client=actor.name,
                holder=actor.node, missing_since=self.rec.wall(since),
                detail=f"missing for more than {bound:.1f}s while its client is connected",
                history=self.rec.history(actor),
            )
            v["_since"] = since
            self.missing_reported[(node, svc, inst.key)] = v

    def gone_deadline(self, actor: GrpcActor) -> float | None:
        """When an ended client's instances must be gone everywhere (None while a fault is in effect): the
        gone bound after it ended, or the heal bound after the heal of a fault in effect meanwhile if that
        is later (a node cut off learns of the deletion only then). The registry counts an orphan's expiry
        from its holder's death whatever the membership does next, so a heal does not restart the bound."""
        assert actor.ended_at is not None
        healed = self.rec.clock_start(actor.ended_at)
        if healed is None:
            return None
        return max(actor.ended_at + self.bounds.gone_s, healed + self.bounds.heal_s)

    def _check_ended(self, node: str, svc: str, t: float, reach: float, actor: GrpcActor, inst: GrpcInst) -> None:
        assert actor.ended_at is not None
        actor.last_listed_after_end = max(actor.last_listed_after_end or t, t)
        deadline = self.gone_deadline(actor)
        if deadline is None or t <= max(deadline, reach + self.bounds.heal_s):
            return
        if (node, svc, inst.key) in self.ended_reported:
            return
        self.ended_reported.add((node, svc, inst.key))
        self.rec.violation(
            "grpc-ended-still-listed", at=t, node=node, service=svc, instance=inst.key, client=actor.name,
            ended=actor.state, ended_at=self.rec.wall(actor.ended_at), history=self.rec.history(actor),
            detail=f"still listed {t - actor.ended_at:.1f}s after its client {actor.state} "
                   f"(bound {self.bounds.gone_s:.1f}s from then, {self.bounds.heal_s:.1f}s from the heal of a "
                   "fault in effect)",
        )

    # -- the end -------------------------------------------------------------------------------------
    def final_deadline(self) -> float:
        """The latest moment an ended client's instances may still be listed."""
        deadlines = [self.gone_deadline(a) for a in self.workload.actors if a.state in ENDED]
        return max([d for d in deadlines if d is not None], default=0.0)

    def final_issues(self, sweeps: dict[str, Sweep]) -> list[dict[str, Any]]:
        """What the final sweeps show wrong for the gRPC clients (each sweep started after the last fault)."""
        issues: list[dict[str, Any]] = []
        for node, s in sweeps.items():
            for actor in self.workload.actors:
                for inst in actor.instances:
                    listed = inst.key in s.hosts.get(inst.service, frozenset())
                    where = {"node": node, "service": inst.service, "instance": inst.key, "client": actor.name,
                             "history": self.rec.history(actor)}
                    if actor.connected and actor.registered_at is not None and actor.registered_at < s.started:
                        if not listed:
                            issues.append({"invariant": "grpc-live-not-listed-at-end", **where,
                                           "detail": f"its client is connected to {actor.node} but it is not listed"})
                        elif inst.key in s.unhealthy.get(inst.service, frozenset()):
                            issues.append({"invariant": "grpc-live-unhealthy-at-end", **where,
                                           "detail": "its client is connected but it is listed unhealthy"})
                    elif (actor.state in ENDED and listed
                          and (node, inst.service, inst.key) not in self.ended_reported):
                        issues.append({"invariant": "grpc-ended-still-listed", **where,
                                       "detail": f"its client {actor.state} but it is still listed"})
        return issues
