"""Health: the owner's heartbeat clocks, and the check that marks silent instances unhealthy, then expires them.

The owner of a key keeps one clock per instance: when it last heard a beat (or a write) for it. An instance
is marked unhealthy ``heartbeat_timeout_ms`` after its last beat and deleted (a tombstone) after
``instance_expire_ms``, both overridable per instance by Nacos's metadata; the node applies both as
replicated writes. The check runs every ``health_check_interval_ms`` but scans the owned instances only
once the earliest possible deadline has passed (a lower bound that every write starting or shortening a
clock pulls in), so a large registry whose clients beat on time costs almost nothing between deadlines.

That deadline still passes every few seconds (every ~10 s with 5 s beats and a 15 s timeout), and a scan of
every owned instance in one step held a node 250-375 ms at a million instances. So a scan is a *pass* in
slices: it takes the owned keys when it starts and judges about ``health_scan_instances`` instances per
call, whole keys at a time, each as of the ``now_ms`` of the call that reaches it; the node calls again at
every tick until the pass is done. Keys lost (or emptied) meanwhile are skipped. Whatever could fall due
sooner meanwhile (a key gained, a clock started or shortened) lowers the earliest deadline as usual, and
the pass's end keeps the lower of that and the earliest deadline it found, so nothing lowered mid-pass is
lost. A restart of the clocks, or self-preservation, drops the pass: the next check starts a new one.

Clocks restart at "now" whenever this node could not have heard the beats: when it gains a key, when it
regains quorum after self-preservation, and when it did not run for longer than ``peer_timeout_ms``.
A restart costs one step per owned key: the keys' clocks are dropped and rebuilt by :meth:`HeartbeatClocks.fill`
in slices, as for gained keys.

Gaining keys costs nothing per instance at once: :meth:`HeartbeatClocks.reassign` notes each gained key and
when it was gained, and :meth:`HeartbeatClocks.fill` builds their clocks a slice at a time (``clock_fill_instances``
per node tick), each starting at the gain time, as if built at once. Built at once, the clocks of a third of
a million-instance registry held a node for 0.8 s when a peer went down. Whatever needs every clock before
the slices are done builds the rest first (the orphan walk), or waits (the check: it judges nothing until
every clock is built, a few ticks later); a beat or a write meanwhile sets its instance's clock as usual, and
the slice leaves it alone.

An instance bound to a gRPC connection (``Instance.connection``) is renewed by the node holding the
connection instead of beating. Silence never marks it unhealthy (its connection's detection, on its holder,
decides whether the client is gone, as in Nacos 2.x); it only expires, ``instance_expire_ms`` after its last
renewal, and any write of it (its holder registering it) restarts its clock. When its holder is seen down,
its owner marks it an *orphan* (:attr:`~distro.model.Instance.orphaned_ms`, a replicated write; the node
decides, :meth:`HeartbeatClocks.orphan_candidates` lists them): the client is reconnecting elsewhere and has
until ``instance_expire_ms`` after that to register again (nacos-sdk-python 3.x does so up to 30 s after it
reconnects). An orphan's clock is its mark, on every owner and for good: gaining its key, regaining quorum
or a pause never restart it, so an orphan is gone ``instance_expire_ms`` after its holder was seen down
whatever the membership does meanwhile (docs/protocol.md, "The holder dies: orphans"). The check also marks
one that no holder renewed for ``heartbeat_timeout_ms + peer_timeout_ms`` (a live holder renews every third
of the heartbeat timeout), as of its last renewal: its holder died unseen by this node (its owner then was
cut off, say, or it was a holder's earlier life), and no later death or ownership change restarts it.
"""

from __future__ import annotations

from collections.abc import Callable

from distro.config import NEVER, DistroConfig
from distro.datum import Datum
from distro.model import Instance, ServiceKey
from distro.ownership import OwnershipMap
from distro.store import DatumStore

__all__ = ["HealthChange", "HeartbeatClocks"]

HealthChange = tuple[ServiceKey, str, Instance | None]
"""A write the health check asks for: the instance marked unhealthy or an orphan, or None (expired: delete it)."""


class HeartbeatClocks:
    """The heartbeat clocks of the instances this node owns, and the health check over them."""

    __slots__ = ("_config", "_due_ms", "_filling", "_last_beat", "_pass_due_ms", "_pass_keys", "_pass_next",
                 "_preserving", "_store", "_unrenewed_ms")

    def __init__(self, config: DistroConfig, store: DatumStore) -> None:
        self._config = config
        self._store = store
        self._last_beat: dict[ServiceKey, dict[str, int]] = {}  # owned key -> entry id -> last beat
        self._filling: dict[ServiceKey, int] = {}  # gained keys whose clocks are still to build -> gained at (ms)
        # No owned instance can turn unhealthy or expire before this (a lower bound; NEVER: scan at the next
        # check). Writes that start or shorten a clock lower it, so a check with nothing due is O(1). No clock
        # yet, nothing due: every clock made later lowers it (a node that has just loaded a million-entry
        # snapshot does not scan all it owns at its first check).
        self._due_ms = -NEVER
        # The pass in progress (None: none): the owned keys when it started, the next one to judge, and the
        # earliest deadline it found so far. Meanwhile _due_ms collects only what writes lower.
        self._pass_keys: list[ServiceKey] | None = None
        self._pass_next = 0
        self._pass_due_ms = -NEVER
        self._preserving = False  # the last check saw less than half the cluster (self-preservation)
        # A gRPC-bound instance not renewed for this long has no live holder renewing it here: marked an
        # orphan as of its last renewal (a live holder renews every heartbeat_timeout_ms / 3; a peer timeout
        # covers a holder whose view of ownership is behind).
        self._unrenewed_ms = config.heartbeat_timeout_ms + config.peer_timeout_ms

    # ============================================================================================
    # Clocks
    # ============================================================================================
    def _deadline_ms(self, inst: Instance, last_ms: int) -> int:
        cfg = self._config
        expire = inst.expire_ms(cfg.instance_expire_ms)
        if inst.connection:
            return last_ms + (expire if inst.orphaned_ms else min(expire, self._unrenewed_ms))
        if not inst.healthy:
            return last_ms + expire
        return last_ms + min(expire, inst.heartbeat_timeout_ms(cfg.heartbeat_timeout_ms))

    def _lower_due(self, inst: Instance, last_ms: int) -> None:
        deadline = self._deadline_ms(inst, last_ms)
        if deadline < self._due_ms:
            self._due_ms = deadline

    def beat(self, key: ServiceKey, entry_id: str, now_ms: int) -> bool:
        """A beat (or write) for an instance: its clock restarts. False when ``key`` has no clocks here."""
        beats = self._last_beat.get(key)
        if beats is None:
            return False
        beats[entry_id] = now_ms
        return True

    def start(self, key: ServiceKey, entry_id: str, now_ms: int) -> None:
        """The first clock of an owned ``key`` (see :meth:`beat`), starting at ``now_ms``."""
        self._last_beat[key] = {entry_id: now_ms}
        inst = self._store.live_instance(key, entry_id)
        if inst is not None:
            self._lower_due(inst, now_ms)

    def instance_changed(self, key: ServiceKey, entry_id: str, inst: Instance, now_ms: int) -> None:
        """An owned instance was written: its clock starts now unless it runs already. A gRPC-bound
        instance's clock is set: to its orphan mark, else to now (its holder registered it)."""
        beats = self._last_beat.setdefault(key, {})
        if inst.connection:
            last = beats[entry_id] = inst.orphaned_ms or now_ms
        else:
            last = beats.setdefault(entry_id, now_ms)
        self._lower_due(inst, last)

    def forget(self, key: ServiceKey, entry_id: str) -> None:
        """An instance was deleted: drop its clock."""
        beats = self._last_beat.get(key)
        if beats is not None:
            beats.pop(entry_id, None)

    def restart(self, now_ms: int) -> None:
        """Every owned instance's heartbeat clock starts again at ``now_ms``, but an orphan's (its mark
        stands: no renewal could have been missed, its holder is gone).

        Costs one step per owned key, not per instance: every key's clocks are dropped and rebuilt by
        :meth:`fill` in slices, as for a gained key (at 1M instances the walk over every clock held a node
        for ~285 ms). The check judges nothing until they are built; the slices compute the new bound."""
        filling = self._filling
        for key, beats in self._last_beat.items():
            beats.clear()
            filling[key] = now_ms  # a key still filling keeps its place in the queue
        self._pass_keys = None  # a pass in progress judged by the old clocks: start again
        self._due_ms = -NEVER  # nothing due until the slices lower it (every clock they build counts)

    def orphan_candidates(self, held: Callable[[str], bool]) -> list[tuple[ServiceKey, str, Instance]]:
        """The owned gRPC-bound instances not marked orphans yet whose connection ``held`` selects (those
        of a holder just seen down); the node marks them. Orphans already marked (of an earlier death of
        that holder, or of one of its earlier lives) are left alone: their clocks never restart."""
        found: list[tuple[ServiceKey, str, Instance]] = []
        if not self._store.bound_instances:  # none bound to a connection: no walk over every owned instance
            return found
        self.fill(None)
        live_instance = self._store.live_instance
        for key, beats in self._last_beat.items():
            for entry_id in beats:
                inst = live_instance(key, entry_id)
                if inst is not None and inst.connection and not inst.orphaned_ms and held(inst.connection):
                    found.append((key, entry_id, inst))
        return found

    def reassign(
        self, node_id: str, old: OwnershipMap, new: OwnershipMap, now_ms: int
    ) -> tuple[list[ServiceKey], int]:
        """Ownership moved from ``old`` to ``new``: gained keys get clocks starting at ``now_ms`` (never a
        stale ``lastBeat``; an orphan's at its mark), built later by :meth:`fill`; lost keys lose theirs.
        Returns the keys gained and how many were lost (on a join, how many with clocks).

        Keys with clocks but no longer stored (their tombstones were collected) are visited too: left
        behind, their clocks would make this node check, and expire, instances it no longer owns once the
        key is registered again."""
        if node_id in old.members and set(old.members) <= set(new.members):
            return [], self._lose_to_joiners(node_id, new)
        gained: list[ServiceKey] = []
        lost = 0
        by_key = dict.fromkeys(self._store.keys())
        by_key.update(dict.fromkeys(self._last_beat))
        keys = list(by_key)
        # Owners looked up in bulk (owners_of_keys: no call per key; cached by key object, no string built).
        old_owners = old.owners_of_keys(keys)
        # Members only left (a peer went down): a key whose owner stays keeps it (rendezvous hashing: the
        # highest score among fewer members is the same one while it is among them), so only the departed
        # members' keys are looked up in the new map (at 10,000 keys, a third of the lookups).
        if set(new.members) <= set(old.members):
            staying = frozenset(new.members)
            moved = iter(new.owners_of_keys([key for key, owner in zip(keys, old_owners, strict=True)
                                             if owner not in staying]))
            new_owners = [owner if owner in staying else next(moved) for owner in old_owners]
        else:
            new_owners = new.owners_of_keys(keys)
        for key, owner, new_owner in zip(keys, old_owners, new_owners, strict=True):
            was = owner == node_id
            now_owned = new_owner == node_id
            if now_owned and not was:
                gained.append(key)
                self._last_beat[key] = {}
                self._filling[key] = now_ms
            elif was and not now_owned:
                lost += 1
                self._last_beat.pop(key, None)
                self._filling.pop(key, None)
        return gained, lost

    def _lose_to_joiners(self, node_id: str, new: OwnershipMap) -> int:
        """Members were only added, this node among the old ones (a peer came up or back). Rendezvous
        hashing moves a key only to an added member (one of the old members still has the highest score
        among them, or an added one has a higher one), so this node gains nothing and can lose only what it
        owned: the keys it keeps clocks for are looked up in ``new``, no other (a stored key it owned without
        clocks has nothing to drop). At 1M instances (10,000 keys) the walk over every key in both maps was
        most of a survivor's 47-69 ms of CPU in the step that saw the restarted node come back."""
        keys = list(self._last_beat)
        lost = [key for key, owner in zip(keys, new.owners_of_keys(keys), strict=True) if owner != node_id]
        for key in lost:
            del self._last_beat[key]
            self._filling.pop(key, None)
        return len(lost)

    @property
    def filling(self) -> bool:
        """Whether gained keys still wait for their clocks (the node calls :meth:`fill` at every tick)."""
        return bool(self._filling)

    def fill(self, max_instances: int | None) -> None:
        """Build the clocks of gained keys, whole keys at a time, until about ``max_instances`` instances
        were visited (None: all). Each starts when its key was gained (an orphan's at its mark), unless a
        beat or a write set it since."""
        filling = self._filling
        visited = 0
        while filling and (max_instances is None or visited < max_instances):
            key = next(iter(filling))
            since = filling.pop(key)
            beats = self._last_beat.get(key)
            datum = self._store.datum(key)
            if beats is None or datum is None:
                continue
            visited += len(datum)
            self._fill_key(beats, datum, since)

    def _fill_key(self, beats: dict[str, int], datum: Datum, since: int) -> None:
        """One gained key's clocks, in bulk: an instance that lives by heartbeats starts at ``since`` and its
        deadline is its metadata's and health's (instances share metadata mappings, so that is worked out
        once per run of equal ones, not per instance); a gRPC-bound one starts at its orphan mark, if any.

        A clock a beat or a write set since the gain stands, and its deadline still counts: beat() never
        lowers the bound (a beat only postpones a deadline already counted). It counts as of ``since``
        (earlier than the beat): the bound stays a lower bound, at worst a check a little early."""
        plain: list[str] = []
        least = -NEVER  # the earliest deadline among the heartbeat instances (none yet: never)
        last_meta: object = None
        last_healthy: object = None
        for entry_id, entry in datum.items():
            inst = entry.value
            if type(inst) is not Instance:
                continue
            if inst.connection:
                start = beats.get(entry_id)
                if start is None:
                    start = beats[entry_id] = inst.orphaned_ms or since
                self._lower_due(inst, start)
                continue
            plain.append(entry_id)
            if inst.metadata is not last_meta or inst.healthy is not last_healthy:
                last_meta, last_healthy = inst.metadata, inst.healthy
                least = min(least, self._deadline_ms(inst, since))
        if plain:
            started = dict.fromkeys(plain, since)
            started.update(beats)  # clocks set since the gain stand
            beats.update(started)
            if least < self._due_ms:
                self._due_ms = least

    def last_beat_ms(self, key: ServiceKey, entry_id: str) -> int | None:
        """When a beat was last heard for an instance (None when this node keeps no clock for it)."""
        beats = self._last_beat.get(key)
        if beats is None:
            return None
        last = beats.get(entry_id)
        since = self._filling.get(key)
        if last is None and since is not None:  # gained, its clock not built yet: what fill will set
            inst = self._store.live_instance(key, entry_id)
            return None if inst is None else inst.orphaned_ms or since
        return last

    # ============================================================================================
    # The check
    # ============================================================================================
    @property
    def scanning(self) -> bool:
        """Whether a pass of the check is in progress (the node calls :meth:`check` at every tick until done)."""
        return self._pass_keys is not None

    def check(self, now_ms: int, quorum: bool) -> list[HealthChange]:
        """The writes due now: instances to mark unhealthy, to mark orphans (gRPC-bound, not renewed for
        ``heartbeat_timeout_ms + peer_timeout_ms``: as of their last renewal) or to expire.

        Once the earliest possible deadline has passed, a pass judges every owned instance, about
        ``health_scan_instances`` per call (whole keys, in the order they were owned when the pass started),
        each as of the ``now_ms`` of the call that reaches it; :attr:`scanning` says a pass goes on.
        ``quorum`` False (self-preservation: this node sees less than half the cluster) expires nothing.
        """
        if not quorum:
            self._preserving = True
            self._pass_keys = None  # restarted with the clocks when quorum is back
            return []
        if self._preserving:
            # Quorum is back. While we saw less than half the cluster, beats went to the other side and we
            # did not hear them: our clocks are stale, not the instances. Restart them, as on gaining a key.
            self._preserving = False
            self.restart(now_ms)
        if self._filling:
            return []  # judged once every clock is built: a few ticks away (built here at once: 260 ms at 1M)
        if self._pass_keys is None:
            if now_ms <= self._due_ms:
                return []  # nothing can be due yet: no pass over the owned instances
            self._pass_keys = list(self._last_beat)
            self._pass_next = 0
            self._pass_due_ms = -NEVER
            self._due_ms = -NEVER  # from now on, what writes lower (keys gained, clocks started)
        return self._scan_slice(now_ms)

    def _scan_slice(self, now_ms: int) -> list[HealthChange]:
        keys = self._pass_keys
        assert keys is not None
        changes: list[HealthChange] = []
        due = self._pass_due_ms
        index, end = self._pass_next, len(keys)
        budget = self._config.health_scan_instances
        visited = 0
        while index < end and visited < budget:
            key = keys[index]
            index += 1
            beats = self._last_beat.get(key)
            datum = self._store.datum(key)
            if beats is None or datum is None:
                continue  # lost or emptied since the pass started
            visited += len(datum)
            due = self._judge(key, beats, datum, now_ms, changes, due)
        if index < end:
            self._pass_next, self._pass_due_ms = index, due
        else:  # done: the earliest deadline found, or sooner one a write set during the pass
            self._pass_keys = None
            self._due_ms = min(self._due_ms, due)  # these changes' writes lower it again for what they change
        return changes

    def _judge(
        self, key: ServiceKey, beats: dict[str, int], datum: Datum, now_ms: int, changes: list[HealthChange], due: int
    ) -> int:
        """Append the changes due now among ``key``'s instances; returns ``due`` lowered to their deadlines."""
        expire_default_ms = self._config.instance_expire_ms
        for entry_id, entry in datum.items():
            inst = entry.value
            if not isinstance(inst, Instance):
                continue
            last = beats.get(entry_id)
            if last is None:
                beats[entry_id] = last = inst.orphaned_ms or now_ms
            if now_ms - last > inst.expire_ms(expire_default_ms):
                changes.append((key, entry_id, None))
                continue
            # Not expired: a deadline passed is the mark (an orphan's and an unhealthy one's deadline is the
            # expiry), an orphan for a connection's instance, unhealthy for a beating one.
            deadline = self._deadline_ms(inst, last)
            if now_ms > deadline:
                marked = inst.replace(orphaned_ms=max(1, last)) if inst.connection else inst.with_health(False)
                changes.append((key, entry_id, marked))
            elif deadline < due:
                due = deadline
        return due
