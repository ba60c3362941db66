"""The workload: instances registered through random nodes, beating, and a few deregistered, silenced and
replaced every round; what it leaves is deregistered at the end."""

from __future__ import annotations

import argparse
import contextlib
import os
import random

import trio

from chaoslib.nodes import HttpFailure, NodeSet
from chaoslib.state import Inst, Recorder, Timing


class Workload:
    """The instances and the client behaviour around them (retries on a second node, re-registration on 20404)."""

    def __init__(self, args: argparse.Namespace, rec: Recorder, nodes: NodeSet, timing: Timing,
                 rng: random.Random) -> None:
        self.args = args
        self.rec = rec
        self.nodes = nodes
        self.timing = timing
        self.rng = rng
        self.tag = os.urandom(3).hex()
        self.services = [f"chaos-{self.tag}-{i:02d}" for i in range(args.services)]
        self.instances: list[Inst] = []
        self.by_service: dict[str, list[Inst]] = {}
        self.next_index = 0

    def new_instance(self, service: str | None = None) -> Inst:
        i = self.next_index
        self.next_index += 1
        svc_idx = self.rng.randrange(len(self.services)) if service is None else self.services.index(service)
        inst = Inst(self.services[svc_idx], f"10.{100 + svc_idx}.{i // 250}.{i % 250 + 1}", 8080)
        self.instances.append(inst)
        self.by_service.setdefault(inst.service, []).append(inst)
        return inst

    # -- registration ------------------------------------------------------------------------------
    async def register(self, inst: Inst, node: str) -> bool:
        """POST /instance through ``node``; True when it answered ``ok``."""
        params = {"serviceName": inst.service, "ip": inst.ip, "port": inst.port}
        try:
            resp = await self.nodes.request(node, "POST", "/instance", params, self.timing.write_timeout_s)
        except HttpFailure as exc:
            # A request that was sent but not answered may still be applied later (e.g. by a paused node
            # once unpaused): such an instance is never picked for deregistration, whose check it would upset.
            inst.uncertain_register = inst.uncertain_register or not exc.connect
            self.nodes.note_fail(node)
            self.rec.count("register_errors")
            self.rec.event(inst, f"register via {node}: {exc}")
            return False
        if resp.status_code == 200 and resp.text.strip() == "ok":
            self.rec.count("registers")
            self.rec.event(inst, f"register via {node}: ok")
            return True
        self.rec.count("register_errors")
        self.rec.event(inst, f"register via {node}: {resp.status_code} {resp.text[:80]!r}")
        if resp.status_code >= 500:
            # e.g. a forward to the owner timed out: the owner may still apply it.
            inst.uncertain_register = True
        return False

    async def register_with_retries(self, inst: Inst, deadline: float) -> bool:
        while self.rec.now() < deadline:
            for node in self.nodes.pick_nodes()[:2]:
                if await self.register(inst, node):
                    t = self.rec.now()
                    if inst.state in ("new", "live"):
                        if inst.live_since is None:
                            inst.live_since = t
                        inst.state = "live"
                    inst.last_ack = t
                    inst.next_beat = t + self.rng.uniform(*self.timing.beat_range_s)
                    return True
            await trio.sleep(0.3)
        return False

    async def register_new(self, inst: Inst, give_up_at: float) -> None:
        if not await self.register_with_retries(inst, give_up_at):
            inst.state = "lost"
            self.rec.warning("register-failed", service=inst.service, instance=inst.key)

    async def register_all(self, deadline: float) -> list[Inst]:
        """The initial --instances, spread evenly over the services, --concurrency at a time."""
        per = [self.services[i % len(self.services)] for i in range(self.args.instances)]
        fresh = [self.new_instance(svc) for svc in per]
        limiter = trio.CapacityLimiter(self.args.concurrency)

        async def one(inst: Inst) -> None:
            async with limiter:
                await self.register_new(inst, deadline)

        async with trio.open_nursery() as nursery:
            for inst in fresh:
                nursery.start_soon(one, inst)
        return fresh

    # -- beats -------------------------------------------------------------------------------------
    async def beat_loop(self) -> None:
        # No limit on beats in flight beyond one per instance: a node that hangs must not hold up the
        # beats of instances that another node would answer at once.
        async with trio.open_nursery() as nursery:
            while True:
                t = self.rec.now()
                for inst in self.instances:
                    if inst.state == "live" and not inst.busy and inst.next_beat <= t:
                        inst.busy = True
                        nursery.start_soon(self.beat_one, inst)
                await trio.sleep(0.05)

    async def beat_one(self, inst: Inst) -> None:
        try:
            await self._beat(inst)
        finally:
            inst.busy = False
            inst.next_beat = self.rec.now() + self.rng.uniform(*self.timing.beat_range_s)

    async def _beat(self, inst: Inst) -> None:
        params = {"serviceName": inst.service, "ip": inst.ip, "port": inst.port}
        for node in self.nodes.pick_nodes()[:2]:
            if inst.state != "live":
                return
            try:
                resp = await self.nodes.request(node, "PUT", "/instance/beat", params, self.timing.write_timeout_s)
            except HttpFailure as exc:
                self.nodes.note_fail(node)
                self.rec.count("beat_errors")
                self.rec.event(inst, f"beat via {node}: {exc}")
                continue
            if resp.status_code != 200:
                self.rec.count("beat_errors")
                self.rec.event(inst, f"beat via {node}: {resp.status_code} {resp.text[:80]!r}")
                continue
            try:
                body = resp.json()
            except ValueError:
                body = None
            code = body.get("code") if isinstance(body, dict) else None
            if code == 20404:
                self._unknown_to(inst, node)
                if inst.state != "live":
                    return
                if not await self.register(inst, node):
                    continue
                self.rec.count("reregistered")
            else:
                self.rec.count("beats")
                self.rec.event(inst, f"beat via {node}: ok")
            self.ack(inst)
            return
        self.rec.count("beats_failed")

    def _unknown_to(self, inst: Inst, node: str) -> None:
        """A beat answered 20404: the node did not know the instance (the caller re-registers it there)."""
        self.rec.count("beats_20404")
        self.rec.event(inst, f"beat via {node}: 20404")
        self.rec.warning("beat-answered-20404", node=node, service=inst.service, instance=inst.key,
                         phase=self.rec.phase, detail="a node did not know a registered, heartbeating instance "
                                                      "(the client re-registers it)",
                         history=self.rec.history(inst)[-8:])

    def ack(self, inst: Inst) -> None:
        t = self.rec.now()
        if inst.last_ack is not None:
            gap = t - inst.last_ack
            if self.rec.current is not None:
                self.rec.current.max_beat_gap = max(self.rec.current.max_beat_gap, gap)
            if gap > self.timing.heartbeat_timeout_s:
                self.rec.warning("beat-gap", service=inst.service, instance=inst.key,
                                 detail=f"no beat acknowledged for {gap:.1f}s "
                                        f"(heartbeat timeout {self.timing.heartbeat_timeout_s:.1f}s)")
            if gap > 0.8 * self.timing.expire_s:
                # The registry may rightly have expired it: judge it as newly registered from now.
                inst.live_since = t
        inst.last_ack = t

    # -- churn -------------------------------------------------------------------------------------
    async def churn(self, delay: float) -> None:
        """Some deregistrations, silences and new registrations at one moment of a round."""
        await trio.sleep(delay)
        n_dereg = max(1, round(self.args.instances * self.args.dereg_fraction))
        n_silent = max(1, round(self.args.instances * self.args.silent_fraction))
        candidates = [i for i in self.instances if i.state == "live" and not i.uncertain_register]
        self.rng.shuffle(candidates)
        deregs, silents = candidates[:n_dereg], candidates[n_dereg : n_dereg + n_silent]
        for inst in silents:
            inst.state = "silent"
            inst.silent_at = self.rec.now()
            self.rec.count("silenced")
            self.rec.event(inst, "silenced (no more beats)")
        fresh = [self.new_instance() for _ in range(len(deregs) + len(silents))]
        give_up = self.rec.now() + max(30.0, 2 * self.timing.expire_s)
        async with trio.open_nursery() as nursery:
            for inst in deregs:
                nursery.start_soon(self.deregister, inst, give_up)
            for inst in fresh:
                nursery.start_soon(self.register_new, inst, give_up)

    async def deregister(self, inst: Inst, give_up_at: float) -> None:
        inst.state = "deregistering"
        while inst.busy:
            await trio.sleep(0.05)
        params = {"serviceName": inst.service, "ip": inst.ip, "port": inst.port}
        while self.rec.now() < give_up_at:
            for node in self.nodes.pick_nodes()[:2]:
                try:
                    resp = await self.nodes.request(node, "DELETE", "/instance", params, self.timing.write_timeout_s)
                except HttpFailure as exc:
                    self.nodes.note_fail(node)
                    self.rec.event(inst, f"deregister via {node}: {exc}")
                    continue
                if resp.status_code == 200 and resp.text.strip() == "ok":
                    inst.state = "deregistered"
                    inst.dereg_at = self.rec.now()
                    self.rec.count("deregistered")
                    self.rec.event(inst, f"deregister via {node}: ok")
                    return
                self.rec.event(inst, f"deregister via {node}: {resp.status_code} {resp.text[:80]!r}")
            await trio.sleep(0.5)
        # Never acknowledged: it no longer beats, so treat it as silent.
        inst.state = "silent"
        inst.silent_at = self.rec.now()
        self.rec.warning("deregister-failed", service=inst.service, instance=inst.key)

    async def cleanup(self) -> None:
        """Deregister what this run left (best effort)."""
        left = [i for i in self.instances if i.state in ("live", "silent")]
        limiter = trio.CapacityLimiter(self.args.concurrency)

        async def one(inst: Inst) -> None:
            params = {"serviceName": inst.service, "ip": inst.ip, "port": inst.port}
            async with limiter:
                for node in self.nodes.pick_nodes()[:2]:
                    with contextlib.suppress(HttpFailure):
                        resp = await self.nodes.request(node, "DELETE", "/instance", params, 3.0)
                        if resp.status_code == 200:
                            return

        with trio.move_on_after(30):
            async with trio.open_nursery() as nursery:
                for inst in left:
                    nursery.start_soon(one, inst)
