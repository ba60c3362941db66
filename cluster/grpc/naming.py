"""The Nacos naming service over gRPC: what each request does, on top of the node's core.

:class:`NamingFrontDoor` is the :class:`~cluster.grpc.connection.ConnectionHandler` of every connection.
A request is parsed once (:func:`cluster.grpc.requests.parse_call`) into a typed call carrying the core's
validated values; writes go through the connection table (:mod:`distro.connections`, which binds the
instance to the connection) and the runtime (which forwards them to the owner, as for the v1 HTTP API);
reads are answered from the node's read views. Order of checks, as Nacos: a ``ServerCheckRequest`` is
always answered; an unknown type gets 302; a request on a connection that has not sent its
``ConnectionSetupRequest`` gets 301; then, with auth on, the ``accessToken`` header must be valid (403);
then the request is served.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from cluster.api.auth import TOKEN_EXPIRED, TOKEN_INVALID, USER_NOT_FOUND, TokenStatus
from cluster.api.render import ListQuery, ListRenderer
from cluster.grpc.connection import GrpcConnection
from cluster.grpc.requests import (
    CODE_INVALID_PARAM,
    CODE_INVALID_SERVER_STATUS,
    CODE_NO_HANDLER,
    CODE_NO_RIGHT,
    CODE_UNREGISTERED,
    RESPONSE_TYPES,
    BatchRegister,
    Call,
    CallError,
    ClientAnswer,
    ConnectionSetup,
    HealthCheck,
    InstanceCall,
    InstanceLimits,
    ServerCheck,
    ServiceList,
    ServiceQuery,
    Subscribe,
    parse_call,
)
from cluster.grpc.responses import error_response, response, typed_response, with_service_info
from cluster.grpc.subscriptions import Subscriptions
from cluster.grpc.wire import Payload
from cluster.node.pump import NodeRuntime
from distro.connections import ConnectionTable
from distro.model import ValidationError
from distro.readiness import NOT_READY_TEXT
from distro.requests import ClientRequest, Result

log = logging.getLogger("distro.grpc")

UNREGISTERED_TEXT = "Connection is unregistered."
TokenChecker = Callable[[str], TokenStatus]


@dataclass
class CallStats:
    """Request counters for /metrics."""

    requests: dict[str, int]
    errors: dict[int, int]
    auth_refused: int = 0
    setups: int = 0
    resets_acked: int = 0  # ConnectResetResponse answers (a draining node asked the client to move)


class NamingFrontDoor:
    """Serves naming requests for every gRPC connection of one node."""

    def __init__(
        self,
        runtime: NodeRuntime,
        table: ConnectionTable,
        subscriptions: Subscriptions,
        renderer: ListRenderer,
        *,
        instance_limits: InstanceLimits | None = None,
        check_token: TokenChecker | None = None,
    ) -> None:
        self.runtime = runtime
        self.table = table
        self.subscriptions = subscriptions
        self.renderer = renderer
        self.instance_limits = instance_limits or InstanceLimits()
        self.check_token = check_token
        self.stats = CallStats({}, {})

    # ------------------------------------------------------------------------------------------
    # ConnectionHandler
    # ------------------------------------------------------------------------------------------
    def unary(self, conn: GrpcConnection, stream_id: int, payload: Payload) -> Payload | None:
        """Answer one ``/Request/request`` call: at once, or (a write forwarded to its owner) None now and
        ``conn.answer(stream_id, ...)`` when the owner's reply comes."""
        kind = payload.type
        now_ms = self.runtime.now_ms()
        self.table.touch(conn.connection_id, now_ms)
        if kind not in RESPONSE_TYPES:
            self._count(kind[:64] if kind else "-")
            return self._error("ErrorResponse", "", CODE_NO_HANDLER, f"RequestHandler Not Found: {kind[:128]!r}")
        self._count(kind)
        if kind != "ServerCheckRequest" and not conn.registered:
            return self._error("ErrorResponse", "", CODE_UNREGISTERED, UNREGISTERED_TEXT)
        try:
            call = parse_call(kind, payload.body, self.instance_limits)
        except CallError as exc:
            return self._error("ErrorResponse", "", exc.code, exc.message)
        if isinstance(call, ServerCheck):
            if not self.runtime.node.ready:
                return self._error("ErrorResponse", call.request_id, CODE_INVALID_SERVER_STATUS, NOT_READY_TEXT)
            return response(
                "ServerCheckResponse", call.request_id, connectionId=conn.connection_id, supportAbilityNegotiation=False
            )
        response_type = RESPONSE_TYPES[kind]
        if isinstance(call, HealthCheck):
            return response(response_type, call.request_id)
        refusal = self._auth(payload)
        if refusal is not None:
            self.stats.auth_refused += 1
            return self._error(response_type, call.request_id, CODE_NO_RIGHT, refusal)
        try:
            return self._serve(conn, stream_id, call, response_type, now_ms)
        except ValidationError as exc:
            return self._error("ErrorResponse", call.request_id, exc.status, exc.message)

    def stream_opened(self, conn: GrpcConnection) -> None:
        """The client opened its bi-stream (it is registered once its setup request arrives)."""

    def stream_message(self, conn: GrpcConnection, payload: Payload) -> None:
        """A message on the bi-stream: the setup request, or an answer to a push or probe."""
        now_ms = self.runtime.now_ms()
        try:
            call = parse_call(payload.type, payload.body, self.instance_limits)
        except CallError:
            self._count("bad-stream-message")
            return
        if isinstance(call, ConnectionSetup):
            if not conn.registered:
                conn.registered = True
                conn.client_version = call.client_version
                conn.app = call.labels.get("AppName", "")
                self.stats.setups += 1
                self.table.open(conn.connection_id, now_ms)
            return
        self.table.touch(conn.connection_id, now_ms)
        if isinstance(call, ClientAnswer):
            if call.type == "NotifySubscriberResponse":
                self.subscriptions.acked(conn.connection_id, call.request_id)
            elif call.type == "ConnectResetResponse":
                self.stats.resets_acked += 1
            return
        self._count("unexpected-stream-message")

    # ------------------------------------------------------------------------------------------
    # requests
    # ------------------------------------------------------------------------------------------
    def _serve(self, conn: GrpcConnection, stream_id: int, call: Call, response_type: str,
               now_ms: int) -> Payload | None:
        rid = call.request_id
        if isinstance(call, InstanceCall):
            if call.register:
                writes = self.table.register(conn.connection_id, call.key, (call.instance,), now_ms)
            else:
                writes = self.table.deregister(conn.connection_id, call.key, call.instance)
            return _Writes(self, conn, stream_id, writes, call, response_type).run()
        if isinstance(call, BatchRegister):
            writes = self.table.register(conn.connection_id, call.key, call.instances, now_ms)
            return _Writes(self, conn, stream_id, writes, call, response_type).run()
        if isinstance(call, ServiceQuery):
            info = self.renderer.service_info(ListQuery(call.key, call.clusters, call.healthy_only))
            return with_service_info(response(response_type, rid), info)
        if isinstance(call, Subscribe):
            if call.subscribe:
                if not self.subscriptions.subscribe(conn.connection_id, call.key, call.clusters):
                    return self._error(response_type, rid, CODE_INVALID_PARAM, "too many subscriptions on one connection")
            else:
                self.subscriptions.unsubscribe(conn.connection_id, call.key, call.clusters)
            info = self.renderer.service_info(ListQuery(call.key, call.clusters))
            return with_service_info(response(response_type, rid), info)
        if isinstance(call, ServiceList):
            names = sorted(
                view.key.service
                for view in self.runtime.node.views()
                if view.key.namespace == call.namespace and view.key.group == call.group
            )
            start = (call.page_no - 1) * call.page_size
            return response(response_type, rid, count=len(names), serviceNames=names[start : start + call.page_size])
        return self._error("ErrorResponse", rid, CODE_NO_HANDLER, "RequestHandler Not Found")

    def _written(self, conn: GrpcConnection, call: InstanceCall | BatchRegister, response_type: str,
                 failure: Result | None) -> Payload:
        """The answer to a write call once its writes were answered (``failure``: the first that failed)."""
        rid = call.request_id
        if isinstance(call, BatchRegister):
            if failure is not None:
                return self._result_error(rid, failure)
            return typed_response(response_type, rid, "batchRegisterInstance")
        if failure is not None:
            if call.register:  # it was not registered: do not keep renewing it
                self.table.unbind(conn.connection_id, call.key, call.instance.entry_id)
            return self._result_error(rid, failure)
        return typed_response(response_type, rid, "registerInstance" if call.register else "deregisterInstance")

    # ------------------------------------------------------------------------------------------
    # helpers
    # ------------------------------------------------------------------------------------------
    def _auth(self, payload: Payload) -> str | None:
        if self.check_token is None:
            return None
        token = payload.headers.get("accessToken", "")
        if not token:
            return USER_NOT_FOUND
        status = self.check_token(token)
        if status is TokenStatus.VALID:
            return None
        return TOKEN_EXPIRED if status is TokenStatus.EXPIRED else TOKEN_INVALID

    def _result_error(self, request_id: str, result: Result) -> Payload:
        message = result.body if isinstance(result.body, str) else str(result.body)
        return self._error("ErrorResponse", request_id, result.status, message)

    def _error(self, kind: str, request_id: str, code: int, message: str) -> Payload:
        self.stats.errors[code] = self.stats.errors.get(code, 0) + 1
        return error_response(kind, request_id, code, message)

    def _count(self, kind: str) -> None:
        requests = self.stats.requests
        if kind in requests or len(requests) < 64:
            requests[kind] = requests.get(kind, 0) + 1


class _Writes:
    """The writes of one call, submitted in order without a task (``NodeRuntime.submit_then``): each is
    answered at once (this node owns its service) or when its owner's reply comes; the call is answered
    after the last, or at the first that failed."""

    __slots__ = ("call", "conn", "front", "index", "response_type", "stream_id", "writes")

    def __init__(self, front: NamingFrontDoor, conn: GrpcConnection, stream_id: int, writes: list[ClientRequest],
                 call: InstanceCall | BatchRegister, response_type: str) -> None:
        self.front, self.conn, self.stream_id, self.writes = front, conn, stream_id, writes
        self.call, self.response_type = call, response_type
        self.index = 0

    def run(self) -> Payload | None:
        """Submit the writes not yet submitted; the call's answer, or None while one waits for its owner."""
        writes, submit = self.writes, self.front.runtime.submit_then
        while self.index < len(writes):
            write = writes[self.index]
            self.index += 1
            result = submit(write, self._later)
            if result is None:
                return None
            if not result.ok:
                return self.front._written(self.conn, self.call, self.response_type, result)
        return self.front._written(self.conn, self.call, self.response_type, None)

    def _later(self, result: Result) -> None:
        """A write's answer came from its owner (in the task that delivered it)."""
        try:
            answer = self.front._written(self.conn, self.call, self.response_type, result) if not result.ok else self.run()
        except Exception:  # a bug costs this call (INTERNAL), never the task that delivered the reply
            log.exception("grpc: answering %s on %s failed", type(self.call).__name__, self.conn.connection_id)
            self.conn.answer(self.stream_id, None)
            return
        if answer is not None:
            self.conn.answer(self.stream_id, answer)


__all__ = ["NamingFrontDoor"]
