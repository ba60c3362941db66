"""GrpcServer: the listener of the Nacos gRPC front door, its connections and their life.

``await nursery.start(server.serve, host, port)`` listens and serves each accepted connection with a
:class:`~cluster.grpc.connection.GrpcConnection` whose requests go to the
:class:`~cluster.grpc.naming.NamingFrontDoor`. Without ``ssl_context`` the port speaks HTTP/2 with prior
knowledge (plaintext, gRPC's "insecure" channel). With it (``--grpc-tls``; the context comes from
:func:`cluster.node.tls.grpc_server_context`, ALPN ``h2``) every connection is TLS first, through
``trio.SSLStream``: the handshake must finish within ``limits.tls_handshake_timeout_ms`` and holds one of
the ``max_connections`` slots meanwhile, so stalled or failed handshakes (plaintext h2, junk, a client that
stops half way) are closed, counted by reason and cost nothing lasting. The server also

* fans the node's changes out to gRPC subscribers (it is one of the runtime's change listeners, beside UDP
  push and the HTTP watch);
* runs detection: every ``check_interval_ms`` the connection table names the idle connections to probe
  (``ClientDetectionRequest`` on their bi-stream) and those that did not answer, which are closed;
* when a connection ends (closed by the client, lost, given up, or a slow reader), forgets its
  subscriptions and submits the deregistrations of its instances. A node that is shutting down does not
  deregister anything: its clients reconnect to another node and register again, and their instances do
  not flap;
* on a graceful stop, :meth:`GrpcServer.drain` closes the listeners and sends Nacos's
  ``ConnectResetRequest`` on every client's bi-stream, recommending the live members in turn
  (``serverIp``/``serverPort``: a member's advertised HTTP address; left out when no other member is up,
  which tells the client to pick the next server of its own list). Clients that honour it (the Java
  client, nacos-sdk-go) answer, reconnect to the recommended node, register again and close the old
  connection; the drain ends when every connection has gone or after its grace period, whichever comes
  first. Nothing is deregistered from the moment the drain starts.

Connection ids follow Nacos (``<ms>_<client ip>_<client port>``) with a short tag of the node id
(:func:`distro.connections.new_connection_id`), so two nodes never hand out the same id and an owner can
tell whose connection an instance is bound to.
"""

from __future__ import annotations

import logging
import socket
import ssl
from dataclasses import dataclass, field

import trio

from cluster.api.render import ListRenderer
from cluster.grpc.connection import GrpcConnection, GrpcLimits
from cluster.grpc.naming import NamingFrontDoor, TokenChecker
from cluster.grpc.requests import InstanceLimits
from cluster.grpc.responses import server_request
from cluster.grpc.subscriptions import Subscriptions
from cluster.grpc.wire import Payload
from cluster.http.lane import KeepAliveLane
from cluster.metrics import counter, family, gauge
from cluster.node.listeners import open_listeners
from cluster.node.pump import NodeRuntime
from cluster.node.tls import TlsHandshakeError, handshake
from distro.connections import new_connection_id
from distro.messages import SubscriberRow
from distro.model import ServiceKey
from distro.requests import ClientRequest
from distro.views import ServiceView

log = logging.getLogger("distro.grpc")
LISTEN_BACKLOG = 1024
"""The gRPC port's listen backlog."""


@dataclass
class ServerStats:
    """Connection counters for /metrics."""

    accepted: int = 0
    rejected: int = 0  # over max_connections
    closed: dict[str, int] = field(default_factory=dict)  # by reason class
    probes_sent: int = 0
    deregistrations: int = 0
    tls_failures: dict[str, int] = field(default_factory=dict)  # TLS handshakes given up: timeout, error
    resets_sent: int = 0  # ConnectResetRequest sent by drain()
    lane_errors_total: int = 0  # unexpected errors in the server's lane (a bug; logged, cluster/http/lane.py)


def _reason_class(reason: str) -> str:
    for prefix, name in (
        ("closed by the client", "client"),
        ("the client ended", "client"),
        ("the client reset", "client"),
        ("the client sent GOAWAY", "client"),
        ("connection lost", "lost"),
        ("slow reader", "slow_reader"),
        ("no answer to detection", "detection"),
        ("HTTP/2 protocol error", "protocol_error"),
        ("bad message", "protocol_error"),
        ("over ", "inbound_limit"),
        ("no connection setup", "no_setup"),
        ("internal error", "internal"),
    ):
        if reason.startswith(prefix):
            return name
    return "other"


class GrpcServer:
    """The gRPC front door of one node."""

    def __init__(
        self,
        runtime: NodeRuntime,
        *,
        limits: GrpcLimits | None = None,
        max_connections: int = 16_384,
        max_subscriptions_per_connection: int = 10_000,
        instance_limits: InstanceLimits | None = None,
        check_token: TokenChecker | None = None,
        renderer: ListRenderer | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.runtime = runtime
        self.ssl_context = ssl_context
        self.limits = limits or GrpcLimits()
        self.max_connections = max_connections
        self.table = runtime.node.connections
        self.renderer = renderer or ListRenderer(runtime)
        self.subscriptions = Subscriptions(
            self.renderer, trio.current_time, max_per_connection=max_subscriptions_per_connection
        )
        self.front = NamingFrontDoor(
            runtime, self.table, self.subscriptions, self.renderer, instance_limits=instance_limits, check_token=check_token
        )
        self.connections: dict[str, GrpcConnection] = {}
        self.stats = ServerStats()
        self.port = 0
        self._nursery: trio.Nursery | None = None
        self._lane: KeepAliveLane | None = None  # plain-TCP connections' sockets while their readers wait
        self._probe_seq = 0
        self._handshaking = 0  # connections in their TLS handshake: they hold a slot too
        self.draining = False  # drain() started: no new connections, no deregistrations
        self._accept_scope = trio.CancelScope()  # cancelled by drain(): the listeners close
        self._all_gone = trio.Event()  # set once draining and no connection is left
        runtime.change_listeners.append(self._on_change)

    # ------------------------------------------------------------------------------------------
    # serving
    # ------------------------------------------------------------------------------------------
    async def serve(
        self,
        host: str,
        port: int,
        *,
        sockets: list[socket.socket] | None = None,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``host:port`` (0: any free port) until cancelled; ``task_status.started(port)``.
        ``sockets``: listening sockets opened already, served instead (closed when serving stops)."""
        if sockets is None:
            sockets = await open_listeners(host, port, backlog=LISTEN_BACKLOG, what="the gRPC port")
        listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(sock)) for sock in sockets]
        self.port = int(sockets[0].getsockname()[1])
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._lane = KeepAliveLane(self.runtime.batch, self.stats)
            nursery.start_soon(self._lane.run)
            nursery.start_soon(self._detect_loop)
            nursery.start_soon(self._accept_all, listeners, nursery)
            task_status.started(self.port)

    async def _accept_all(self, listeners: list[trio.SocketListener], nursery: trio.Nursery) -> None:
        with self._accept_scope:  # drain() cancels it: the listening sockets close, connections go on
            async with trio.open_nursery() as accepting:
                for listener in listeners:
                    accepting.start_soon(self._accept_loop, listener, nursery)

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:  # EMFILE and friends: wait a little instead of spinning
                    log.warning("grpc: accept failed: %s", exc)
                    await trio.sleep(0.1)
                    continue
                if len(self.connections) + self._handshaking >= self.max_connections:
                    self.stats.rejected += 1
                    await stream.aclose()
                    continue
                nursery.start_soon(self._serve_connection, stream)

    def _connection_id(self, remote: tuple[str, int]) -> str:
        base = new_connection_id(self.runtime.node.node_id, self.runtime.now_ms(), remote[0], remote[1])
        connection_id, n = base, 0
        while connection_id in self.connections:
            n += 1
            connection_id = f"{base}.{n}"
        return connection_id

    async def _serve_connection(self, raw: trio.SocketStream) -> None:
        try:
            peer = raw.socket.getpeername()
            remote = (str(peer[0]), int(peer[1]))
        except OSError:
            await raw.aclose()
            return
        stream: trio.abc.Stream = raw
        if self.ssl_context is not None:
            tls = await self._tls_handshake(raw, remote)
            if tls is None:
                return
            if self.draining:  # accepted before the drain began, too late to be asked to move: go elsewhere
                await trio.aclose_forcefully(tls)
                return
            stream = tls
        connection_id = self._connection_id(remote)
        conn = GrpcConnection(stream, connection_id, remote, self.limits, pull_pushes=self._pull_pushes,
                              lane=self._lane, step=self.runtime.batch)
        self.connections[connection_id] = conn
        self.stats.accepted += 1
        try:
            await conn.run(self.front)
        except Exception:  # one connection's failure ends that connection, never the node
            log.exception("grpc: connection %s failed", connection_id)
            conn.close_reason = conn.close_reason or "internal error"
        finally:
            del self.connections[connection_id]
            reason = conn.close_reason or "server stopping"
            kind = _reason_class(reason)
            self.stats.closed[kind] = self.stats.closed.get(kind, 0) + 1
            self.subscriptions.drop(connection_id)
            writes = self.table.close(connection_id)
            if kind not in ("client", "lost"):
                log.info("grpc: closed %s: %s", connection_id, reason)
            if writes and self._nursery is not None and conn.close_reason and not self.draining:
                self._nursery.start_soon(self._deregister, writes)
            if self.draining and not self.connections:
                self._all_gone.set()

    async def _tls_handshake(
        self, raw: trio.SocketStream, remote: tuple[str, int]
    ) -> trio.SSLStream[trio.SocketStream] | None:
        """The TLS stream once its handshake is done; None (the socket closed, the failure counted) when it
        fails or does not finish within ``limits.tls_handshake_timeout_ms``."""
        assert self.ssl_context is not None
        tls = trio.SSLStream(raw, self.ssl_context, server_side=True)
        self._handshaking += 1
        try:
            await handshake(tls, self.limits.tls_handshake_timeout_ms / 1000)
            return tls
        except TlsHandshakeError as exc:
            kind = "timeout" if exc.timed_out else "error"
            self.stats.tls_failures[kind] = self.stats.tls_failures.get(kind, 0) + 1
            log.debug("grpc: TLS handshake with %s:%d given up: %s", remote[0], remote[1], exc)
            await trio.aclose_forcefully(raw)
            return None
        finally:
            self._handshaking -= 1

    async def _deregister(self, writes: list[ClientRequest]) -> None:
        for write in writes:
            self.stats.deregistrations += 1
            await self.runtime.submit(write)

    # ------------------------------------------------------------------------------------------
    # graceful stop
    # ------------------------------------------------------------------------------------------
    async def drain(self, grace_s: float) -> None:
        """Ask every client to move to another node (see the module docstring), then wait until all
        connections have gone or ``grace_s`` has passed. What is left is closed when the server is
        cancelled, as before; instances are not deregistered either way."""
        self.draining = True
        self._accept_scope.cancel()
        targets = self._reset_targets()
        for n, conn in enumerate(list(self.connections.values())):
            if not conn.registered or conn.bi_stream_id is None:
                conn.close("server stopping before the connection was set up")
                continue
            host, port = targets[n % len(targets)] if targets else (None, None)
            self.stats.resets_sent += 1
            conn.push(server_request("ConnectResetRequest", f"reset-{n + 1}", serverIp=host, serverPort=port))
        if not self.connections:
            self._all_gone.set()
        log.info("grpc: draining: %d clients asked to move (to %s), waiting up to %g s",
                 self.stats.resets_sent, ", ".join(f"{h}:{p}" for h, p in targets) or "a server of their choice",
                 grace_s)
        with trio.move_on_after(grace_s):
            await self._all_gone.wait()

    def _reset_targets(self) -> list[tuple[str, str]]:
        """(host, port) of every other member that is up and ready, from its advertised address."""
        targets = []
        for member in self.runtime.node.members():
            host, sep, port = member.address.rpartition(":")
            if member.is_self or not (member.up and member.ready) or not sep or not port.isdigit():
                continue
            targets.append((host.strip("[]"), port))
        return targets

    # ------------------------------------------------------------------------------------------
    # pushes and detection
    # ------------------------------------------------------------------------------------------
    def _on_change(self, key: ServiceKey, view: ServiceView) -> None:
        for connection_id in self.subscriptions.on_change(key):
            conn = self.connections.get(connection_id)
            if conn is not None:
                conn.wake()

    def _pull_pushes(self, conn: GrpcConnection, budget_bytes: int) -> list[Payload]:
        if not conn.registered:
            return []
        return self.subscriptions.pull(conn.connection_id, budget_bytes)

    async def _detect_loop(self) -> None:
        interval_s = self.table.timings.check_interval_ms / 1000
        while True:
            await trio.sleep(interval_s)
            self.detect()

    def detect(self) -> None:
        """One detection round: probe idle connections, close those that did not answer."""
        detection = self.table.detect(self.runtime.now_ms())
        for connection_id in detection.probe:
            conn = self.connections.get(connection_id)
            if conn is not None:
                self._probe_seq += 1
                self.stats.probes_sent += 1
                conn.push(server_request("ClientDetectionRequest", f"detect-{self._probe_seq}"))
        for connection_id in detection.give_up:
            conn = self.connections.get(connection_id)
            if conn is not None:
                conn.close("no answer to detection")

    # ------------------------------------------------------------------------------------------
    # reporting
    # ------------------------------------------------------------------------------------------
    def subscriber_rows(self, key: ServiceKey) -> list[SubscriberRow]:
        """This node's gRPC subscribers of ``key`` as ``service/subscribers`` rows (protocol ``grpc``): one
        per connection and clusters filter, with the client's address and version."""
        rows: list[SubscriberRow] = []
        for connection_id, filters in self.subscriptions.subscribers_of(key).items():
            conn = self.connections.get(connection_id)
            if conn is None:
                continue
            ip, port = conn.remote
            for clusters in filters:
                rows.append((f"{ip}:{port}", conn.client_version, conn.app, ip, port, ",".join(clusters), "grpc"))
        return rows

    def render_metrics(self) -> str:
        """Prometheus text: connections, requests, pushes (the connection table's gauges are the core's)."""
        s, p, c = self.stats, self.subscriptions.stats, self.front.stats
        return "".join([
            gauge("distro_grpc_connections_open", "gRPC (HTTP/2) connections open.", len(self.connections)),
            counter("distro_grpc_connections_accepted_total", "gRPC connections accepted.", s.accepted),
            counter("distro_grpc_connections_rejected_total", "gRPC connections refused over the bound.", s.rejected),
            family("distro_grpc_tls_handshake_failures_total", "counter",
                   "gRPC connections closed in their TLS handshake (--grpc-tls), by reason: timeout or error.",
                   [({"reason": reason}, s.tls_failures.get(reason, 0)) for reason in ("error", "timeout")]),
            family("distro_grpc_connections_closed_total", "counter", "gRPC connections closed, by reason.",
                   [({"reason": reason}, n) for reason, n in sorted(s.closed.items())]),
            gauge("distro_grpc_subscriptions", "gRPC subscriptions held.", self.subscriptions.count()),
            counter("distro_grpc_pushes_sent_total", "NotifySubscriberRequest pushes written.", p.pushes_sent),
            counter("distro_grpc_pushes_acked_total", "Pushes the client acknowledged.", p.pushes_acked),
            counter("distro_grpc_pushes_coalesced_total", "Changes folded into a push still waiting to go out.",
                    p.pushes_coalesced),
            counter("distro_grpc_push_ack_seconds_sum", "Seconds from push written to its ack, summed.",
                    p.ack_seconds_total),
            counter("distro_grpc_detection_probes_total", "ClientDetectionRequest probes sent to idle connections.",
                    s.probes_sent),
            counter("distro_grpc_deregistrations_total", "Deregistrations made because a connection ended.",
                    s.deregistrations),
            counter("distro_grpc_connect_resets_sent_total",
                    "ConnectResetRequest sent while stopping gracefully (clients asked to move).", s.resets_sent),
            counter("distro_grpc_lane_errors_total",
                    "Unexpected errors in the server's lane (a bug: logged; the server serves on).",
                    s.lane_errors_total),
            counter("distro_grpc_connect_resets_acked_total", "ConnectResetResponse answers received.",
                    c.resets_acked),
            counter("distro_grpc_auth_refused_total", "gRPC requests refused for lack of a valid token.",
                    c.auth_refused),
            family("distro_grpc_requests_total", "counter", "gRPC requests received, by type.",
                   [({"type": kind}, n) for kind, n in sorted(c.requests.items())]),
            family("distro_grpc_errors_total", "counter", "gRPC error answers, by Nacos errorCode.",
                   [({"code": str(code)}, n) for code, n in sorted(c.errors.items())]),
        ])


def grpc_port(http_port: int, offset: int) -> int:
    """The gRPC port of a node whose HTTP port is ``http_port`` (Nacos: + 1000)."""
    return http_port + offset



__all__ = ["LISTEN_BACKLOG", "GrpcServer", "ServerStats", "grpc_port"]
