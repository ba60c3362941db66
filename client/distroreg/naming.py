"""NamingClient: the async SDK (trio or asyncio, through anyio). See docs/api.md, "Python SDK".

One client keeps, for every service it was asked about, a snapshot that it refreshes in the background:

* **UDP push** (``push="udp"``): it lists with ``udpPort``/``clientIP`` so the server registers it as a
  push subscriber; pushes arrive on its UDP socket and are acknowledged; a poll every ``cacheMillis``
  (10 s) keeps the subscription alive and catches what UDP lost.
* **HTTP watch** (``push="watch"``): one long-polling ``instance/watch`` per service, answered as soon as
  the service changes (for networks where UDP from the servers does not arrive).
* **auto** (the default): UDP, switching to the watch when pushes evidently do not arrive (polls found
  ``missed_pushes_before_watch`` changes that no push had brought), when the UDP socket cannot be opened,
  or for a service whose server did not take the subscription.
* **poll**: polling only.

Failures back off (1, 2, 4 ... up to 60 s). Every accepted snapshot is written to ``cache_dir`` (when
given), and read back whenever no server answers, also by a client that has just started.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import socket
import zlib
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

import anyio
import anyio.abc
import httpx

from distroreg.cache import DiskCache
from distroreg.errors import NamingError, NamingUnavailable, NoInstanceError
from distroreg.model import (
    DEFAULT_CLUSTER,
    DEFAULT_GROUP,
    Instance,
    ServiceInfo,
    choose_by_weight,
    grouped_name,
)
from distroreg.servers import ServerPool, normalize_server, shared_ssl_context

log = logging.getLogger("distroreg")

__version__ = "0.1.0"
USER_AGENT = f"Distro-Python-Client:v{__version__}"
NS = "/nacos/v1/ns"
INSTANCE_PATH = f"{NS}/instance"
LIST_PATH = f"{NS}/instance/list"
BEAT_PATH = f"{NS}/instance/beat"
WATCH_PATH = f"{NS}/instance/watch"
CODE_RESOURCE_NOT_FOUND = 20404
META_BEAT_INTERVAL = "preserved.heart.beat.interval"
DEFAULT_CACHE_MILLIS = 3000
MAX_PUSH_BYTES = 8 * 1024 * 1024  # gunzipped

PushMode = Literal["auto", "udp", "watch", "poll"]
_Key = tuple[str, str]  # (group@@service, clusters)


@dataclass
class ClientStats:
    """What the client did (for logs and tests)."""

    pushes_received: int = 0
    pushes_acked: int = 0
    polls: int = 0
    watches: int = 0
    changes: int = 0  # accepted snapshots whose hosts differ
    ignored_empty: int = 0
    beats: int = 0
    reregistrations: int = 0
    disk_writes: int = 0
    disk_reads: int = 0
    missed_pushes: int = 0  # polls that found a change no push had brought (UDP mode)


class _Tracked:
    """The cache entry of one (service, clusters)."""

    def __init__(self, grouped: str, clusters: str) -> None:
        self.grouped = grouped
        self.clusters = clusters
        self.info: ServiceInfo | None = None
        self.raw: str | None = None
        self.version = 0
        self.changed = anyio.Event()
        self.lock = anyio.Lock()
        self.updating = False
        self.seen_checksum: str | None = None  # the server's latest checksum, even of a snapshot we ignored
        self.cache_millis = DEFAULT_CACHE_MILLIS
        self.push_accepted = False  # the last list was taken as a push subscription
        self.force_watch = False
        self.fail_count = 0

    def notify(self) -> None:
        self.version += 1
        event, self.changed = self.changed, anyio.Event()
        event.set()


@dataclass
class _Beat:
    grouped: str
    ip: str
    port: int
    cluster: str
    weight: float
    metadata: dict[str, str]
    enabled: bool
    period: float
    scope: anyio.CancelScope | None = None
    params: dict[str, str] = field(default_factory=dict)

    def info_json(self) -> str:
        return json.dumps(
            {
                "port": self.port,
                "ip": self.ip,
                "weight": self.weight,
                "serviceName": self.grouped,
                "cluster": self.cluster,
                "metadata": self.metadata,
                "scheduled": False,
                "period": int(self.period * 1000),
                "stopped": False,
            },
            separators=(",", ":"),
        )


class Subscription:
    """``async for service_info in subscription``: the current snapshot first, then one per change.

    Slow consumers skip intermediate snapshots (they always get the latest). Iteration ends when the
    client closes.
    """

    def __init__(self, client: NamingClient, tracked: _Tracked) -> None:
        self._client = client
        self._tracked = tracked
        self._seen = 0

    def __aiter__(self) -> Subscription:
        return self

    @property
    def current(self) -> ServiceInfo | None:
        """The latest snapshot (None until the first one arrives)."""
        return self._tracked.info

    async def __anext__(self) -> ServiceInfo:
        t = self._tracked
        while True:
            if self._client.closed:
                raise StopAsyncIteration
            if t.info is not None and t.version != self._seen:
                self._seen = t.version
                return t.info
            await t.changed.wait()


class NamingClient:
    """``async with NamingClient(["127.0.0.1:8848"]) as naming: ...`` (from trio or asyncio)."""

    def __init__(
        self,
        servers: Sequence[str] | str,
        *,
        namespace: str = "public",
        cache_dir: str | None = None,
        push: PushMode = "auto",
        ignore_empty_push: bool = True,
        username: str | None = None,
        password: str | None = None,
        client_ip: str | None = None,
        udp_port: int = 0,
        connect_timeout: float = 3.0,
        read_timeout: float = 10.0,
        watch_timeout_ms: int = 30_000,
        max_poll_interval: float = 60.0,
        poll_interval: float | None = None,
        beat_interval: float = 5.0,
        missed_pushes_before_watch: int = 2,
        deregister_on_close: bool = True,
        max_services: int = 10_000,
        user_agent: str = USER_AGENT,
        transport: httpx.AsyncBaseTransport | None = None,
        seed: int | None = None,
    ) -> None:
        if isinstance(servers, str):
            servers = [s for s in servers.split(",") if s.strip()]
        if push not in ("auto", "udp", "watch", "poll"):
            raise ValueError(f"push must be auto, udp, watch or poll, not {push!r}")
        self.server_list = list(servers)
        if not self.server_list:
            raise ValueError("NamingClient needs at least one server address")
        self.namespace = namespace or "public"
        self.cache = DiskCache(cache_dir, self.namespace) if cache_dir else None
        self.push = push
        self.ignore_empty_push = ignore_empty_push
        self.username = username
        self.password = password
        self.client_ip = client_ip
        self.udp_port = udp_port
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.watch_timeout_ms = watch_timeout_ms
        self.max_poll_interval = max_poll_interval
        self.poll_interval = poll_interval
        self.beat_interval = beat_interval
        self.missed_pushes_before_watch = missed_pushes_before_watch
        self.deregister_on_close = deregister_on_close
        self.max_services = max_services
        self.user_agent = user_agent
        self.stats = ClientStats()
        self.closed = False
        self.mode: PushMode = push  # the mode in effect ("auto" becomes "watch" when UDP fails)
        self._transport = transport
        self._rng = random.Random(seed)
        self._services: dict[_Key, _Tracked] = {}
        self._beats: dict[tuple[str, str, int, str], _Beat] = {}
        self._missed_in_a_row = 0
        self._watch_supported = True
        self._mode_changed = anyio.Event()
        self._disk_dirty: dict[_Key, None] = {}
        self._disk_wake = anyio.Event()
        self._disk_idle = anyio.Event()
        self._disk_busy = False
        self._stack: AsyncExitStack | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._http: httpx.AsyncClient | None = None
        self._servers: ServerPool | None = None
        self._udp: anyio.abc.UDPSocket | None = None

    # ------------------------------------------------------------------------------------------
    # lifecycle
    # ------------------------------------------------------------------------------------------
    async def __aenter__(self) -> NamingClient:
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            timeout = httpx.Timeout(self.read_timeout, connect=self.connect_timeout)
            http = httpx.AsyncClient(
                timeout=timeout,
                headers={"User-Agent": self.user_agent, "Client-Version": self.user_agent,
                         "Request-Module": "Naming"},
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
                transport=self._transport,
                # plain HTTP servers need no TLS context (building one costs a few hundred ms)
                verify=shared_ssl_context() if any(_is_https(s) for s in self.server_list) else False,
                trust_env=False,
            )
            self._http = await stack.enter_async_context(http)
            self._servers = ServerPool(self.server_list, http, username=self.username, password=self.password,
                                       rng=self._rng)
            if self.push in ("udp", "auto"):
                try:
                    udp = await anyio.create_udp_socket(
                        family=socket.AF_INET, local_host="0.0.0.0", local_port=self.udp_port
                    )
                    self._udp = await stack.enter_async_context(udp)
                    if self.client_ip is None:
                        self.client_ip = await anyio.to_thread.run_sync(local_ip_for, self._servers.current)
                except OSError as exc:
                    if self.push == "udp":
                        raise
                    log.warning("naming: no UDP push receiver (%s); using the HTTP watch", exc)
                    self.mode = "watch"
            self._tg = await stack.enter_async_context(anyio.create_task_group())
            if self._udp is not None:
                self._tg.start_soon(self._udp_loop, self._udp)
            if self.cache is not None:
                self._tg.start_soon(self._disk_writer)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Deregister this client's instances (``deregister_on_close``), stop every task, close sockets."""
        if self._stack is None:
            return
        try:
            if self.deregister_on_close and self._beats:
                with anyio.move_on_after(3, shield=True):
                    for beat in list(self._beats.values()):
                        with contextlib.suppress(Exception):
                            await self._deregister_beat(beat)
        finally:
            self.closed = True
            for t in self._services.values():
                t.notify()
            if self._tg is not None:
                self._tg.cancel_scope.cancel()
            stack, self._stack = self._stack, None
            # Not passing the caller's exception in: the task group would wrap it in an ExceptionGroup.
            await stack.aclose()

    @property
    def current_server(self) -> str:
        """The server URL in use."""
        return self._pool.current

    @property
    def udp_address(self) -> tuple[str, int] | None:
        """``(clientIP, udpPort)`` this client announces for push, or None."""
        if self._udp is None or self.client_ip is None:
            return None
        return self.client_ip, int(self._udp.extra(anyio.abc.SocketAttribute.local_port))

    @property
    def _pool(self) -> ServerPool:
        if self._servers is None:
            raise RuntimeError("use NamingClient as 'async with NamingClient(...) as naming:'")
        return self._servers

    @property
    def _group(self) -> anyio.abc.TaskGroup:
        if self._tg is None or self.closed:
            raise RuntimeError("the NamingClient is not open")
        return self._tg

    # ------------------------------------------------------------------------------------------
    # registration and heartbeats
    # ------------------------------------------------------------------------------------------
    async def register_instance(
        self,
        service: str,
        ip: str,
        port: int,
        weight: float = 1.0,
        metadata: Mapping[str, str] | None = None,
        cluster: str = DEFAULT_CLUSTER,
        group: str = DEFAULT_GROUP,
        *,
        enabled: bool = True,
        healthy: bool = True,
        ephemeral: bool = True,
    ) -> None:
        """Register an instance and keep it alive with heartbeats (until deregistered or closed).

        Raises NamingError if the server refuses it, NamingUnavailable if no server answers (no heartbeat
        is started then).
        """
        grouped = grouped_name(service, group)
        meta = {str(k): str(v) for k, v in (metadata or {}).items()}
        period = self.beat_interval
        with contextlib.suppress(ValueError):
            if META_BEAT_INTERVAL in meta:
                period = int(meta[META_BEAT_INTERVAL]) / 1000
        beat = _Beat(grouped, ip, int(port), cluster or DEFAULT_CLUSTER, float(weight), meta, enabled, period)
        beat.params = {
            "namespaceId": self.namespace,
            "serviceName": grouped,
            "groupName": grouped.partition("@@")[0],
            "clusterName": beat.cluster,
            "ip": ip,
            "port": str(int(port)),
            "weight": repr(float(weight)),
            "enable": _bool(enabled),
            "healthy": _bool(healthy),
            "ephemeral": _bool(ephemeral),
            "metadata": json.dumps(meta, separators=(",", ":"), ensure_ascii=False),
        }
        await self._write("POST", INSTANCE_PATH, beat.params)
        if not ephemeral:
            return
        key = (grouped, ip, int(port), beat.cluster)
        old = self._beats.pop(key, None)
        if old is not None and old.scope is not None:
            old.scope.cancel()
        self._beats[key] = beat
        await self._group.start(self._beat_loop, beat)

    async def deregister_instance(
        self, service: str, ip: str, port: int, cluster: str = DEFAULT_CLUSTER, group: str = DEFAULT_GROUP
    ) -> None:
        """Stop the heartbeat and remove the instance."""
        grouped = grouped_name(service, group)
        key = (grouped, ip, int(port), cluster or DEFAULT_CLUSTER)
        beat = self._beats.pop(key, None)
        if beat is not None and beat.scope is not None:
            beat.scope.cancel()
        await self._write("DELETE", INSTANCE_PATH, {
            "namespaceId": self.namespace,
            "serviceName": grouped,
            "groupName": grouped.partition("@@")[0],
            "clusterName": cluster or DEFAULT_CLUSTER,
            "ip": ip,
            "port": str(int(port)),
            "ephemeral": "true",
        })

    async def _deregister_beat(self, beat: _Beat) -> None:
        group, _, service = beat.grouped.partition("@@")
        await self.deregister_instance(service, beat.ip, beat.port, beat.cluster, group)

    async def _write(self, method: str, path: str, params: Mapping[str, str]) -> None:
        response = await self._pool.request(method, path, params)
        if response.status_code != 200 or response.text != "ok":
            raise NamingError(response.status_code, response.text[:500])

    async def _beat_loop(self, beat: _Beat, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        with anyio.CancelScope() as scope:
            beat.scope = scope
            task_status.started()
            delay = beat.period
            light = False
            while True:
                await anyio.sleep(delay)
                delay = beat.period
                try:
                    params = {
                        "namespaceId": self.namespace,
                        "serviceName": beat.grouped,
                        "clusterName": beat.cluster,
                        "ip": beat.ip,
                        "port": str(beat.port),
                    }
                    data = None if light else {"beat": beat.info_json()}
                    response = await self._pool.request("PUT", BEAT_PATH, params, data=data)
                    if response.status_code != 200:
                        raise NamingError(response.status_code, response.text[:200])
                    body = response.json()
                    self.stats.beats += 1
                    light = bool(body.get("lightBeatEnabled", False))
                    interval = body.get("clientBeatInterval")
                    if isinstance(interval, int | float) and not isinstance(interval, bool) and interval > 0:
                        delay = interval / 1000
                    if body.get("code") == CODE_RESOURCE_NOT_FOUND:
                        self.stats.reregistrations += 1
                        log.info("naming: %s %s:%d is unknown to the server; registering it again",
                                 beat.grouped, beat.ip, beat.port)
                        with contextlib.suppress(NamingError, httpx.HTTPError):
                            await self._write("POST", INSTANCE_PATH, {**beat.params, "ephemeral": "true"})
                except (NamingError, httpx.HTTPError, ValueError) as exc:
                    log.warning("naming: beat of %s %s:%d failed: %s", beat.grouped, beat.ip, beat.port, exc)

    # ------------------------------------------------------------------------------------------
    # lookups
    # ------------------------------------------------------------------------------------------
    def _tracked(self, service: str, group: str, clusters: Sequence[str] | str | None) -> _Tracked:
        grouped = grouped_name(service, group)
        if isinstance(clusters, str):
            clusters = [c for c in clusters.split(",") if c.strip()]
        clusters_text = ",".join(c.strip() for c in clusters or ())
        key = (grouped, clusters_text)
        t = self._services.get(key)
        if t is None:
            if len(self._services) >= self.max_services:
                raise NamingError(429, f"this client already follows {self.max_services} services")
            t = self._services[key] = _Tracked(grouped, clusters_text)
        return t

    async def get_service_info(
        self, service: str, *, group: str = DEFAULT_GROUP, clusters: Sequence[str] | str | None = None
    ) -> ServiceInfo:
        """The cached snapshot of a service (fetched, or read from the disk cache, on first use)."""
        t = self._tracked(service, group, clusters)
        if t.info is None:
            async with t.lock:
                if t.info is None:
                    await self._first_fetch(t)
        assert t.info is not None
        return t.info

    async def get_all_instances(
        self, service: str, clusters: Sequence[str] | str | None = None, *, group: str = DEFAULT_GROUP
    ) -> list[Instance]:
        """Every listed instance, healthy or not."""
        return list((await self.get_service_info(service, group=group, clusters=clusters)).hosts)

    async def select_instances(
        self,
        service: str,
        healthy: bool = True,
        clusters: Sequence[str] | str | None = None,
        *,
        group: str = DEFAULT_GROUP,
    ) -> list[Instance]:
        """Enabled instances with a positive weight whose health is ``healthy``."""
        info = await self.get_service_info(service, group=group, clusters=clusters)
        return [h for h in info.hosts if h.healthy == healthy and h.enabled and h.weight > 0]

    async def select_one_healthy_instance(
        self, service: str, clusters: Sequence[str] | str | None = None, *, group: str = DEFAULT_GROUP
    ) -> Instance:
        """A healthy instance picked at random by weight; NoInstanceError when there is none."""
        hosts = await self.select_instances(service, True, clusters, group=group)
        if not hosts:
            raise NoInstanceError(f"no healthy instance of {grouped_name(service, group)}")
        return choose_by_weight(hosts, self._rng)

    @asynccontextmanager
    async def subscribe(
        self, service: str, *, group: str = DEFAULT_GROUP, clusters: Sequence[str] | str | None = None
    ) -> AsyncIterator[Subscription]:
        """``async with naming.subscribe("svc") as changes: async for info in changes: ...``

        Does not fail when no server answers and nothing is cached: the first snapshot comes when one does.
        """
        t = self._tracked(service, group, clusters)
        if t.info is None:
            with contextlib.suppress(NamingUnavailable):
                await self.get_service_info(service, group=group, clusters=clusters)
        self._ensure_updater(t)
        yield Subscription(self, t)

    async def _first_fetch(self, t: _Tracked) -> None:
        try:
            raw = await self._list(t)
        except NamingUnavailable:
            raw_disk = self._read_disk(t)
            if raw_disk is None or not self._accept(t, raw_disk, "disk"):
                raise
            log.warning("naming: no server answered; serving %s from the disk cache", t.grouped)
        else:
            self._accept(t, raw, "poll")
        self._ensure_updater(t)

    def _read_disk(self, t: _Tracked) -> str | None:
        if self.cache is None:
            return None
        raw = self.cache.read(t.grouped, t.clusters)
        if raw is not None:
            self.stats.disk_reads += 1
        return raw

    async def _list(self, t: _Tracked) -> str:
        params = {
            "namespaceId": self.namespace,
            "serviceName": t.grouped,
            "groupName": t.grouped.partition("@@")[0],
            "clusters": t.clusters,
            "healthyOnly": "false",
        }
        address = self.udp_address
        if address is not None and self._mode_for(t) == "udp":
            params["clientIP"], params["udpPort"] = address[0], str(address[1])
        response = await self._pool.request("GET", LIST_PATH, params)
        self.stats.polls += 1
        if response.status_code != 200:
            raise NamingError(response.status_code, response.text[:500])
        t.push_accepted = "udpPort" in params and _cache_millis(response.text) > DEFAULT_CACHE_MILLIS
        if "udpPort" in params and not t.push_accepted and self.mode == "auto":
            t.force_watch = True  # the server did not take the subscription: watch this one
        return response.text

    async def _watch(self, t: _Tracked) -> None:
        params = {
            "namespaceId": self.namespace,
            "serviceName": t.grouped,
            "groupName": t.grouped.partition("@@")[0],
            "clusters": t.clusters,
            "healthyOnly": "false",
            "checksum": t.seen_checksum or "",
            "timeoutMs": str(self.watch_timeout_ms),
        }
        timeout = httpx.Timeout(self.read_timeout + self.watch_timeout_ms / 1000, connect=self.connect_timeout)
        response = await self._pool.request("GET", WATCH_PATH, params, timeout=timeout)
        self.stats.watches += 1
        if response.status_code == 304:
            return
        if response.status_code in (404, 501):
            log.warning("naming: server %s has no instance/watch; polling instead", self._pool.current)
            self._watch_supported = False
            return
        if response.status_code != 200:
            raise NamingError(response.status_code, response.text[:500])
        before = t.seen_checksum
        self._accept(t, response.text, "watch")
        if t.seen_checksum == before and before:  # answered at once without a change: do not spin
            await anyio.sleep(1.0)

    def _accept(self, t: _Tracked, raw: str, source: str) -> bool:
        """Take a snapshot into the cache; True when the cached hosts changed."""
        try:
            info = ServiceInfo.from_json(raw, from_disk=source == "disk")
        except ValueError as exc:
            log.warning("naming: ignoring a bad %s snapshot of %s: %s", source, t.grouped, exc)
            return False
        if source != "disk":
            t.seen_checksum = info.checksum
            t.cache_millis = info.cache_millis
        old = t.info
        if old is not None and old.hosts == info.hosts and old.from_disk == info.from_disk:
            t.info, t.raw = info, raw
            if source != "disk" and old.checksum != info.checksum:
                self._schedule_disk_write(t)
            return False
        if self.ignore_empty_push and not info.hosts and old is not None and old.hosts:
            self.stats.ignored_empty += 1
            log.warning("naming: ignoring an empty instance list of %s (%s); keeping %d cached instances",
                        t.grouped, source, len(old.hosts))
            return False
        hosts_changed = old is None or old.hosts != info.hosts
        t.info, t.raw = info, raw
        if source != "disk":
            self._schedule_disk_write(t)
        if hosts_changed:
            self.stats.changes += 1
        t.notify()
        return hosts_changed

    # ------------------------------------------------------------------------------------------
    # background updates
    # ------------------------------------------------------------------------------------------
    def _mode_for(self, t: _Tracked) -> str:
        mode = self.mode
        if mode == "auto":
            mode = "watch" if t.force_watch else "udp"
        if mode == "watch" and not self._watch_supported:
            mode = "udp" if self._udp is not None else "poll"
        if mode == "udp" and self._udp is None:
            mode = "poll"
        return mode

    def _ensure_updater(self, t: _Tracked) -> None:
        if not t.updating and not self.closed and self._tg is not None:
            t.updating = True
            self._tg.start_soon(self._updater, t)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake up early when the update mode changes."""
        with anyio.move_on_after(seconds):
            await self._mode_changed.wait()

    async def _updater(self, t: _Tracked) -> None:
        while True:
            mode = self._mode_for(t)
            try:
                if mode == "watch" and t.info is not None:
                    await self._watch(t)
                else:
                    if t.info is not None:
                        interval = max(t.cache_millis, 500) / 1000
                        if self.poll_interval is not None:
                            interval = min(interval, self.poll_interval)
                        await self._pause(interval)
                        mode = self._mode_for(t)
                    if mode == "watch" and t.info is not None:
                        continue
                    had, push_expected = t.info, t.push_accepted
                    raw = await self._list(t)
                    changed = self._accept(t, raw, "poll")
                    if changed and had is not None and push_expected and self.mode == "auto":
                        self._missed_push()
                t.fail_count = 0
            except Exception as exc:  # never let one service's trouble stop the client
                t.fail_count = min(t.fail_count + 1, 6)
                delay = min(float(1 << t.fail_count), self.max_poll_interval)
                level = logging.DEBUG if isinstance(exc, NamingUnavailable) else logging.WARNING
                log.log(level, "naming: update of %s failed (%s); retrying in %.0f s", t.grouped, exc, delay)
                await self._pause(delay)

    def _missed_push(self) -> None:
        self.stats.missed_pushes += 1
        self._missed_in_a_row += 1
        if self._missed_in_a_row >= self.missed_pushes_before_watch and self._watch_supported:
            log.warning("naming: UDP pushes do not arrive (%d changes found by polling); using the HTTP watch",
                        self._missed_in_a_row)
            self.mode = "watch"
            event, self._mode_changed = self._mode_changed, anyio.Event()
            event.set()

    # ------------------------------------------------------------------------------------------
    # UDP push
    # ------------------------------------------------------------------------------------------
    async def _udp_loop(self, udp: anyio.abc.UDPSocket) -> None:
        while True:
            try:
                data, (host, port) = await udp.receive()
            except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream):
                return
            except OSError:
                await anyio.sleep(0.01)
                continue
            ack = self._on_datagram(data)
            if ack is not None:
                try:
                    await udp.sendto(ack, host, port)
                    self.stats.pushes_acked += 1
                except OSError as exc:
                    log.debug("naming: push ack to %s:%d failed: %s", host, port, exc)

    def _on_datagram(self, data: bytes) -> bytes | None:
        try:
            if data[:2] == b"\x1f\x8b":
                data = _gunzip(data)
            packet = json.loads(data)
        except (ValueError, OSError, EOFError, zlib.error, RecursionError):
            return None
        if not isinstance(packet, dict):
            return None
        ref = packet.get("lastRefTime", 0)
        kind = packet.get("type")
        if kind in ("dom", "service"):
            payload = packet.get("data")
            if isinstance(payload, str):
                self._on_push(payload)
            return _ack("push-ack", ref, "")
        if kind == "dump":
            dump = json.dumps({f"{g}@@{c}" if c else g: t.raw for (g, c), t in self._services.items() if t.raw})
            return _ack("dump-ack", ref, dump if len(dump) < 60_000 else "")
        return _ack("unknown-ack", ref, "")

    def _on_push(self, payload: str) -> None:
        self.stats.pushes_received += 1
        self._missed_in_a_row = 0
        try:
            info = ServiceInfo.from_json(payload)
        except ValueError:
            return
        t = self._services.get((info.grouped_name, info.clusters))
        if t is not None:
            self._accept(t, payload, "push")

    # ------------------------------------------------------------------------------------------
    # disk cache
    # ------------------------------------------------------------------------------------------
    def _schedule_disk_write(self, t: _Tracked) -> None:
        if self.cache is not None:
            self._disk_dirty[(t.grouped, t.clusters)] = None
            self._disk_wake.set()

    async def _disk_writer(self) -> None:
        cache = self.cache
        assert cache is not None
        while True:
            await self._disk_wake.wait()
            self._disk_wake = anyio.Event()
            dirty, self._disk_dirty = self._disk_dirty, {}
            self._disk_busy = True
            for key in dirty:
                t = self._services.get(key)
                if t is None or t.raw is None:
                    continue
                try:
                    await anyio.to_thread.run_sync(cache.write, t.grouped, t.clusters, t.raw)
                    self.stats.disk_writes += 1
                except OSError as exc:
                    log.warning("naming: cannot write the disk cache of %s: %s", t.grouped, exc)
            self._disk_busy = False
            idle, self._disk_idle = self._disk_idle, anyio.Event()
            idle.set()

    async def flush_disk_cache(self) -> None:
        """Wait until every snapshot accepted so far is on disk (for tests and orderly shutdowns)."""
        while self.cache is not None and (self._disk_dirty or self._disk_busy) and not self.closed:
            await self._disk_idle.wait()


def _is_https(server: str) -> bool:
    return normalize_server(server).lower().startswith("https://")


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _cache_millis(raw: str) -> int:
    try:
        value = json.loads(raw).get("cacheMillis", DEFAULT_CACHE_MILLIS)
        return int(value)
    except (ValueError, AttributeError, TypeError):
        return DEFAULT_CACHE_MILLIS


def _ack(kind: str, ref: object, data: str) -> bytes:
    return json.dumps({"type": kind, "lastRefTime": str(ref), "data": data}).encode()


def _gunzip(data: bytes) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = inflater.decompress(data, MAX_PUSH_BYTES)
    if inflater.unconsumed_tail:
        raise ValueError("push packet too large")
    return out


def local_ip_for(server: str) -> str:
    """The local IPv4 address the kernel would use to reach ``server`` (``host:port`` or a URL): the address
    that server can push to. Blocking (it may resolve a name); ``127.0.0.1`` when it cannot tell."""
    url = httpx.URL(normalize_server(server))
    host = url.host or "127.0.0.1"
    try:
        infos = socket.getaddrinfo(host, url.port or 80, socket.AF_INET, socket.SOCK_DGRAM)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(infos[0][4])
            return str(probe.getsockname()[0])
    except (OSError, IndexError):
        return "127.0.0.1"


__all__ = ["USER_AGENT", "ClientStats", "NamingClient", "PushMode", "Subscription", "local_ip_for"]
