"""NodeServer: wires one node together: the core's pump, the Nacos HTTP API, the gRPC front door and the
peer transport.

Every part of a node is built here, in one place, from its :class:`~cluster.node.settings.NodeSettings`:
the runtime (:mod:`cluster.node.pump`), the list renderer that HTTP, push, watch and gRPC share, the API's
parts (readiness gate, auth when on, UDP push, HTTP watch), the API itself, the Nacos 2.x gRPC front door
(:mod:`cluster.grpc`, on the HTTP port + ``grpc_port_offset``; its change listener sits beside UDP push's
and the watch's, its token check is the API's), and the peer transport. The peer
transport is a parameter: production nodes use authenticated peer links (:func:`peer_links`); tests put
nodes of one trio process on an in-memory network (``NodeServer(settings, transport=network.transport)``
with a :class:`cluster.node.memlink.MemoryNetwork`).

A node keeps its cluster data on disk only when given an open data folder (``data_dir``, a
:class:`~cluster.node.datadir.DataDir`; ``distro-node`` always opens ``--data-dir``): the core then runs
with ``durable_writes``, what the folder held is loaded before the node starts (and so before it can be
ready), and a :class:`~cluster.node.datadir.DiskWriter` task carries the core's ``Persist`` effects to
it. Without one (nodes built in tests) the node keeps everything in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Protocol

import trio

from cluster.api.auth import authenticator_for
from cluster.api.push import PushConfig, PushService
from cluster.api.readiness import ReadinessGate
from cluster.api.render import ListRenderer
from cluster.api.routes import NamingApi
from cluster.api.watch import WatchConfig, WatchService
from cluster.console.assets import StaticAssets
from cluster.console.endpoints import ConsoleEndpoints
from cluster.console.front import ConsoleFront
from cluster.grpc import GrpcLimits, GrpcServer
from cluster.grpc.requests import InstanceLimits
from cluster.grpc.server import LISTEN_BACKLOG as GRPC_LISTEN_BACKLOG
from cluster.http import HttpLimits, HttpStats, serve_http
from cluster.http.server import LISTEN_BACKLOG as HTTP_LISTEN_BACKLOG
from cluster.metrics import counter, render_http_metrics, render_peer_link_metrics
from cluster.node.datadir import DataDir, DiskWriter
from cluster.node.listeners import open_listener_pair
from cluster.node.peerlink import LinkState, PeerLinkConfig, PeerLinks
from cluster.node.pump import NodeRuntime, PeerTransport
from cluster.node.settings import NodeSettings, peer_link_address
from cluster.node.tls import grpc_server_context, server_context
from distro.catalog import CatalogIndex
from distro.messages import Message

__all__ = ["NodeServer", "NodeTransport", "PeerLinkTransport", "TransportFactory", "peer_links"]

log = logging.getLogger("distro.node")


class NodeTransport(PeerTransport, Protocol):
    """A peer transport a node runs: the runtime sends through it, ``serve`` runs it until cancelled."""

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled; ``task_status.started(port)`` (0 when nothing listens)."""

    def render_metrics(self) -> str:
        """The transport's series for /metrics (may be empty)."""

    def link_states(self) -> dict[str, LinkState]:
        """Node id -> the state of this node's links with that peer (empty when the transport has none)."""


TransportFactory = Callable[[NodeSettings, NodeRuntime], NodeTransport]
"""Builds a node's peer transport; it delivers to the runtime's ``on_messages``/``on_connected``/``on_send_failed``."""


class PeerLinkTransport:
    """Authenticated peer links listening on ``host:port``: the transport of a real node."""

    def __init__(self, links: PeerLinks, host: str, port: int) -> None:
        self.links = links
        self.host = host
        self.port = port

    def send(self, node_id: str, message: Message) -> None:
        """Queue a message for a peer (see :meth:`PeerLinks.send`)."""
        self.links.send(node_id, message)

    def queued_bytes(self, node_id: str) -> int:
        """Encoded bytes waiting to be written to ``node_id`` (the runtime paces a snapshot by it)."""
        return self.links.statistics().queue_bytes.get(node_id, 0)

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen for peers and dial them until cancelled; ``task_status.started(peer_port)``."""
        await self.links.serve(self.host, self.port, task_status=task_status)

    def render_metrics(self) -> str:
        """The peer links' counters."""
        return render_peer_link_metrics(self.links.statistics())

    def link_states(self) -> dict[str, LinkState]:
        """This node's links with each peer (the console's cluster page)."""
        return self.links.link_states()


def peer_links(settings: NodeSettings, runtime: NodeRuntime) -> PeerLinkTransport:
    """The default :data:`TransportFactory`: peer links on the HTTP port plus ``peer_port_offset``."""
    s = settings
    links = PeerLinks(
        PeerLinkConfig(
            node_id=s.node_id,
            advertise_address=s.advertise_address,
            peer_addresses=tuple(peer_link_address(p, s.peer_port_offset) for p in s.peers),
            secret=s.cluster_secret.encode(),
            previous_secrets=tuple(secret.encode() for secret in s.previous_cluster_secrets),
            tls=s.tls,
        ),
        on_messages=runtime.on_messages,
        on_connected=runtime.on_connected,
        on_send_failed=runtime.on_send_failed,
    )
    return PeerLinkTransport(links, s.host, s.port + s.peer_port_offset)


class NodeServer:
    """One running node: ``await nursery.start(NodeServer(settings).run)`` gives its HTTP port.

    ``transport`` builds the peer transport (peer links by default); ``push`` and ``watch`` configure the
    UDP push and the HTTP watch beyond what the command line sets. Build it inside ``trio.run``.
    """

    def __init__(
        self,
        settings: NodeSettings,
        *,
        transport: TransportFactory = peer_links,
        push: PushConfig | None = None,
        watch: WatchConfig | None = None,
        data_dir: DataDir | None = None,
    ) -> None:
        self.settings = settings
        core = replace(settings.core, durable_writes=data_dir is not None)
        self.runtime = NodeRuntime(settings.node_id, core, address=settings.advertise_address)
        self.data_dir = data_dir
        self.disk: DiskWriter | None = None
        if data_dir is not None:
            self.disk = DiskWriter(data_dir, self.runtime.persisted)
            self.runtime.persist = self.disk.submit
        self.transport = transport(settings, self.runtime)
        self.runtime.transport = self.transport
        renderer = ListRenderer(self.runtime, cache_max_bytes=settings.list_cache_bytes)
        push = push or PushConfig()
        if settings.push_trusted_networks:
            push = replace(push, trusted_networks=settings.push_trusted_networks)
        self.push = PushService(self.runtime, renderer, push)
        self.runtime.change_listeners.append(self.push.on_change)
        self.watch = WatchService(self.runtime, renderer, watch)
        self.catalog = CatalogIndex(self.runtime.node.view)
        self.runtime.change_listeners.append(self.catalog.on_change)
        auth = authenticator_for(settings) if settings.auth else None
        self.grpc: GrpcServer | None = None
        if settings.grpc:
            self.grpc = GrpcServer(
                self.runtime,
                renderer=renderer,
                max_connections=settings.grpc_max_connections,
                limits=GrpcLimits(stall_timeout_ms=settings.grpc_stall_timeout_ms),
                instance_limits=InstanceLimits(settings.metadata_max_keys, settings.metadata_max_bytes),
                check_token=None if auth is None else (lambda token: auth.check(token).status),
                ssl_context=grpc_server_context(settings.tls) if settings.grpc_tls and settings.tls else None,
            )
        self.http_stats = HttpStats()
        self.console = ConsoleEndpoints(self.runtime, auth_enabled=settings.auth, link_states=self.transport.link_states)
        self.runtime.change_listeners.append(self.console.feed.on_change)
        self.api = NamingApi(
            self.runtime,
            renderer,
            readiness=ReadinessGate(self.runtime.node),
            push=self.push,
            watch=self.watch,
            auth=auth,
            catalog=self.catalog,
            console=self.console,
            extra_metrics=(
                lambda: render_http_metrics(self.http_stats),
                self._render_runtime_metrics,
                self.transport.render_metrics,
                *(() if self.grpc is None else (self.grpc.render_metrics,)),
                *(() if self.disk is None else (self.disk.render_metrics,)),
            ),
            metadata_max_bytes=settings.metadata_max_bytes,
            metadata_max_keys=settings.metadata_max_keys,
        )
        if self.grpc is not None:  # service/subscribers lists gRPC subscribers beside UDP and watch ones
            self.api.subscribers.sources.append(self.grpc.subscriber_rows)
        # The web console's static files are answered in front of the API (they need no token).
        # Light beats this node answers at once are answered in the HTTP server's keep-alive lane.
        self.handler = ConsoleFront(self.api, StaticAssets.from_package(), fast=self.api.answer_now)
        self.limits = HttpLimits(
            max_body_bytes=settings.max_body_bytes,
            max_connections=settings.max_connections,
            max_connections_per_ip=settings.max_connections_per_ip,
            request_timeout_ms=settings.request_timeout_ms,
            idle_timeout_ms=settings.idle_timeout_ms,
        )

    def _render_runtime_metrics(self) -> str:
        return counter("distro_effect_errors_total",
                       "Effects of the core the runtime failed to carry out (a bug: logged, rate-limited; the "
                       "others are carried out, a failed Persist is handed to the disk again).",
                       self.runtime.effect_errors_total)

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``task_status.started(http_port)`` (``settings.port`` 0 picks a free one)."""
        s = self.settings
        async with trio.open_nursery() as nursery:
            if self.data_dir is not None and self.disk is not None:
                loaded = self.data_dir.take_loaded()
                self.runtime.load_persisted(loaded)  # before anything can make the node ready
                log.info("data dir %s: %d cluster-data entries loaded", self.data_dir.path, len(loaded))
                await nursery.start(self.disk.run)
            await nursery.start(self.runtime.run)
            peer_port = await nursery.start(self.transport.serve)
            await nursery.start(self.push.run)
            http_ssl = server_context(s.tls) if s.http_tls and s.tls is not None else None
            serve = partial(serve_http, self.handler, s.host, s.port, self.limits, stats=self.http_stats,
                            ssl_context=http_ssl, fast=self.handler.answer_now, fast_step=self.runtime.batch)
            grpc_port = 0
            if self.grpc is None:
                port: int = await nursery.start(serve)
            else:  # both ports together: with port 0, one whose gRPC port (+ offset) is free too
                http_sockets, grpc_sockets = await open_listener_pair(
                    s.host, s.port, s.grpc_port_offset, backlogs=(HTTP_LISTEN_BACKLOG, GRPC_LISTEN_BACKLOG),
                    whats=("the HTTP port", "the gRPC port"),
                )
                port = await nursery.start(partial(serve, sockets=http_sockets))
                grpc_port = await nursery.start(partial(self.grpc.serve, s.host, 0, sockets=grpc_sockets))
            grpc_tls = self.grpc is not None and self.grpc.ssl_context is not None
            log.info(
                "started: node %s on %s:%d%s (advertised %s), gRPC on port %s%s, peer link on port %d, peers %s",
                s.node_id, s.host, port, " (HTTPS)" if http_ssl is not None else "", s.advertise_address,
                grpc_port or "- (off)", " (TLS)" if grpc_tls else "", peer_port, ",".join(s.peers) or "-",
            )
            task_status.started(port)

    async def drain(self) -> None:
        """The first step of a graceful stop (SIGTERM): gRPC clients are asked to move to other members and
        given up to ``settings.grpc_drain_ms`` to go (:meth:`cluster.grpc.server.GrpcServer.drain`).
        Cancelling :meth:`run` afterwards stops the node as before."""
        if self.grpc is not None and self.settings.grpc_drain_ms > 0:
            await self.grpc.drain(self.settings.grpc_drain_ms / 1000)
