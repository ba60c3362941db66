"""HTTP watch: a long-polling ``instance/list`` for clients that UDP pushes cannot reach (NAT, containers).

    GET /nacos/v1/ns/instance/watch?serviceName=&groupName=&namespaceId=&clusters=&healthyOnly=
                                    &checksum=<the checksum the client holds>&timeoutMs=30000

* No ``checksum`` parameter, or one that differs from the service's current checksum on this node:
  answers at once, 200 with exactly the body ``instance/list`` would give.
* The same checksum: waits until the service changes on this node (a local or a replicated write), then
  answers 200 with the new list; or, if ``timeoutMs`` passes first, answers **304 Not Modified** with no
  body. ``timeoutMs`` defaults to 30 s and is capped at 60 s (``0`` checks and answers at once).
* The checksum of a service nobody registered is ``""``: ``checksum=`` (empty) waits for its first
  instance. Checksums are equal on every node that holds the same instances, so a client may fail over to
  another node and keep its checksum.
* Over ``max_watchers`` concurrent watches on this node: 503, and the client should fall back to polling.
* A watch whose client closes or resets its connection ends at once (its slot and socket are freed, not
  held until the timeout).
* A client that accepts gzip gets the 200 answer in gzip, as from ``instance/list``
  (:mod:`cluster.api.gzipbody`).

The API (:mod:`cluster.api.routes`) lists :meth:`WatchService.handle` as the route and its metrics; it
needs no task of its own. Its answers are built by :mod:`cluster.api.render`, as the list route's are.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from cluster.api.clientinfo import client_agent
from cluster.api.gzipbody import GZIP_HEADERS, accepts_gzip
from cluster.api.params import Params
from cluster.api.render import ListQuery, ListRenderer
from cluster.http import Request, Response
from cluster.metrics import counter, gauge
from cluster.node.pump import NodeRuntime
from distro.messages import SubscriberRow
from distro.model import ServiceKey, service_key

__all__ = ["WATCH_PATH", "WatchConfig", "WatchService"]


async def _cancel_when_gone(request: Request, scope: trio.CancelScope) -> None:
    await request.client_gone()
    scope.cancel()

WATCH_PATH = "/nacos/v1/ns/instance/watch"
_KEPT_CHARS = 128  # of the agent, app and clusters a waiting watch keeps for service/subscribers


@dataclass(frozen=True, slots=True)
class WatchConfig:
    """Bounds of the watch service (a count and milliseconds)."""

    max_watchers: int = 2048
    default_timeout_ms: int = 30_000
    max_timeout_ms: int = 60_000

    def __post_init__(self) -> None:
        if self.max_watchers < 0 or self.default_timeout_ms < 0 or self.max_timeout_ms < 0:
            raise ValueError("watch limits must not be negative")


class WatchService:
    """Serves ``GET /nacos/v1/ns/instance/watch``. One per node."""

    def __init__(self, runtime: NodeRuntime, renderer: ListRenderer, config: WatchConfig | None = None) -> None:
        config = config or WatchConfig()
        self.runtime = runtime
        self.renderer = renderer
        self.max_watchers = config.max_watchers
        self.default_timeout_ms = min(config.default_timeout_ms, config.max_timeout_ms)
        self.max_timeout_ms = config.max_timeout_ms
        self.active = 0
        self.answered_changed = 0  # 200 answers (at once or after a change)
        self.answered_unchanged = 0  # 304 answers at the timeout
        self.rejected = 0  # 503 over max_watchers
        # The watches waiting now, per service (at most max_watchers in all): service/subscribers lists them.
        self._watching: dict[ServiceKey, dict[tuple[str, int], SubscriberRow]] = {}
        self.client_gone = 0  # watches ended because their client went away

    def current_checksum(self, key: ServiceKey) -> str:
        """The checksum ``instance/list`` would report now (``""`` for an unknown service)."""
        view = self.runtime.node.view(key)
        return "" if view is None else view.checksum

    async def handle(self, request: Request, params: Params) -> Response:
        """The route."""
        key = service_key(params.get("namespaceId"), params.get("groupName"), params.required("serviceName", "dom"))
        query = ListQuery(
            key,
            tuple(params.clusters()),  # validated before waiting
            params.boolean("healthyOnly", False),
            client_agent(request).wants_grouped_names,
        )
        timeout_ms = min(params.integer("timeoutMs", self.default_timeout_ms), self.max_timeout_ms)
        known = params.get("checksum")
        if self.active >= self.max_watchers:
            self.rejected += 1
            return Response.text(503, "too many watchers on this node, please poll instance/list or retry later")
        self.active += 1
        ip, port = request.remote[0], request.remote[1]
        watching = self._watching.setdefault(key, {})
        watching[(ip, port)] = (f"{ip}:{port}", request.headers.get("user-agent", "")[:_KEPT_CHARS],
                                (params.get("app") or "")[:_KEPT_CHARS], ip, port,
                                ",".join(query.clusters)[:_KEPT_CHARS], "watch")
        try:
            answer: Response | None = None
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_cancel_when_gone, request, nursery.cancel_scope)
                gzip = accepts_gzip(request.headers.get("accept-encoding"))
                answer = await self._wait(key, query, known, timeout_ms, gzip)
                nursery.cancel_scope.cancel()
            if answer is None:  # the client closed or reset its connection: nobody to answer
                self.client_gone += 1
                return Response(304, close=True)
            return answer
        finally:
            self.active -= 1
            watching.pop((ip, port), None)
            if not watching and self._watching.get(key) is watching:
                del self._watching[key]

    def subscriber_rows(self, key: ServiceKey) -> list[SubscriberRow]:
        """The watches waiting on ``key`` now, as ``service/subscribers`` rows (protocol ``watch``)."""
        return list(self._watching.get(key, {}).values())

    async def _wait(
        self, key: ServiceKey, query: ListQuery, known: str | None, timeout_ms: int, gzip: bool
    ) -> Response:
        deadline = trio.current_time() + timeout_ms / 1000
        while True:
            changed = self.runtime.change_event(key)  # taken before the check: no change can slip by
            if known is None or self.current_checksum(key) != known:
                self.answered_changed += 1
                await self.renderer.prepare(query)  # a big service's first list: its hosts rendered in slices
                pieces = self.renderer.render_gzip(query) if gzip else None  # (None: under GZIP_MIN_BYTES)
                if pieces is not None:
                    return Response(200, parts=pieces, headers=GZIP_HEADERS)
                return Response(200, parts=self.renderer.render_parts(query))
            remaining = deadline - trio.current_time()
            if remaining <= 0:
                self.answered_unchanged += 1
                return Response(304)
            with trio.move_on_after(remaining):
                await changed.wait()

    def render_metrics(self) -> str:
        """Prometheus text for /metrics."""
        return "".join([
            gauge("distro_watch_active", "HTTP watches waiting on this node.", self.active),
            counter("distro_watch_changed_total", "Watches answered with a new list.", self.answered_changed),
            counter("distro_watch_unchanged_total", "Watches answered 304 at their timeout.", self.answered_unchanged),
            counter("distro_watch_rejected_total", "Watches refused over the bound (503).", self.rejected),
            counter("distro_watch_client_gone_total", "Watches ended at once because their client went away.",
                    self.client_gone),
        ])
