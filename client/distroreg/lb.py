"""httpx transports that call a service by name: ``http://goods-service/path`` goes to a healthy instance.

    async with NamingClient(servers) as naming:
        async with httpx.AsyncClient(transport=LoadBalancedTransport(naming)) as http:
            r = await http.get("http://goods-service/goodsServiceTest")

The URL's host is the service name (its port, if any, is ignored); the instance is picked at random by
weight among the healthy ones, from the client's cache. When connecting fails, another instance is tried
(up to ``max_attempts`` different ones). Hosts that are IP addresses or ``localhost`` pass through untouched.
Only the connection is retried: once a request was sent, its answer (or error) is the caller's.

The transports need only ``select_instances`` of the naming client (:class:`InstanceSource`,
:class:`SyncInstanceSource`), so this module imports neither the async nor the blocking client.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable, Sequence
from typing import Protocol

import httpx

from distroreg.errors import NamingError
from distroreg.model import DEFAULT_GROUP, Instance, choose_by_weight
from distroreg.servers import shared_ssl_context


class InstanceSource(Protocol):
    """What :class:`LoadBalancedTransport` asks of a naming client (:class:`~distroreg.NamingClient` has it)."""

    async def select_instances(
        self, service: str, healthy: bool = ..., clusters: Sequence[str] | str | None = ..., *, group: str = ...
    ) -> list[Instance]: ...


class SyncInstanceSource(Protocol):
    """What :class:`SyncLoadBalancedTransport` asks of a naming client (:class:`~distroreg.SyncNamingClient`)."""

    def select_instances(
        self, service: str, healthy: bool = ..., clusters: Sequence[str] | str | None = ..., *, group: str = ...
    ) -> list[Instance]: ...

_RETRYABLE = (httpx.ConnectError, httpx.ConnectTimeout)


def _passthrough(host: str, extra: Sequence[str]) -> bool:
    if host == "localhost" or host in extra:
        return True
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class _Picker:
    def __init__(self, max_attempts: int, rng: random.Random) -> None:
        self.max_attempts = max(1, max_attempts)
        self.rng = rng

    def plan(self, hosts: list[Instance]) -> Callable[[], Instance | None]:
        tried: set[tuple[str, int]] = set()
        budget = [self.max_attempts]

        def next_instance() -> Instance | None:
            if budget[0] <= 0:
                return None
            candidates = [h for h in hosts if (h.ip, h.port) not in tried]
            if not candidates:
                return None
            budget[0] -= 1
            chosen = choose_by_weight(candidates, self.rng)
            tried.add((chosen.ip, chosen.port))
            return chosen

        return next_instance


def _point_at(request: httpx.Request, instance: Instance) -> None:
    request.url = request.url.copy_with(host=instance.ip, port=instance.port)
    request.headers["Host"] = instance.address


def _no_instance(request: httpx.Request, service: str, last: Exception | None) -> httpx.ConnectError:
    detail = f": {last}" if last is not None else ""
    return httpx.ConnectError(f"no reachable healthy instance of service {service!r}{detail}", request=request)


class LoadBalancedTransport(httpx.AsyncBaseTransport):
    """The async transport (for ``httpx.AsyncClient``) over a :class:`~distroreg.NamingClient`."""

    def __init__(
        self,
        naming: InstanceSource,
        *,
        group: str = DEFAULT_GROUP,
        clusters: Sequence[str] | None = None,
        max_attempts: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
        passthrough_hosts: Sequence[str] = (),
        seed: int | None = None,
    ) -> None:
        self.naming = naming
        self.group = group
        self.clusters = list(clusters) if clusters else None
        self.passthrough_hosts = tuple(passthrough_hosts)
        self._inner = transport or httpx.AsyncHTTPTransport(verify=shared_ssl_context())
        self._picker = _Picker(max_attempts, random.Random(seed))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        service = request.url.host
        if _passthrough(service, self.passthrough_hosts):
            return await self._inner.handle_async_request(request)
        try:
            hosts = await self.naming.select_instances(service, True, self.clusters, group=self.group)
        except NamingError as exc:
            raise _no_instance(request, service, exc) from exc
        next_instance = self._picker.plan(hosts)
        last: Exception | None = None
        while (instance := next_instance()) is not None:
            _point_at(request, instance)
            try:
                return await self._inner.handle_async_request(request)
            except _RETRYABLE as exc:
                last = exc
        raise _no_instance(request, service, last)

    async def aclose(self) -> None:
        await self._inner.aclose()


class SyncLoadBalancedTransport(httpx.BaseTransport):
    """The blocking transport (for ``httpx.Client``) over a :class:`~distroreg.SyncNamingClient`."""

    def __init__(
        self,
        naming: SyncInstanceSource,
        *,
        group: str = DEFAULT_GROUP,
        clusters: Sequence[str] | None = None,
        max_attempts: int = 3,
        transport: httpx.BaseTransport | None = None,
        passthrough_hosts: Sequence[str] = (),
        seed: int | None = None,
    ) -> None:
        self.naming = naming
        self.group = group
        self.clusters = list(clusters) if clusters else None
        self.passthrough_hosts = tuple(passthrough_hosts)
        self._inner = transport or httpx.HTTPTransport(verify=shared_ssl_context())
        self._picker = _Picker(max_attempts, random.Random(seed))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        service = request.url.host
        if _passthrough(service, self.passthrough_hosts):
            return self._inner.handle_request(request)
        try:
            hosts = self.naming.select_instances(service, True, self.clusters, group=self.group)
        except NamingError as exc:
            raise _no_instance(request, service, exc) from exc
        next_instance = self._picker.plan(hosts)
        last: Exception | None = None
        while (instance := next_instance()) is not None:
            _point_at(request, instance)
            try:
                return self._inner.handle_request(request)
            except _RETRYABLE as exc:
                last = exc
        raise _no_instance(request, service, last)

    def close(self) -> None:
        self._inner.close()


__all__ = ["InstanceSource", "LoadBalancedTransport", "SyncInstanceSource", "SyncLoadBalancedTransport"]
