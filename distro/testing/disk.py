"""A node's disk, simulated: the entries its ``Persist`` effects wrote, which survive a crash.

The harness and the simulator keep one per node id. Writing keeps the higher version per entry, as the
runtime's store does (``cluster/node/datadir.py``), and a forgotten deletion drops its tombstone unless a
newer version is there; :meth:`SimDisk.items` is what a restarted node loads
(:meth:`~distro.node.DistroNode.load_persisted`).
"""

from __future__ import annotations

from distro.datum import Entry
from distro.effects import ForgetDeletion, Persist
from distro.messages import Items
from distro.model import ServiceKey

__all__ = ["SimDisk"]


class SimDisk:
    """The durable entries of one node, and how many writes it took."""

    __slots__ = ("_entries", "writes")

    def __init__(self) -> None:
        self._entries: dict[tuple[ServiceKey, str], Entry] = {}
        self.writes = 0

    def write(self, persist: Persist) -> None:
        """Store one persisted entry (an older version than the stored one changes nothing)."""
        slot = (persist.key, persist.entry_id)
        current = self._entries.get(slot)
        if current is None or persist.entry.version > current.version:
            self._entries[slot] = persist.entry
        self.writes += 1

    def forget(self, effect: ForgetDeletion) -> None:
        """Drop the tombstone of a deletion the node forgot (a live entry, or a newer one, stays)."""
        slot = (effect.key, effect.entry_id)
        current = self._entries.get(slot)
        if current is not None and current.value is None and current.version <= effect.version:
            del self._entries[slot]

    def items(self) -> Items:
        """Everything on the disk, as a restarted node loads it."""
        return tuple((key, entry_id, entry) for (key, entry_id), entry in self._entries.items())

    def __len__(self) -> int:
        return len(self._entries)
