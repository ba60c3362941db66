"""Durability: which entries a node writes to disk, and answers that wait until they are there.

A node started with a data folder runs with ``durable_writes``. Then every applied change to a
cluster-data slot (a namespace, a service's settings, a cluster's settings; see :mod:`distro.clusterdata`)
becomes a :class:`~distro.effects.Persist` effect, numbered in order, whether the change was written here
or merged from a peer (replicas persist what they receive). What is persisted:

- a durable value (a namespace, explicit service settings, cluster settings, a registry setting): the entry;
- a tombstone in a cluster-data slot, whatever it replaced (a durable value, or nothing: the deletion may
  reach a node that never held the value): the tombstone. It stays on disk after the store collects it
  from memory (the store keeps an *entry floor* then, :mod:`distro.store`), and a restarted node loads it
  back: the record that the entry was deleted, so that a stale copy (on a node that was away, or on its
  disk) cannot bring it back, even after every node restarted at once;
- anything else (instances, implicit markers, tombstones over them): nothing. Ephemeral state stays in
  memory. Every entry written is one the node holds, version and content alike (never a made-up one).

The answer to a request about cluster data is held back until every ``Persist`` emitted so far is on
disk: the runtime reports progress with the highest ``seq`` written (:meth:`Durability.persisted`), and the
held answers (a client reply, or the reply to a forwarding peer) are released in order. So an
acknowledged setting is on this node's disk before its client hears ``ok``; a crash before that loses
only writes nobody was told about.

Entries loaded from disk at start are merged without a ``Persist`` (they are there already).

When the store forgets a collected deletion of cluster data (more than ``max_deletion_records``,
:mod:`distro.store`), :meth:`Durability.forget` emits a :class:`~distro.effects.ForgetDeletion`: the disk
drops the tombstone row with the memory's floor, so a restart does not load it back.
"""

from __future__ import annotations

from collections import deque

from distro.clusterdata import is_durable_slot, is_durable_value
from distro.datum import Entry
from distro.effects import ClientReply, ForgetDeletion, Outbox, Persist, Send
from distro.model import ServiceKey
from distro.versions import Version

__all__ = ["Durability"]


class Durability:
    """The persist sequence of one node and the answers waiting for the disk."""

    __slots__ = ("_deferred", "_outbox", "durable_seq", "enabled", "latest_seq", "persisted_entries")

    def __init__(self, enabled: bool, outbox: Outbox) -> None:
        self.enabled = enabled
        self._outbox = outbox
        self.latest_seq = 0  # the last Persist emitted
        self.durable_seq = 0  # everything up to here is on disk
        self._deferred: deque[tuple[int, ClientReply | Send]] = deque()
        self.persisted_entries = 0

    def record(self, key: ServiceKey, entry_id: str, entry: Entry) -> None:
        """An entry was applied: emit its ``Persist`` if it needs one."""
        if not self.enabled or not is_durable_slot(key, entry_id):
            return
        if entry.value is not None and not is_durable_value(entry.value):
            return  # implicit settings (the old form, under #meta): never on disk
        self.latest_seq += 1
        self.persisted_entries += 1
        self._outbox.append(Persist(self.latest_seq, key, entry_id, entry))

    def forget(self, key: ServiceKey, entry_id: str, version: Version) -> None:
        """The store forgot a collected deletion: emit a ``ForgetDeletion`` if it has a row on disk."""
        if self.enabled and is_durable_slot(key, entry_id):
            self._outbox.append(ForgetDeletion(key, entry_id, version))

    @property
    def behind(self) -> bool:
        """True while some emitted ``Persist`` is not on disk yet."""
        return self.latest_seq > self.durable_seq

    def hold(self, answer: ClientReply | Send) -> None:
        """Release ``answer`` once everything persisted so far is on disk."""
        self._deferred.append((self.latest_seq, answer))

    def persisted(self, seq: int) -> None:
        """The runtime wrote everything up to ``seq``: release the answers that waited for it."""
        if seq <= self.durable_seq:
            return
        self.durable_seq = min(seq, self.latest_seq)
        deferred = self._deferred
        while deferred and deferred[0][0] <= self.durable_seq:
            self._outbox.append(deferred.popleft()[1])

    def __len__(self) -> int:
        """Answers waiting for the disk."""
        return len(self._deferred)
