"""A small Nacos gRPC client over ``h2`` and trio: one HTTP/2 connection, the two Nacos methods.

Not used by the node. It drives nodes from the outside: ``scripts/chaos`` runs its gRPC clients on it, and
the tests (tests/grpc/h2client.py) add deliberate misbehaviour on top (raw bytes, never acknowledging a
push). It follows what today's SDKs do: a unary ``ServerCheckRequest``, then the bi-stream with
``ConnectionSetupRequest``, then unary calls; pushes and probes that arrive on the bi-stream are answered
with the matching ``...Response``.

Bounded: the state of a unary call made with :meth:`GrpcClient.call` is dropped once it is answered, and
at most ``max_pushes_kept`` received pushes are kept (older ones are dropped).
"""

from __future__ import annotations

import json
import ssl
from typing import Any

import h2.config
import h2.connection
import h2.events
import trio

from cluster.grpc.wire import MessageReader, Payload, decode_payload, encode_payload, frame_message

UNARY = "/Request/request"
BI = "/BiRequestStream/requestBiStream"


class GrpcClientError(Exception):
    """A call got no answer: the connection closed, or the answer was not a Nacos message."""


class GrpcClient:
    """One HTTP/2 connection to a node's gRPC port. Run :meth:`pump` in a nursery to receive anything."""

    def __init__(self, stream: trio.abc.Stream, max_pushes_kept: int = 10_000) -> None:
        self.stream = stream
        self.scheme = "https" if isinstance(stream, trio.SSLStream) else "http"
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.h2.initiate_connection()
        self._readers: dict[int, MessageReader] = {}
        self.messages: dict[int, list[Payload]] = {}
        self.trailers: dict[int, dict[str, str]] = {}
        self.ended: dict[int, trio.Event] = {}
        self.pushes: list[Payload] = []
        self.max_pushes_kept = max_pushes_kept
        self.push_event = trio.Event()
        self.window_event = trio.Event()
        self.closed = trio.Event()
        self.bi_id: int | None = None
        self.auto_ack = True
        self._seq = 0
        self._send_lock = trio.Lock()  # the pump and callers both flush: one at a time

    @classmethod
    async def connect(cls, port: int, host: str = "127.0.0.1", **kwargs: Any) -> GrpcClient:
        """Open a TCP connection to ``host:port`` (the node's gRPC port) and start HTTP/2 on it."""
        return cls(await trio.open_tcp_stream(host, port), **kwargs)

    @classmethod
    async def connect_tls(cls, port: int, ca_file: str, host: str = "127.0.0.1", **kwargs: Any) -> GrpcClient:
        """Over TLS, verifying the server against ``ca_file`` (for ``host``) and offering ALPN h2 only."""
        context = ssl.create_default_context(cafile=ca_file)
        context.set_alpn_protocols(["h2"])
        raw = await trio.open_tcp_stream(host, port)
        stream = trio.SSLStream(raw, context, server_hostname=host)
        try:
            await stream.do_handshake()
        except BaseException:
            await trio.aclose_forcefully(raw)
            raise
        return cls(stream, **kwargs)

    async def flush(self) -> None:
        async with self._send_lock:
            data = self.h2.data_to_send()
            if data:
                await self.stream.send_all(data)

    async def pump(self) -> None:
        """Read and handle frames until the connection closes (run it in a nursery)."""
        try:
            while True:
                data = await self.stream.receive_some(65536)
                if not data:
                    break
                for event in self.h2.receive_data(data):
                    await self._on_event(event)
                await self.flush()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self.closed.set()
            for ended in self.ended.values():
                ended.set()

    async def _on_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.DataReceived):
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            for raw in self._readers.setdefault(event.stream_id, MessageReader()).feed(event.data):
                await self._on_message(event.stream_id, decode_payload(raw))
        elif isinstance(event, h2.events.TrailersReceived):
            self.trailers[event.stream_id] = dict(event.headers)  # type: ignore[arg-type]
        elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
            self.ended.setdefault(event.stream_id, trio.Event()).set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.closed.set()
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            self.window_event.set()
            self.window_event = trio.Event()

    async def _on_message(self, stream_id: int, payload: Payload) -> None:
        if stream_id != self.bi_id:
            self.messages.setdefault(stream_id, []).append(payload)
            return
        self.pushes.append(payload)
        if len(self.pushes) > self.max_pushes_kept:
            del self.pushes[: len(self.pushes) - self.max_pushes_kept]
        self.push_event.set()
        self.push_event = trio.Event()
        if self.auto_ack and payload.type.endswith("Request"):
            body = json.loads(payload.body)
            answer = payload.type.replace("Request", "Response")
            await self.send_bi(Payload(answer, json.dumps({"requestId": body.get("requestId", "")}).encode()))

    def _headers(self, path: str) -> list[tuple[str, str]]:
        return [(":method", "POST"), (":scheme", self.scheme), (":path", path), (":authority", "localhost"),
                ("content-type", "application/grpc"), ("te", "trailers")]

    async def call_raw(self, data: bytes, path: str = UNARY, *, end: bool = True) -> int:
        """Send raw DATA bytes on a new stream; the stream id (its answer lands in ``messages``)."""
        stream_id = self.h2.get_next_available_stream_id()
        self.ended[stream_id] = trio.Event()
        self.h2.send_headers(stream_id, self._headers(path))
        await self.send_data(stream_id, data, end=end)
        return stream_id

    async def send_data(self, stream_id: int, data: bytes, *, end: bool = False) -> None:
        """Send DATA within the frame size and the flow-control window (waiting for the server to open it)."""
        view = memoryview(data)
        while True:
            size = min(len(view), self.h2.max_outbound_frame_size, self.h2.local_flow_control_window(stream_id))
            if size == 0 and len(view):
                opened = self.window_event  # taken before flushing: an update that arrives meanwhile sets it
                await self.flush()
                await opened.wait()
                continue
            self.h2.send_data(stream_id, bytes(view[:size]), end_stream=end and size == len(view))
            view = view[size:]
            if not len(view):
                break
        await self.flush()

    async def call(self, kind: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
                   timeout_s: float = 10) -> dict[str, Any]:
        """A unary call; the decoded JSON answer (with ``_type`` set to the response type). Raises
        trio.TooSlowError after ``timeout_s``, GrpcClientError when the stream ends without an answer."""
        self._seq += 1
        body = {"requestId": str(self._seq), "module": "naming", **(body or {})}
        payload = Payload(kind, json.dumps(body).encode(), headers or {})
        with trio.fail_after(timeout_s):
            stream_id = await self.call_raw(frame_message(encode_payload(payload)))
            try:
                await self.ended[stream_id].wait()
            finally:
                self.ended.pop(stream_id, None)
                self._readers.pop(stream_id, None)
                self.trailers.pop(stream_id, None)
                answers = self.messages.pop(stream_id, [])
        if not answers:
            raise GrpcClientError(f"{kind}: no answer (the connection closed or the call was refused)")
        out: dict[str, Any] = json.loads(answers[0].body)
        out["_type"] = answers[0].type
        return out

    async def open_bi(self) -> int:
        stream_id = self.h2.get_next_available_stream_id()
        self.bi_id = stream_id
        self.h2.send_headers(stream_id, self._headers(BI))
        await self.flush()
        return stream_id

    async def send_bi(self, payload: Payload) -> None:
        assert self.bi_id is not None
        await self.send_data(self.bi_id, frame_message(encode_payload(payload)))

    async def setup(self, client_version: str = "test", timeout_s: float = 10) -> str:
        """ServerCheck, open the bi-stream, ConnectionSetup; then wait for a health check to pass. The
        connection id. Raises GrpcClientError when the node refuses (e.g. not ready)."""
        with trio.fail_after(timeout_s):
            check = await self.call("ServerCheckRequest", {"module": "internal"})
            if not check.get("success"):
                raise GrpcClientError(f"server check refused: {check}")
            await self.open_bi()
            await self.send_bi(Payload("ConnectionSetupRequest", json.dumps(
                {"clientVersion": client_version, "labels": {"source": "sdk", "module": "naming"},
                 "tenant": ""}).encode()))
            while (await self.call("HealthCheckRequest", {"module": "internal"})).get("errorCode") == 301:
                await trio.sleep(0.01)
        return str(check.get("connectionId", ""))

    async def next_push(self, kind: str = "NotifySubscriberRequest", timeout_s: float = 10) -> dict[str, Any]:
        with trio.fail_after(timeout_s):
            while True:
                for payload in self.pushes:
                    if payload.type == kind:
                        self.pushes.remove(payload)
                        result: dict[str, Any] = json.loads(payload.body)
                        return result
                await self.push_event.wait()

    async def aclose(self) -> None:
        """Close cleanly (GOAWAY, then the socket)."""
        try:
            self.h2.close_connection()
            await self.flush()
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError):
            pass
        await self.stream.aclose()


__all__ = ["BI", "UNARY", "GrpcClient", "GrpcClientError"]
