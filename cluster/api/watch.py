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

``WatchService.attach(runtime, api)`` registers the route and its metrics; it needs no task of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from cluster.api.params import Params
from cluster.http import Request, Response
from distro.model import ServiceKey, service_key

if TYPE_CHECKING:
    from cluster.api.routes import NamingApi
    from cluster.node.pump import NodeRuntime

WATCH_PATH = "/nacos/v1/ns/instance/watch"


class WatchService:
    """Serves ``GET /nacos/v1/ns/instance/watch``. One per node."""

    def __init__(
        self,
        runtime: NodeRuntime,
        api: NamingApi,
        *,
        max_watchers: int = 2048,
        default_timeout_ms: int = 30_000,
        max_timeout_ms: int = 60_000,
    ) -> None:
        if max_watchers < 0 or default_timeout_ms < 0 or max_timeout_ms < 0:
            raise ValueError("watch limits must not be negative")
        self.runtime = runtime
        self.api = api
        self.max_watchers = max_watchers
        self.default_timeout_ms = min(default_timeout_ms, max_timeout_ms)
        self.max_timeout_ms = max_timeout_ms
        self.active = 0
        self.answered_changed = 0  # 200 answers (at once or after a change)
        self.answered_unchanged = 0  # 304 answers at the timeout
        self.rejected = 0  # 503 over max_watchers

    @classmethod
    def attach(cls, runtime: NodeRuntime, api: NamingApi, **limits: int) -> WatchService:
        """Create the service and register its route and metrics on ``api``."""
        service = cls(runtime, api, **limits)
        api.routes[("GET", WATCH_PATH)] = service.handle
        api.extra_metrics.append(service.render_metrics)
        return service

    def current_checksum(self, key: ServiceKey) -> str:
        """The checksum ``instance/list`` would report now (``""`` for an unknown service)."""
        view = self.runtime.node.view(key)
        return "" if view is None else view.checksum

    async def handle(self, request: Request, params: Params) -> Response:
        """The route."""
        key = service_key(params.get("namespaceId"), params.get("groupName"), params.required("serviceName", "dom"))
        params.clusters()  # validate before waiting
        params.boolean("healthyOnly", False)
        timeout_ms = min(params.integer("timeoutMs", self.default_timeout_ms), self.max_timeout_ms)
        known = params.get("checksum")
        if self.active >= self.max_watchers:
            self.rejected += 1
            return Response.text(503, "too many watchers on this node, please poll instance/list or retry later")
        self.active += 1
        try:
            deadline = trio.current_time() + timeout_ms / 1000
            while True:
                changed = self.runtime.change_event(key)  # taken before the check: no change can slip by
                if known is None or self.current_checksum(key) != known:
                    self.answered_changed += 1
                    return await self.api.list_instances(request, params)
                remaining = deadline - trio.current_time()
                if remaining <= 0:
                    self.answered_unchanged += 1
                    return Response(304)
                with trio.move_on_after(remaining):
                    await changed.wait()
        finally:
            self.active -= 1

    def render_metrics(self) -> str:
        """Prometheus text for /metrics."""
        rows: list[tuple[str, str, str, int]] = [
            ("distro_watch_active", "gauge", "HTTP watches waiting on this node.", self.active),
            ("distro_watch_changed_total", "counter", "Watches answered with a new list.", self.answered_changed),
            ("distro_watch_unchanged_total", "counter", "Watches answered 304 at their timeout.",
             self.answered_unchanged),
            ("distro_watch_rejected_total", "counter", "Watches refused over the bound (503).", self.rejected),
        ]
        return "".join(f"# HELP {n} {h}\n# TYPE {n} {k}\n{n} {v}\n" for n, k, h, v in rows)


def install_watch(runtime: NodeRuntime, api: NamingApi, **limits: int) -> WatchService:
    """Same as :meth:`WatchService.attach`."""
    return WatchService.attach(runtime, api, **limits)


__all__ = ["WATCH_PATH", "WatchService", "install_watch"]
