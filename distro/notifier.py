"""The notifier: changed keys queue up (coalesced), and draining the queue swaps in new read views.

Every applied change, local or replicated, queues its key. Draining swaps in a new immutable
:class:`~distro.views.ServiceView` per key and emits ``ServiceChanged``; the view builds its sorted
instances on first read, so a burst of writes to a big service costs no rebuilds. The queue holds at most
``max_notifier_keys``; past that it is dropped, and the next drain refreshes every key. Reserved keys
(the namespaces) are not services: they get no view (:meth:`~distro.node.DistroNode.namespaces` reads
them from the store).
"""

from __future__ import annotations

from collections.abc import Iterator

from distro.clusterdata import is_reserved
from distro.effects import Outbox, ServiceChanged
from distro.model import ServiceKey
from distro.store import DatumStore
from distro.views import ServiceView, empty_view

__all__ = ["Notifier"]


class Notifier:
    """The queue of changed keys and the current read view of every existing service."""

    __slots__ = ("_max_keys", "_overflow", "_queue", "_revision", "_store", "_views", "notifications", "overflows")

    def __init__(self, store: DatumStore, max_keys: int) -> None:
        self._store = store
        self._max_keys = max_keys
        self._queue: dict[ServiceKey, None] = {}  # an ordered set
        self._overflow = False
        self._views: dict[ServiceKey, ServiceView] = {}
        self._revision = 0
        self.notifications = 0
        self.overflows = 0

    def queue(self, key: ServiceKey) -> None:
        """``key`` changed: refresh its view at the next drain."""
        if key not in self._queue and not is_reserved(key):
            if len(self._queue) < self._max_keys:
                self._queue[key] = None
            else:
                self._overflow = True
                self.overflows += 1

    def __len__(self) -> int:
        """Keys waiting in the queue."""
        return len(self._queue)

    @property
    def pending(self) -> bool:
        """True when a drain has something to do."""
        return bool(self._queue) or self._overflow

    def drain(self, now_ms: int, outbox: Outbox) -> None:
        """Swap in a new (lazy) view per queued key and emit ``ServiceChanged`` to ``outbox``.

        O(1) per key for a service that still exists: the view only points at the key's entries and
        builds its sorted instance tuple when first read (see :class:`~distro.views.ServiceView`).
        """
        if self._overflow:
            self._overflow = False
            stored = [k for k in self._store.keys() if not is_reserved(k)]
            keys: list[ServiceKey] = stored + [k for k in self._views if k not in self._store]
        else:
            keys = list(self._queue)
        self._queue.clear()
        datum_of = self._store.datum
        exists = self._store.service_exists
        for key in keys:
            self._revision += 1
            self.notifications += 1
            datum = datum_of(key)
            if datum is not None and exists(key):
                view = ServiceView.of_datum(key, datum, self._revision, now_ms)
                self._views[key] = view
            else:
                if self._views.pop(key, None) is None:
                    continue
                view = empty_view(key, self._revision, now_ms)
            outbox.append(ServiceChanged(key, view))

    def view(self, key: ServiceKey) -> ServiceView | None:
        """The read view of a service, or None when it does not exist here."""
        return self._views.get(key)

    def views(self) -> Iterator[ServiceView]:
        """Every existing service's view."""
        return iter(self._views.values())
