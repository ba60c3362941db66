"""gRPC subscribers and the pushes they are owed.

A ``SubscribeServiceRequest`` makes the connection a subscriber of ``(service, clusters)``. When the node's
notifier reports a change of that service (a local write or a replicated one, whatever protocol made it),
every subscribing connection gets the service marked *dirty* and its writer woken. The writer pulls the
pushes when its bi-stream can take them (:meth:`Subscriptions.pull`), building each
``NotifySubscriberRequest`` from the view as it is then: changes that arrive while a push waits coalesce
into it, and a slow reader's backlog is one entry per subscription, never a queue of stale lists.

Bounds: ``max_per_connection`` subscriptions per connection; outstanding (unacknowledged) pushes are
remembered per connection up to ``MAX_UNACKED`` for the ack counters and the latency figure.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from cluster.api.render import ListQuery, ListRenderer
from cluster.grpc.responses import notify_subscriber
from cluster.grpc.wire import Payload
from distro.model import ServiceKey

MAX_UNACKED = 256

Target = tuple[ServiceKey, tuple[str, ...]]  # (service, clusters filter)


@dataclass
class PushStats:
    """Counters for /metrics."""

    pushes_sent: int = 0
    pushes_acked: int = 0
    pushes_coalesced: int = 0  # changes folded into a push that was still waiting
    ack_seconds_total: float = 0.0
    ack_seconds_max: float = 0.0
    subscriptions_refused: int = 0


@dataclass(slots=True)
class _Subscriber:
    targets: dict[Target, None] = field(default_factory=dict)
    dirty: dict[Target, None] = field(default_factory=dict)  # an ordered set of targets owed a push
    unacked: OrderedDict[str, float] = field(default_factory=OrderedDict)  # push request id -> sent at
    push_seq: int = 0


class Subscriptions:
    """Every gRPC subscription of one node."""

    def __init__(
        self,
        renderer: ListRenderer,
        clock: Callable[[], float],
        *,
        max_per_connection: int = 10_000,
    ) -> None:
        self._renderer = renderer
        self._clock = clock
        self.max_per_connection = max_per_connection
        self._subs: dict[str, _Subscriber] = {}
        self._by_key: dict[ServiceKey, dict[str, dict[tuple[str, ...], None]]] = {}  # key -> conn -> filters
        self.stats = PushStats()

    def subscribe(self, connection_id: str, key: ServiceKey, clusters: tuple[str, ...]) -> bool:
        """Start pushing ``key`` to the connection; False when it already has too many subscriptions."""
        sub = self._subs.setdefault(connection_id, _Subscriber())
        target = (key, clusters)
        if target not in sub.targets:
            if len(sub.targets) >= self.max_per_connection:
                self.stats.subscriptions_refused += 1
                return False
            sub.targets[target] = None
            self._by_key.setdefault(key, {}).setdefault(connection_id, {})[clusters] = None
        return True

    def unsubscribe(self, connection_id: str, key: ServiceKey, clusters: tuple[str, ...]) -> None:
        """Stop pushing ``key`` (with that clusters filter) to the connection."""
        sub = self._subs.get(connection_id)
        if sub is None or sub.targets.pop((key, clusters), 1) is not None:
            return
        sub.dirty.pop((key, clusters), None)
        self._forget_index(connection_id, key, clusters)

    def _forget_index(self, connection_id: str, key: ServiceKey, clusters: tuple[str, ...]) -> None:
        conns = self._by_key.get(key)
        if conns is None:
            return
        filters = conns.get(connection_id)
        if filters is not None:
            filters.pop(clusters, None)
            if not filters:
                del conns[connection_id]
        if not conns:
            del self._by_key[key]

    def drop(self, connection_id: str) -> None:
        """The connection is gone: forget its subscriptions."""
        sub = self._subs.pop(connection_id, None)
        if sub is not None:
            for key, clusters in sub.targets:
                self._forget_index(connection_id, key, clusters)

    def count(self) -> int:
        """Subscriptions held, all connections together."""
        return sum(len(sub.targets) for sub in self._subs.values())

    def subscribers_of(self, key: ServiceKey) -> dict[str, dict[tuple[str, ...], None]]:
        """``connection id -> clusters filters`` subscribed to ``key``."""
        return self._by_key.get(key, {})

    # -- changes -> pushes ------------------------------------------------------------------------
    def on_change(self, key: ServiceKey) -> list[str]:
        """Mark ``key`` dirty for its subscribers; the connection ids whose writers must wake."""
        conns = self._by_key.get(key)
        if not conns:
            return []
        for connection_id, filters in conns.items():
            sub = self._subs[connection_id]
            for clusters in filters:
                if (key, clusters) in sub.dirty:
                    self.stats.pushes_coalesced += 1
                else:
                    sub.dirty[(key, clusters)] = None
        return list(conns)

    def pull(self, connection_id: str, budget_bytes: int) -> list[Payload]:
        """The pushes owed to a connection, about ``budget_bytes`` of them (at least one if any is owed)."""
        sub = self._subs.get(connection_id)
        if sub is None or not sub.dirty:
            return []
        out: list[Payload] = []
        size = 0
        now = self._clock()
        while sub.dirty and (not out or size < budget_bytes):
            key, clusters = next(iter(sub.dirty))
            del sub.dirty[(key, clusters)]
            sub.push_seq += 1
            request_id = str(sub.push_seq)
            info = self._renderer.service_info(ListQuery(key, clusters))
            payload = notify_subscriber(request_id, key.namespace, key.group, key.service, info)
            out.append(payload)
            size += len(payload.body)
            sub.unacked[request_id] = now
            if len(sub.unacked) > MAX_UNACKED:
                sub.unacked.popitem(last=False)
            self.stats.pushes_sent += 1
        return out

    def acked(self, connection_id: str, request_id: str) -> None:
        """The client acknowledged a push."""
        sub = self._subs.get(connection_id)
        if sub is None:
            return
        sent = sub.unacked.pop(request_id, None)
        if sent is None:
            return
        elapsed = max(0.0, self._clock() - sent)
        self.stats.pushes_acked += 1
        self.stats.ack_seconds_total += elapsed
        self.stats.ack_seconds_max = max(self.stats.ack_seconds_max, elapsed)


__all__ = ["PushStats", "Subscriptions"]
