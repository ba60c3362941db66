"""NodeServer: wires one node together: runtime, HTTP API, peer links (and later push and auth)."""

from __future__ import annotations

import logging
from functools import partial

import trio

from cluster.api.auth import install_auth
from cluster.api.readiness import install_readiness_gate
from cluster.api.routes import NamingApi
from cluster.http import HttpLimits, HttpStats, serve_http
from cluster.metrics import render_http_metrics, render_peer_link_metrics
from cluster.node.pump import NodeRuntime
from cluster.node.settings import NodeSettings, peer_link_address

log = logging.getLogger("distro.node")


class NodeServer:
    """One running node: ``await nursery.start(NodeServer(settings).run)`` gives its HTTP port."""

    def __init__(self, settings: NodeSettings) -> None:
        self.settings = settings
        self.runtime = NodeRuntime(settings.node_id, settings.core, address=settings.advertise_address)
        self.api = NamingApi(
            self.runtime,
            metadata_max_bytes=settings.metadata_max_bytes,
            metadata_max_keys=settings.metadata_max_keys,
        )
        if settings.auth:
            install_auth(self.api, settings)
        install_readiness_gate(self.api)  # first among the guards
        self.http_stats = HttpStats()
        self.api.extra_metrics.append(lambda: render_http_metrics(self.http_stats))
        self.limits = HttpLimits(
            max_body_bytes=settings.max_body_bytes,
            max_connections=settings.max_connections,
            request_timeout_ms=settings.request_timeout_ms,
            idle_timeout_ms=settings.idle_timeout_ms,
        )

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled."""
        from cluster.api.push import PushService
        from cluster.api.watch import WatchService
        from cluster.node.peerlink import PeerLinkConfig, PeerLinks

        push = PushService.attach(self.runtime, self.api)
        WatchService.attach(self.runtime, self.api)

        s = self.settings
        links = PeerLinks(
            PeerLinkConfig(
                node_id=s.node_id,
                advertise_address=s.advertise_address,
                peer_addresses=tuple(peer_link_address(p, s.peer_port_offset) for p in s.peers),
                secret=s.cluster_secret.encode(),
                previous_secrets=tuple(secret.encode() for secret in s.previous_cluster_secrets),
            ),
            on_message=self.runtime.on_message,
            on_connected=self.runtime.on_connected,
            on_send_failed=self.runtime.on_send_failed,
        )
        self.runtime.transport = links
        self.api.extra_metrics.append(lambda: render_peer_link_metrics(links.statistics()))
        handler = self.api
        async with trio.open_nursery() as nursery:
            await nursery.start(self.runtime.run)
            await nursery.start(links.serve, s.host, s.port + s.peer_port_offset)
            await nursery.start(push.run)
            serve = partial(serve_http, handler, s.host, s.port, self.limits, stats=self.http_stats)
            port: int = await nursery.start(serve)
            log.info(
                "started: node %s on %s:%d (advertised %s), peer link on port %d, peers %s",
                s.node_id, s.host, port, s.advertise_address, s.port + s.peer_port_offset, ",".join(s.peers) or "-",
            )
            task_status.started(port)
