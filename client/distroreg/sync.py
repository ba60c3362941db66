"""SyncNamingClient: the SDK for plain blocking programs.

It runs a :class:`~distroreg.naming.NamingClient` on an event loop in a background thread (an anyio
blocking portal) and forwards every call to it, so heartbeats, pushes and the cache keep working while the
program's own threads block.

    with SyncNamingClient(["127.0.0.1:8848"], cache_dir="/var/cache/naming") as naming:
        naming.register_instance("goods-service", "10.0.0.5", 8080)
        with httpx.Client(transport=naming.transport()) as http:
            print(http.get("http://goods-service/goodsServiceTest").json())
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from functools import partial
from types import TracebackType
from typing import Any

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal

from distroreg.lb import SyncLoadBalancedTransport
from distroreg.model import DEFAULT_CLUSTER, DEFAULT_GROUP, Instance, ServiceInfo
from distroreg.naming import NamingClient, Subscription


class SyncSubscription:
    """``for info in changes:`` blocks for the next snapshot; ``changes.next(timeout)`` gives up with None."""

    def __init__(self, portal: BlockingPortal, subscription: Subscription) -> None:
        self._portal = portal
        self._subscription = subscription

    def __iter__(self) -> SyncSubscription:
        return self

    def __next__(self) -> ServiceInfo:
        info = self._portal.call(self._next, None)
        if info is None:
            raise StopIteration
        return info

    def next(self, timeout: float | None = None) -> ServiceInfo | None:
        """The next snapshot, or None after ``timeout`` seconds (or when the client closed)."""
        return self._portal.call(self._next, timeout)

    @property
    def current(self) -> ServiceInfo | None:
        """The latest snapshot."""
        return self._subscription.current

    async def _next(self, timeout: float | None) -> ServiceInfo | None:
        with anyio.move_on_after(timeout if timeout is not None else float("inf")):
            try:
                return await self._subscription.__anext__()
            except StopAsyncIteration:
                return None
        return None


class SyncNamingClient:
    """Blocking facade; takes the same arguments as :class:`NamingClient` (plus ``backend``)."""

    def __init__(self, servers: Sequence[str] | str, *, backend: str = "asyncio", **options: Any) -> None:
        self._portal_cm: AbstractContextManager[BlockingPortal] = start_blocking_portal(backend)
        self._portal = self._portal_cm.__enter__()
        try:
            self.client = NamingClient(servers, **options)
            self._client_cm = self._portal.wrap_async_context_manager(self.client)
            self._client_cm.__enter__()
        except BaseException:
            self._portal_cm.__exit__(None, None, None)
            raise
        self._closed = False

    def __enter__(self) -> SyncNamingClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Deregister (if configured), stop the client and its event loop thread."""
        if self._closed:
            return
        self._closed = True
        try:
            self._client_cm.__exit__(None, None, None)
        finally:
            self._portal_cm.__exit__(None, None, None)

    def register_instance(
        self,
        service: str,
        ip: str,
        port: int,
        weight: float = 1.0,
        metadata: Mapping[str, str] | None = None,
        cluster: str = DEFAULT_CLUSTER,
        group: str = DEFAULT_GROUP,
        **options: bool,
    ) -> None:
        """See :meth:`NamingClient.register_instance`."""
        self._portal.call(partial(self.client.register_instance, service, ip, port, weight, metadata, cluster,
                                  group, **options))

    def deregister_instance(
        self, service: str, ip: str, port: int, cluster: str = DEFAULT_CLUSTER, group: str = DEFAULT_GROUP
    ) -> None:
        """See :meth:`NamingClient.deregister_instance`."""
        self._portal.call(partial(self.client.deregister_instance, service, ip, port, cluster, group))

    def get_service_info(
        self, service: str, *, group: str = DEFAULT_GROUP, clusters: Sequence[str] | str | None = None
    ) -> ServiceInfo:
        """See :meth:`NamingClient.get_service_info`."""
        return self._portal.call(partial(self.client.get_service_info, service, group=group, clusters=clusters))

    def get_all_instances(
        self, service: str, clusters: Sequence[str] | str | None = None, *, group: str = DEFAULT_GROUP
    ) -> list[Instance]:
        """See :meth:`NamingClient.get_all_instances`."""
        return self._portal.call(partial(self.client.get_all_instances, service, clusters, group=group))

    def select_instances(
        self,
        service: str,
        healthy: bool = True,
        clusters: Sequence[str] | str | None = None,
        *,
        group: str = DEFAULT_GROUP,
    ) -> list[Instance]:
        """See :meth:`NamingClient.select_instances`."""
        return self._portal.call(partial(self.client.select_instances, service, healthy, clusters, group=group))

    def select_one_healthy_instance(
        self, service: str, clusters: Sequence[str] | str | None = None, *, group: str = DEFAULT_GROUP
    ) -> Instance:
        """See :meth:`NamingClient.select_one_healthy_instance`."""
        return self._portal.call(partial(self.client.select_one_healthy_instance, service, clusters, group=group))

    @contextlib.contextmanager
    def subscribe(
        self, service: str, *, group: str = DEFAULT_GROUP, clusters: Sequence[str] | str | None = None
    ) -> Iterator[SyncSubscription]:
        """``with naming.subscribe("svc") as changes: for info in changes: ...``"""
        manager = self.client.subscribe(service, group=group, clusters=clusters)
        with self._portal.wrap_async_context_manager(manager) as subscription:
            yield SyncSubscription(self._portal, subscription)

    def transport(self, **options: Any) -> SyncLoadBalancedTransport:
        """A load-balancing transport for ``httpx.Client`` over this client."""
        return SyncLoadBalancedTransport(self, **options)


__all__ = ["SyncNamingClient", "SyncSubscription"]
