"""Checkers: look at a simulated cluster from outside and return readable violations (never assert).

Safety (:class:`SafetyChecker`, after every step):
- per key and entry, no two copies with the same version and different content, ever;
- a node never serves an instance its store holds as deleted (views match the store);
- no queue or buffer is over its bound (deletion records included: ``max_deletion_records``).

Heartbeats (:class:`BeatChecker`, after every step; beats go to random nodes, owners or not):
- an owner never marks unhealthy (deletes) a heartbeating client's instance while one of its beats that
  reached a node of a calm cluster, with nothing failing for a receipt interval plus a network delay after
  it, lies within the heartbeat timeout (expiry) before;
- a client that stopped beating is listed nowhere once the expiry plus a receipt interval (plus a health
  check, a flush and two network delays) has passed since its last request, when the cluster was calm then
  and nothing failed since.

Liveness (:func:`check_converged`, after faults stop and the cluster settles):
- every ready node holds the same live entries for every key;
- every heartbeating client is listed, healthy, on every node; every deregistered or dead one is gone;
- every acknowledged namespace, service setting and cluster setting is on every node, and no
  acknowledged namespace deletion is undone (``distro.testing.datawork``).
- every connected gRPC client (or one reconnecting) is listed, healthy, everywhere; every closed or dead one
  is gone.
"""

from __future__ import annotations

from distro.datum import EntryValue
from distro.model import Instance, ServiceKey
from distro.node import DistroNode
from distro.testing.datawork import check_cluster_data
from distro.testing.grpcsim import SimGrpcClient
from distro.testing.sim import Simulator
from distro.versions import Version

__all__ = ["BeatChecker", "SafetyChecker", "check_converged", "grpc_listed", "live_entries"]


class SafetyChecker:
    """Remembers every (key, entry, version) ever seen and flags conflicting content."""

    def __init__(self) -> None:
        self._seen: dict[tuple[ServiceKey, str, Version], EntryValue] = {}

    def check(self, sim: Simulator) -> list[str]:
        """Violations of the safety invariants right now."""
        violations: list[str] = []
        for node_id, node in sim.live_nodes():
            violations.extend(self._check_versions(node_id, node))
            violations.extend(_check_views(node_id, node))
            violations.extend(_check_bounds(node_id, node))
        if len(sim.in_flight) > sim.max_in_flight:
            violations.append(f"network holds {len(sim.in_flight)} messages, bound {sim.max_in_flight}")
        return violations

    def _check_versions(self, node_id: str, node: DistroNode) -> list[str]:
        violations = []
        for key in node.store.keys():
            for entry_id, entry in node.store.items(key):
                marker = (key, entry_id, entry.version)
                seen = self._seen.setdefault(marker, entry.value)
                if seen != entry.value:
                    violations.append(
                        f"{node_id}: {key} {entry_id} version {tuple(entry.version)} has two contents: "
                        f"{seen!r} and {entry.value!r}"
                    )
        return violations


def _check_views(node_id: str, node: DistroNode) -> list[str]:
    violations = []
    for view in node.views():
        for inst in view.instances:
            stored = node.store.live_instance(view.key, inst.entry_id)
            if stored != inst:
                violations.append(
                    f"{node_id}: serves {view.key} {inst.entry_id} but its store holds {stored!r}"
                )
    for key in node.store.keys():
        live = sum(1 for _, e in node.store.items(key) if isinstance(e.value, Instance))
        found = node.view(key)
        shown = 0 if found is None else len(found.instances)
        if live != shown:
            violations.append(f"{node_id}: {key} has {live} live instances but its view shows {shown}")
    return violations


def _check_bounds(node_id: str, node: DistroNode) -> list[str]:
    stats, cfg = node.statistics(), node.config
    violations = []
    if stats.pending_forwards > cfg.max_pending_forwards:
        violations.append(f"{node_id}: {stats.pending_forwards} pending forwards > {cfg.max_pending_forwards}")
    if stats.notifier_depth > cfg.max_notifier_keys:
        violations.append(f"{node_id}: notifier depth {stats.notifier_depth} > {cfg.max_notifier_keys}")
    peers = max(1, stats.peers_known)
    if stats.dirty_entries > cfg.max_dirty_entries_per_peer * peers:
        violations.append(f"{node_id}: {stats.dirty_entries} dirty entries over the bound")
    if stats.beat_receipt_bytes > cfg.max_beat_receipt_bytes:
        violations.append(f"{node_id}: {stats.beat_receipt_bytes} bytes of beat receipts > {cfg.max_beat_receipt_bytes}")
    records = stats.entry_floors + stats.key_floors
    if records > cfg.max_deletion_records:
        violations.append(f"{node_id}: {records} deletion records > {cfg.max_deletion_records}")
    return violations


class BeatChecker:
    """The heartbeat promises (module docstring), from what the simulator records in ``sim.beat_log``.

    "Calm" (:meth:`Simulator.calm`) means every node running and ready, no link cut, and every node computing
    ownership over the full membership; a fault is a cut, a heal, a crash, a restart or a lost message.
    """

    def __init__(self) -> None:
        self._settled: set[int] = set()  # stopped clients already judged

    @staticmethod
    def carry_ms(sim: Simulator) -> int:
        """How late a beat may restart its owner's clock: a receipt interval plus the longest network delay."""
        return sim.config.beat_receipt_interval_ms + sim.faults.delay_max_ms

    @staticmethod
    def stop_bound_ms(sim: Simulator) -> int:
        """How long after its last request a stopped client may still be listed somewhere."""
        cfg = sim.config
        return (
            BeatChecker.carry_ms(sim)
            + cfg.instance_expire_ms
            + cfg.health_check_interval_ms
            + cfg.sync_delay_ms
            + sim.faults.delay_max_ms
            + 1
        )

    def check(self, sim: Simulator) -> list[str]:
        """Violations found since the last call."""
        return self._check_health_events(sim) + self._check_stopped(sim)

    def _check_health_events(self, sim: Simulator) -> list[str]:
        log, cfg, carry = sim.beat_log, sim.config, self.carry_ms(sim)
        violations = []
        for event in log.take_events():
            window = cfg.heartbeat_timeout_ms if event.kind == "unhealthy" else cfg.instance_expire_ms
            for beat_ms, calm in log.beats(event.client_id):
                if calm and beat_ms + carry <= event.ms and event.ms - beat_ms <= window and log.quiet(
                    beat_ms - 1, beat_ms + carry
                ):
                    violations.append(
                        f"{event.node_id} {event.kind} client {event.client_id} at {event.ms}, yet it beat at "
                        f"{beat_ms} ({event.ms - beat_ms} ms before, within {window} ms) in a calm cluster"
                    )
                    break
        return violations

    def _check_stopped(self, sim: Simulator) -> list[str]:
        log, bound = sim.beat_log, self.stop_bound_ms(sim)
        violations = []
        for client in sim.clients:
            if client.beating or client.state == "new" or client.client_id in self._settled:
                continue
            sent = log.last_sent.get(client.client_id)
            if sent is not None and sim.now_ms < sent[0] + bound:
                continue
            self._settled.add(client.client_id)
            if sent is None or not sent[1] or not log.quiet(sent[0] - 1, sent[0] + bound):
                continue
            for node_id, node in sim.live_nodes():
                if node.ready and _lists(node, client.key, client.ip, client.port):
                    violations.append(
                        f"client {client.client_id} {client.state} (last request at {sent[0]}, calm since) "
                        f"still listed on {node_id} at {sim.now_ms}, over {bound} ms later"
                    )
        return violations


def _lists(node: DistroNode, key: ServiceKey, ip: str, port: int) -> bool:
    view = node.view(key)
    return view is not None and any(i.ip == ip and i.port == port for i in view.instances)


def live_entries(node: DistroNode) -> dict[tuple[ServiceKey, str], tuple[Version, EntryValue]]:
    """Every non-tombstone entry of a node."""
    result: dict[tuple[ServiceKey, str], tuple[Version, EntryValue]] = {}
    for key in node.store.keys():
        for entry_id, entry in node.store.items(key):
            if entry.value is not None:
                result[(key, entry_id)] = (entry.version, entry.value)
    return result


def check_converged(sim: Simulator) -> list[str]:
    """Liveness: after faults stop and the cluster has settled, everyone agrees and nothing is lost."""
    violations: list[str] = []
    nodes = sim.live_nodes()
    not_ready = [nid for nid, node in nodes if not node.ready]
    if not_ready:
        violations.append(f"nodes never became ready: {', '.join(not_ready)}")
    ready = [(nid, node) for nid, node in nodes if node.ready]
    if not ready:
        return [*violations, "no node is running"]
    reference_id, reference = ready[0]
    reference_entries = live_entries(reference)
    for node_id, node in ready[1:]:
        entries = live_entries(node)
        if entries != reference_entries:
            only_ref = sorted(str(k) for k in reference_entries.keys() - entries.keys())[:5]
            only_node = sorted(str(k) for k in entries.keys() - reference_entries.keys())[:5]
            differ = sorted(
                str(k) for k in entries.keys() & reference_entries.keys() if entries[k] != reference_entries[k]
            )[:5]
            violations.append(
                f"{node_id} and {reference_id} disagree: only on {reference_id}: {only_ref}; "
                f"only on {node_id}: {only_node}; different: {differ}"
            )
    for client in sim.clients:
        for node_id, node in ready:
            view = node.view(client.key)
            listed = None
            if view is not None:
                listed = next(
                    (i for i in view.instances if i.ip == client.ip and i.port == client.port), None
                )
            if client.beating:
                if listed is None:
                    violations.append(f"lost: client {client.client_id} ({client.ip}:{client.port}) "
                                      f"is heartbeating but missing on {node_id}")
                elif not listed.healthy:
                    violations.append(f"client {client.client_id} is heartbeating but unhealthy on {node_id}")
            elif client.state in ("deregistered", "dead") and listed is not None:
                violations.append(
                    f"client {client.client_id} {client.state} at {client.last_stopped_ms} "
                    f"but still listed on {node_id} at {sim.now_ms}"
                )
    violations.extend(check_cluster_data(sim.data, ready))
    violations.extend(_check_grpc_clients(sim, ready))
    owners = {node.owner_of(sim.services[0]) for _, node in ready}
    if len(owners) > 1:
        violations.append(f"nodes disagree on the owner of {sim.services[0]}: {sorted(map(str, owners))}")
    return violations


def grpc_listed(node: DistroNode, client: SimGrpcClient) -> Instance | None:
    """The instance of a gRPC client as ``node`` lists it, or None."""
    view = node.view(client.key)
    if view is None:
        return None
    return next((i for i in view.instances if i.ip == client.ip and i.port == client.port), None)


def _check_grpc_clients(sim: Simulator, ready: list[tuple[str, DistroNode]]) -> list[str]:
    """Connected (or reconnecting) gRPC clients are listed healthy everywhere; closed and dead ones nowhere."""
    violations = []
    for client in sim.grpc.clients:
        for node_id, node in ready:
            listed = grpc_listed(node, client)
            if client.alive and (listed is None or not listed.healthy):
                violations.append(f"lost: gRPC client {client.client_id} ({client.state}, via {client.holder}) "
                                  f"is {'missing' if listed is None else 'unhealthy'} on {node_id}")
            elif not client.alive and listed is not None:
                violations.append(f"gRPC client {client.client_id} {client.state} at {client.stopped_ms} "
                                  f"but still listed on {node_id} at {sim.now_ms}")
    return violations
