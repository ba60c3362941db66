"""The empty-service cleaner: services that registrations created are removed a while after they empty.

Nacos keeps a service after its last instance leaves and lets a periodic task remove it later (its
``EmptyServiceAutoClean``: a service seen empty at more than 3 runs in a row, runs every 20 s after a 60 s
delay by default, 30 s after 50 s in its shipped configuration). Here the owner of a service runs the check
every ``empty_service_clean_interval_ms`` and removes a service that

- was created by a registration (its settings are *implicit*; see :mod:`distro.clusterdata`): a service
  created through the API, or configured since (``PUT /service`` writes its settings, ``PUT /cluster`` a
  cluster's settings), stays until ``DELETE /service``;
- has no live instance, and
- has not changed for ``empty_service_grace_ms`` (its newest entry, the tombstone of its last instance
  for instance, is at least that old).

Removing it writes a tombstone over its implicit marker (``#implicit``): an ordinary write, so it
replicates like any other, and every node drops the service together. The age comes from the entries' versions, so a new owner
(after a membership change) judges a service exactly as the old one would have.
"""

from __future__ import annotations

from collections.abc import Callable

from distro.clusterdata import cluster_name_of, is_reserved
from distro.config import DistroConfig
from distro.datum import IMPLICIT_ENTRY_ID
from distro.model import ServiceKey
from distro.store import DatumStore

__all__ = ["EmptyServiceCleaner"]


class EmptyServiceCleaner:
    """When the next check is due, and which empty services it removes."""

    __slots__ = ("_config", "_store", "next_run_ms", "removed")

    def __init__(self, config: DistroConfig, store: DatumStore, now_ms: int) -> None:
        self._config = config
        self._store = store
        self.next_run_ms = now_ms + config.empty_service_clean_interval_ms
        self.removed = 0

    def due(self, now_ms: int) -> bool:
        """True when a check is due (and schedules the next one)."""
        if now_ms < self.next_run_ms:
            return False
        self.next_run_ms = now_ms + self._config.empty_service_clean_interval_ms
        return True

    def doomed(self, now_ms: int, is_owner: Callable[[ServiceKey], bool]) -> list[ServiceKey]:
        """The services this node owns that are due for removal now."""
        grace = self._config.empty_service_grace_ms
        store = self._store
        found: list[ServiceKey] = []
        for key in store.keys_without_instances():
            if is_reserved(key):
                continue
            if store.live_value(key, IMPLICIT_ENTRY_ID) is None or store.meta(key) is not None or not is_owner(key):
                continue  # not created by a registration, or configured since
            items = store.items(key)
            if any(entry.value is not None and cluster_name_of(entry_id) is not None for entry_id, entry in items):
                continue  # configured clusters (PUT /cluster): kept until DELETE /service
            newest_ms = max(entry.ms for _, entry in items)
            if now_ms - newest_ms >= grace:
                found.append(key)
        self.removed += len(found)
        return found
