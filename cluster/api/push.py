"""UDP push to subscribers, compatible with Nacos 1.x clients (reference/nacos-naming.md §6.1).

A ``GET /nacos/v1/ns/instance/list`` with ``udpPort > 0`` from a push-capable agent registers (or
refreshes) a subscriber of that service on this node, at the call's own source address (``clientIP``
counts only from the operator's trusted networks: :mod:`cluster.api.pushtargets`). Whenever the service's view changes on
this node (a local write or a replicated one), every live subscriber of it gets::

    {"type": "dom", "data": "<the instance/list JSON for its clusters, as a string>", "lastRefTime": <seq>}

as UTF-8 JSON, gzip-compressed when 1024 bytes or more, from one unbound UDP socket. The client answers
``{"type": "push-ack", "lastRefTime": "<seq>", "data": ""}`` (the number as a string or an integer) from its
receiving socket. Differences from Nacos 1.4, all deliberate:

* the push leaves within ``push_delay_ms`` (1 ms) of the change, not 1 s later; changes to one service that
  arrive while its push is pending are coalesced into it (the data is built when it is sent);
* an unacknowledged packet is re-sent ``max_tries - 1`` times, ``retry_interval_ms`` apart (2 tries 500 ms
  apart, against Nacos's 2 tries 10 s apart); a newer push to the same subscriber and service supersedes
  an older pending one, so a stale list is never re-sent over a newer one. A subscriber that has not
  acknowledged its last ``max_tries`` datagrams is dropped (it subscribes again with its next list call);
* a subscriber is told apart by its service, clusters and address, not by its agent (a new version string
  is not a new subscriber);
* ``lastRefTime`` is the node's clock in milliseconds, as in Nacos, moved on by one when needed so that each
  packet's is greater than the last (an ack is matched on it alone, not on its source address, so acks
  through NAT count). It stays far below 2^53, so JSON readers that keep numbers as doubles read it exactly;
* a subscriber is forgotten once it has not listed for ``subscriber_ttl_ms`` (20 s, twice the
  ``cacheMillis`` of 10 s we announce to it, so one late poll does not drop it);
* subscribers (in all, and per target address), the bytes sent to one address per second, pending packets
  (in count and in bytes) and the packet size are bounded, as are the strings a subscriber keeps; a
  datagram that is not a valid ack is counted and dropped, never raised.

The API (:mod:`cluster.api.routes`) lists :meth:`PushService.on_list` among its ``instance/list`` hooks and
the push routes; the node's wiring adds :meth:`PushService.on_change` to the runtime's change listeners and
``await nursery.start(push.run)`` opens the socket. The pushed data is built by :mod:`cluster.api.render`,
as the list route builds it.
"""

from __future__ import annotations

import gzip
import heapq
import json
import logging
import math
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import trio

from cluster.api.clientinfo import client_info
from cluster.api.params import Params
from cluster.api.pushtargets import Network, TargetPolicy
from cluster.api.render import DEFAULT_CACHE_MILLIS, ListQuery, ListRenderer
from cluster.http import Request, Response
from cluster.metrics import counter, gauge
from cluster.node.pump import NodeRuntime
from distro.messages import SubscriberRow
from distro.model import ServiceKey, service_key
from distro.views import ServiceView

log = logging.getLogger("distro.push")

GZIP_MIN_BYTES = 1024
MAX_DATAGRAM = 65507  # the largest UDP payload over IPv4; the Java client reads 64 KiB

# Agents that can receive pushes, with the lowest version that can (Nacos's canEnablePush), plus our SDK.
PUSH_AGENTS: dict[str, tuple[int, ...]] = {
    "Nacos-Java-Client": (0, 1, 0),
    "Nacos-DNS": (0, 4, 3),
    "Nacos-C-Client": (1, 0, 12),
    "Nacos-Go-Client": (0, 1, 0),
    "Nacos-CSharp-Client": (0, 9, 0),
    "Distro-Python-Client": (0, 0, 0),
}
MAX_KEPT_CHARS = 128
"""The longest agent version, ``app`` or ``tid`` a subscriber keeps (longer ones are cut)."""
MAX_CLUSTERS_CHARS = 1024
"""A list call whose cluster filter is longer than this is answered but makes no subscriber."""
SUBSCRIBER_BYTES = 512
"""What one subscriber costs beyond its strings (its object, dict slots and the per-target count)."""
_AGENT_RE = re.compile(r"\s*([A-Za-z][A-Za-z0-9-]*):v(\d+(?:\.\d+)*)")


def push_agent(agent: str) -> str | None:
    """``Name:v1.2.3`` of a client that listens for UDP pushes (what a subscriber keeps), or None."""
    match = _AGENT_RE.match(agent)
    if match is None:
        return None
    minimum = PUSH_AGENTS.get(match.group(1))
    if minimum is None or len(match.group(2)) > MAX_KEPT_CHARS:
        return None
    version = tuple(int(part) for part in match.group(2).split(".")[:4])
    return match.group(0).strip() if version >= minimum else None


def push_capable(agent: str) -> bool:
    """True when ``agent`` (``Name:v1.2.3...``) is a client that listens for UDP pushes."""
    return push_agent(agent) is not None


@dataclass(frozen=True, slots=True)
class PushConfig:
    """Knobs of the push service (milliseconds and counts)."""

    enabled: bool = True
    push_cache_millis: int = 10_000  # the cacheMillis announced to subscribers (and put in pushed data)
    subscriber_ttl_ms: int = 20_000  # forget a subscriber that has not listed for this long
    sweep_interval_ms: int = 5_000
    push_delay_ms: int = 1  # wait this long after a change before pushing (coalesces bursts)
    retry_interval_ms: int = 500
    max_tries: int = 2  # sends per packet, the first one included (Nacos: 1 retry)
    max_subscribers: int = 10_000  # on this node, every service together
    max_pending: int = 20_000  # packets waiting for an ack
    max_pending_bytes: int = 32 * 1024 * 1024  # ... and their bytes
    bind_host: str = "0.0.0.0"
    # Reflection bounds (cluster/api/pushtargets.py): where pushes may go and how much one address gets.
    trusted_networks: tuple[Network, ...] = ()  # list calls from here may name another target in clientIP
    max_subscribers_per_target: int = 512  # subscriptions pointing at one IP address, all services together
    target_bytes_per_s: int = 1_048_576  # bytes one IP address may be sent per second, after ...
    target_burst_bytes: int = 1_048_576  # ... a burst of this many

    def __post_init__(self) -> None:
        if self.max_tries < 1 or self.max_subscribers < 0 or self.max_pending < 1 or self.max_pending_bytes < 1:
            raise ValueError("max_tries and max_pending(_bytes) must be positive, max_subscribers non-negative")
        if self.max_subscribers_per_target < 0 or self.target_bytes_per_s < 0 or self.target_burst_bytes < 0:
            raise ValueError("per-target bounds must not be negative")
        if self.retry_interval_ms <= 0 or self.sweep_interval_ms <= 0 or self.subscriber_ttl_ms <= 0:
            raise ValueError("intervals must be positive")


@dataclass(slots=True)
class Subscriber:
    """One push target of one service (Nacos's ``PushClient``)."""

    key: ServiceKey
    clusters: str
    healthy_only: bool
    ip: str
    port: int
    agent: str
    app: str
    tenant: str
    last_list: float  # trio time of its last list call
    unacked: int = 0  # datagrams sent to it since its last ack
    unacked_since: float = 0.0  # trio time of the first of them

    @property
    def ident(self) -> tuple[str, str, int]:
        """What tells two subscribers of a service apart: clusters and address (not the agent, unlike Nacos,
        so that a new version string is not a new subscriber)."""
        return (self.clusters, self.ip, self.port)

    @property
    def size_bytes(self) -> int:
        """What this subscriber holds, counted against nothing but reported on /metrics."""
        return SUBSCRIBER_BYTES + len(self.clusters) + len(self.ip) + len(self.agent) + len(self.app) + len(
            self.tenant
        )


@dataclass
class PushStats:
    """Counters for /metrics and /operator/push/state."""

    sent: int = 0  # first sends of a packet
    acked: int = 0
    retransmitted: int = 0
    failed: int = 0  # no ack after max_tries, unsendable, or evicted over max_pending
    superseded: int = 0  # pending packets replaced by a newer push to the same subscriber and service
    too_large: int = 0
    send_errors: int = 0
    refused_subscribers: int = 0  # over max_subscribers
    dropped_unacknowledged: int = 0  # subscribers dropped after max_tries datagrams without an ack
    expired_subscribers: int = 0
    garbage_packets: int = 0
    unknown_acks: int = 0  # late, duplicate or foreign acks
    ack_cost_total_ms: float = 0.0
    ack_cost_max_ms: float = 0.0


@dataclass(slots=True)
class _Pending:
    seq: int
    sub: Subscriber
    packet: bytes
    tries: int
    first_sent: float
    due: float


class PushService:
    """Push to this node's UDP subscribers. One per node."""

    def __init__(self, runtime: NodeRuntime, renderer: ListRenderer, config: PushConfig | None = None) -> None:
        self.runtime = runtime
        self.renderer = renderer
        self.config = config or PushConfig()
        self.stats = PushStats()
        self._subs: dict[ServiceKey, dict[tuple[str, str, int], Subscriber]] = {}
        self._count = 0
        self._subscriber_bytes = 0
        cfg = self.config
        self.targets = TargetPolicy(
            trusted_networks=cfg.trusted_networks, max_subscribers_per_target=cfg.max_subscribers_per_target,
            target_bytes_per_s=cfg.target_bytes_per_s, target_burst_bytes=cfg.target_burst_bytes,
            clock=trio.current_time,
        )
        self._dirty: dict[ServiceKey, None] = {}  # an ordered set of services to push
        self._wake = trio.Event()
        self._pending: dict[int, _Pending] = {}  # by seq, oldest first
        self._pending_bytes = 0
        self._superseded: dict[int, Subscriber] = {}  # seq of a replaced packet -> its subscriber (bounded)
        self._latest: dict[tuple[ServiceKey, tuple[str, str, int]], int] = {}  # -> seq pending
        self._timers: list[tuple[float, int]] = []  # (due, seq) heap
        self._seq = 0  # the last lastRefTime sent (epoch ms, strictly growing)
        self._sock4: trio.socket.SocketType | None = None
        self._sock6: trio.socket.SocketType | None = None
        self.port: int = 0  # the IPv4 socket's port, once running
        # The cacheMillis announced to a client that does not subscribe (operator/switches defaultCacheMillis).
        self.default_cache_millis = DEFAULT_CACHE_MILLIS

    # ------------------------------------------------------------------------------------------
    # the socket
    # ------------------------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Open the UDP socket(s) and push until cancelled; ``task_status.started(udp_port)``."""
        sock4 = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        await sock4.bind((self.config.bind_host, 0))
        self._sock4 = sock4
        self.port = int(sock4.getsockname()[1])
        try:
            sock6 = trio.socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            sock6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            await sock6.bind(("::", 0))
            self._sock6 = sock6
        except OSError:  # no IPv6 here: IPv6 subscribers are refused
            self._sock6 = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._receive_loop, sock4)
                if self._sock6 is not None:
                    nursery.start_soon(self._receive_loop, self._sock6)
                nursery.start_soon(self._send_loop)
                nursery.start_soon(self._sweep_loop)
                log.info("push: UDP push socket on port %d", self.port)
                task_status.started(self.port)
        finally:
            sock4.close()
            if self._sock6 is not None:
                self._sock6.close()
            self._sock4 = self._sock6 = None

    # ------------------------------------------------------------------------------------------
    # subscribers
    # ------------------------------------------------------------------------------------------
    def on_list(self, request: Request, params: Params, key: ServiceKey) -> int:
        """The ``instance/list`` hook: register or refresh a subscriber; the cacheMillis to announce."""
        cfg = self.config
        raw_port = params.get("udpPort")
        if not cfg.enabled or not raw_port or raw_port == "0":
            return self.default_cache_millis
        try:
            udp_port = int(raw_port)
        except ValueError:
            return self.default_cache_millis
        if not 0 < udp_port < 65536:
            return self.default_cache_millis
        agent = push_agent(request.headers.get("user-agent", "")) or push_agent(
            request.headers.get("client-version", "")
        )
        if agent is None:
            return self.default_cache_millis
        ip = self.targets.target_ip(request.remote[0], params.get("clientIP"))
        if ip is None or (":" in ip and self._sock6 is None):
            return self.default_cache_millis
        clusters = ",".join(params.clusters())
        if len(clusters) > MAX_CLUSTERS_CHARS:
            return self.default_cache_millis
        healthy_only = params.lenient_boolean("healthyOnly", False)
        now = trio.current_time()
        by_ident = self._subs.get(key)
        ident = (clusters, ip, udp_port)
        if by_ident is not None:
            existing = by_ident.get(ident)
            if existing is not None:
                existing.last_list = now
                existing.healthy_only = healthy_only
                self._subscriber_bytes += len(agent) - len(existing.agent)
                existing.agent = agent
                return cfg.push_cache_millis
        if self._count >= cfg.max_subscribers:
            self.stats.refused_subscribers += 1
            return self.default_cache_millis
        if not self.targets.may_add(ip):
            return self.default_cache_millis
        sub = Subscriber(key, clusters, healthy_only, ip, udp_port, agent,
                         (params.get("app") or "")[:MAX_KEPT_CHARS], (params.get("tid") or "")[:MAX_KEPT_CHARS], now)
        self._subs.setdefault(key, {})[ident] = sub
        self._count += 1
        self._subscriber_bytes += sub.size_bytes
        self.targets.added(ip)
        return cfg.push_cache_millis

    def subscribers(self, key: ServiceKey | None = None) -> list[Subscriber]:
        """Live subscribers (of one service, or all)."""
        if key is not None:
            return list(self._subs.get(key, {}).values())
        return [sub for subs in self._subs.values() for sub in subs.values()]

    def subscriber_rows(self, key: ServiceKey) -> Iterator[SubscriberRow]:
        """The live subscribers of ``key`` as ``service/subscribers`` rows (protocol ``udp``)."""
        now = trio.current_time()
        for sub in self._subs.get(key, {}).values():
            if not self._expired(sub, now):
                yield (f"{sub.ip}:{sub.port}", sub.agent, sub.app, sub.ip, sub.port, sub.clusters, "udp")

    @property
    def subscriber_count(self) -> int:
        """Subscribers held (expired ones are dropped at the next sweep or push)."""
        return self._count

    @property
    def pending_count(self) -> int:
        """Packets waiting for an ack."""
        return len(self._pending)

    @property
    def pending_bytes(self) -> int:
        """Bytes of the packets waiting for an ack."""
        return self._pending_bytes

    def _remove(self, sub: Subscriber) -> None:
        by_ident = self._subs.get(sub.key)
        if by_ident is not None and by_ident.get(sub.ident) is sub:
            del by_ident[sub.ident]
            self._count -= 1
            self._subscriber_bytes -= sub.size_bytes
            self.targets.removed(sub.ip)
            if not by_ident:
                del self._subs[sub.key]
        seq = self._latest.get((sub.key, sub.ident))
        if seq is not None:
            pending = self._pending.get(seq)
            if pending is not None:
                self._forget(pending)

    def _expired(self, sub: Subscriber, now: float) -> bool:
        return now - sub.last_list > self.config.subscriber_ttl_ms / 1000

    def sweep(self) -> int:
        """Forget subscribers that stopped listing; how many were dropped."""
        now = trio.current_time()
        stale = [sub for subs in self._subs.values() for sub in subs.values() if self._expired(sub, now)]
        for sub in stale:
            self._remove(sub)
        self.stats.expired_subscribers += len(stale)
        return len(stale)

    async def _sweep_loop(self) -> None:
        while True:
            await trio.sleep(self.config.sweep_interval_ms / 1000)
            self.sweep()

    # ------------------------------------------------------------------------------------------
    # changes -> packets
    # ------------------------------------------------------------------------------------------
    def on_change(self, key: ServiceKey, view: ServiceView) -> None:
        """The runtime's change listener: queue a push of ``key`` if anyone subscribed to it."""
        if key in self._subs:
            self._dirty[key] = None
            self._wake.set()

    async def _send_loop(self) -> None:
        while True:
            self._wake = trio.Event()
            if not self._dirty:
                timeout = self._timers[0][0] - trio.current_time() if self._timers else math.inf
                if timeout > 0:
                    with trio.move_on_after(timeout):
                        await self._wake.wait()
            if self._dirty and self.config.push_delay_ms > 0:
                await trio.sleep(self.config.push_delay_ms / 1000)
            dirty, self._dirty = self._dirty, {}
            for key in dirty:
                try:
                    await self._push_service(key)
                except Exception:  # a bug here must not take the node down; the clients' polls cover it
                    log.exception("push: pushing %s failed", key)
            await self._retransmit_due()
            await trio.lowlevel.checkpoint()

    async def _push_service(self, key: ServiceKey) -> None:
        subs = self._subs.get(key)
        if not subs:
            return
        now = trio.current_time()
        data_by_form: dict[tuple[str, bool, str], str] = {}
        for sub in list(subs.values()):
            if self._expired(sub, now):
                self._remove(sub)
                self.stats.expired_subscribers += 1
                continue
            if self._silent(sub, now):  # its last pushes went unanswered: it is gone
                self._drop_unacknowledged(sub)
                continue
            form = (sub.clusters, sub.healthy_only, sub.agent)
            data = data_by_form.get(form)
            if data is None:
                try:
                    data = data_by_form[form] = self._list_json(sub)
                except Exception:  # one subscriber's bad form must never take the node down
                    log.exception("push: could not build the list of %s for %s:%d", key, sub.ip, sub.port)
                    self.stats.failed += 1
                    continue
            self._seq = seq = max(self.runtime.now_ms(), self._seq + 1)
            packet = encode_packet({"type": "dom", "data": data, "lastRefTime": seq})
            if len(packet) > MAX_DATAGRAM:
                self.stats.too_large += 1
                self.stats.failed += 1
                log.warning("push: %s is %d bytes gzipped, too large for UDP; %s:%d must poll",
                            key, len(packet), sub.ip, sub.port)
                continue
            previous = self._pending.get(self._latest.get((key, sub.ident), -1))
            if previous is not None:
                self._forget(previous)
                self._superseded[previous.seq] = sub  # its ack may still come: it says the client is there
                while len(self._superseded) > self.config.max_pending:
                    del self._superseded[next(iter(self._superseded))]
                self.stats.superseded += 1
            cfg = self.config
            while self._pending and (
                len(self._pending) >= cfg.max_pending or self._pending_bytes + len(packet) > cfg.max_pending_bytes
            ):
                self._forget(next(iter(self._pending.values())))
                self.stats.failed += 1
            pending = _Pending(seq, sub, packet, 1, now, now + self.config.retry_interval_ms / 1000)
            self._pending[seq] = pending
            self._pending_bytes += len(packet)
            self._latest[(key, sub.ident)] = seq
            if len(self._timers) > 4 * self.config.max_pending:  # superseded packets' timers: drop them
                self._timers = [(p.due, p.seq) for p in self._pending.values()]
                heapq.heapify(self._timers)
            heapq.heappush(self._timers, (pending.due, seq))
            self.stats.sent += 1
            await self._sendto(pending)

    def _list_json(self, sub: Subscriber) -> str:
        """The ``instance/list`` body this subscriber would get now (the list route's renderer builds it)."""
        clusters = tuple(part for part in sub.clusters.split(",") if part)
        query = ListQuery(sub.key, clusters, sub.healthy_only, client_info(sub.agent).wants_grouped_names)
        cache_millis = max(DEFAULT_CACHE_MILLIS, self.config.push_cache_millis)
        return self.renderer.render(query, cache_millis=cache_millis).decode("utf-8", "replace")

    def _forget(self, pending: _Pending) -> None:
        if self._pending.pop(pending.seq, None) is not None:
            self._pending_bytes -= len(pending.packet)
        ident = (pending.sub.key, pending.sub.ident)
        if self._latest.get(ident) == pending.seq:
            del self._latest[ident]

    def _silent(self, sub: Subscriber, now: float) -> bool:
        """Whether ``sub`` acknowledged none of its last ``max_tries`` datagrams, the first of them long
        enough ago (``max_tries`` retry intervals) that an ack should have come."""
        cfg = self.config
        return sub.unacked >= cfg.max_tries and now - sub.unacked_since >= cfg.max_tries * cfg.retry_interval_ms / 1000

    def _drop_unacknowledged(self, sub: Subscriber) -> None:
        self._remove(sub)
        self.stats.dropped_unacknowledged += 1

    async def _sendto(self, pending: _Pending) -> None:
        sub = pending.sub
        sock = self._sock6 if ":" in sub.ip else self._sock4
        if sock is None:
            self.stats.send_errors += 1
            return
        if not self.targets.may_send(sub.ip, len(pending.packet)):
            return  # over the target's bytes per second: the client's poll covers it
        if not sub.unacked:
            sub.unacked_since = trio.current_time()
        sub.unacked += 1
        try:
            await sock.sendto(pending.packet, (sub.ip, sub.port))
        except OSError as exc:  # unreachable network, buffer full...: the retry (or the poll) covers it
            self.stats.send_errors += 1
            log.debug("push to %s:%d failed: %s", sub.ip, sub.port, exc)

    async def _retransmit_due(self) -> None:
        now = trio.current_time()
        while self._timers and self._timers[0][0] <= now:
            due, seq = heapq.heappop(self._timers)
            pending = self._pending.get(seq)
            if pending is None or pending.due != due:
                continue
            if pending.tries >= self.config.max_tries or self._expired(pending.sub, now):
                self._forget(pending)
                self.stats.failed += 1
                if pending.sub.unacked >= self.config.max_tries:  # its last send had a whole interval too
                    self._drop_unacknowledged(pending.sub)
                continue
            pending.tries += 1
            pending.due = now + self.config.retry_interval_ms / 1000
            heapq.heappush(self._timers, (pending.due, pending.seq))
            self.stats.retransmitted += 1
            await self._sendto(pending)

    # ------------------------------------------------------------------------------------------
    # acks
    # ------------------------------------------------------------------------------------------
    async def _receive_loop(self, sock: trio.socket.SocketType) -> None:
        while True:
            try:
                data, _address = await sock.recvfrom(65536)
            except OSError:  # e.g. an ICMP error reported on the socket: keep listening
                await trio.sleep(0.001)
                continue
            self.on_datagram(data)

    def on_datagram(self, data: bytes) -> None:
        """Handle one datagram from a client: an ack, or garbage (counted, dropped)."""
        seq = parse_ack(data)
        if seq is None:
            self.stats.garbage_packets += 1
            return
        pending = self._pending.get(seq)
        if pending is None:
            self.stats.unknown_acks += 1
            superseded = self._superseded.pop(seq, None)
            if superseded is not None:  # late, but the client is there
                superseded.unacked = 0
            return
        self._forget(pending)
        pending.sub.unacked = 0
        cost_ms = (trio.current_time() - pending.first_sent) * 1000
        self.stats.acked += 1
        self.stats.ack_cost_total_ms += cost_ms
        self.stats.ack_cost_max_ms = max(self.stats.ack_cost_max_ms, cost_ms)

    # ------------------------------------------------------------------------------------------
    # reporting
    # ------------------------------------------------------------------------------------------
    def render_metrics(self) -> str:
        """Prometheus text for /metrics."""
        s = self.stats
        t = self.targets.stats
        return "".join([
            counter("distro_push_sent_total", "UDP pushes sent (first sends).", s.sent),
            counter("distro_push_acked_total", "UDP pushes acknowledged by the client.", s.acked),
            counter("distro_push_retransmitted_total", "UDP push packets sent again for want of an ack.",
                    s.retransmitted),
            counter("distro_push_failed_total",
                    "UDP pushes given up: never acknowledged, too large, or evicted over the pending bound.", s.failed),
            counter("distro_push_superseded_total",
                    "Unacknowledged pushes replaced by a newer push of the same service.", s.superseded),
            counter("distro_push_send_errors_total", "UDP sends the kernel refused.", s.send_errors),
            counter("distro_push_garbage_packets_total", "Datagrams received that were not a valid ack.",
                    s.garbage_packets),
            counter("distro_push_unknown_acks_total", "Acks for no pending push (late or duplicate).", s.unknown_acks),
            counter("distro_push_subscribers_refused_total", "Subscriptions refused over the bound.",
                    s.refused_subscribers),
            counter("distro_push_subscribers_expired_total", "Subscribers forgotten after they stopped listing.",
                    s.expired_subscribers),
            gauge("distro_push_subscribers", "UDP push subscribers on this node.", self._count),
            gauge("distro_push_pending", "UDP pushes waiting for an ack.", len(self._pending)),
            gauge("distro_push_pending_bytes", "Bytes of the UDP pushes waiting for an ack (bounded).",
                  self._pending_bytes),
            gauge("distro_push_subscriber_bytes", "Bytes the UDP push subscribers hold (bounded by their count).",
                  self._subscriber_bytes),
            gauge("distro_push_targets", "Addresses UDP pushes go to.", self.targets.targets),
            counter("distro_push_subscribers_dropped_unacknowledged_total",
                    "Subscribers dropped after max_tries datagrams without an ack.", s.dropped_unacknowledged),
            counter("distro_push_subscribers_refused_per_target_total",
                    "Subscriptions refused over the bound per target address.", t.refused_per_target),
            counter("distro_push_client_ip_ignored_total",
                    "List calls whose clientIP named another address from outside the trusted networks.",
                    t.ignored_client_ips),
            counter("distro_push_throttled_datagrams_total",
                    "UDP pushes not sent: over their target's bytes per second.", t.throttled_datagrams),
            counter("distro_push_throttled_bytes_total", "Bytes of the UDP pushes not sent over their target's bound.",
                    t.throttled_bytes),
            counter("distro_push_ack_seconds_sum", "Seconds from first send to ack, summed over acked pushes.",
                    s.ack_cost_total_ms / 1000),
        ])

    async def push_state(self, request: Request, params: Params) -> Response:
        """GET /operator/push/state: Nacos's push statistics (plus ours)."""
        await trio.lowlevel.checkpoint()
        s = self.stats
        ratio = s.acked / s.sent if s.sent else 0.0
        body: dict[str, object] = {
            "succeed": s.acked,
            "total": s.sent,
            "ratio": ratio,
            "failed": s.failed,
            "retransmitted": s.retransmitted,
            "avgPushCost": s.ack_cost_total_ms / s.acked if s.acked else 0,
            "maxPushCost": s.ack_cost_max_ms,
            "subscribers": self._count,
            "pending": len(self._pending),
            "garbagePackets": s.garbage_packets,
            "udpPort": self.port,
        }
        return Response.json(body)

    async def subscribers_route(self, request: Request, params: Params) -> Response:
        """GET /service/subscribers?serviceName=&groupName=&namespaceId=: this node's push subscribers."""
        await trio.lowlevel.checkpoint()
        key = service_key(params.get("namespaceId"), params.get("groupName"),
                          params.required("serviceName", "dom"))
        page_no = params.integer("pageNo", 1, low=1)
        page_size = params.integer("pageSize", 1000, low=1, high=10_000)
        rows = [
            {
                "addrStr": f"{sub.ip}:{sub.port}",
                "agent": sub.agent,
                "app": sub.app,
                "ip": sub.ip,
                "port": sub.port,
                "namespaceId": key.namespace,
                "serviceName": key.grouped_name,
                "cluster": sub.clusters,
            }
            for sub in self.subscribers(key)
        ]
        start = (page_no - 1) * page_size
        return Response.json({"subscribers": rows[start : start + page_size], "count": len(rows)})


def encode_packet(obj: dict[str, object]) -> bytes:
    """UTF-8 JSON, gzip-compressed when it is ``GZIP_MIN_BYTES`` or more (what Nacos clients expect)."""
    raw = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")
    if len(raw) >= GZIP_MIN_BYTES:
        return gzip.compress(raw, compresslevel=6, mtime=0)
    return raw


def parse_ack(data: bytes) -> int | None:
    """The sequence number of a ``push-ack`` datagram, or None for anything else."""
    if not data or len(data) > 4096:
        return None
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(obj, dict) or obj.get("type") != "push-ack":
        return None
    ref = obj.get("lastRefTime")
    if isinstance(ref, bool):
        return None
    if isinstance(ref, int):
        return ref
    if isinstance(ref, str):
        ref = ref.strip()
        if ref.isascii() and ref.isdigit() and len(ref) < 32:
            return int(ref)
    return None


__all__ = [
    "GZIP_MIN_BYTES",
    "MAX_CLUSTERS_CHARS",
    "MAX_KEPT_CHARS",
    "PUSH_AGENTS",
    "SUBSCRIBER_BYTES",
    "PushConfig",
    "PushService",
    "PushStats",
    "Subscriber",
    "encode_packet",
    "parse_ack",
    "push_agent",
    "push_capable",
]
