"""One client's HTTP/2 connection carrying Nacos gRPC: the sans-IO ``h2`` state machine on a trio stream.

Two tasks per connection and one rule: **only the writer task writes to the socket** (two tasks flushing
``h2`` output at once make trio raise ``BusyResourceError``). The reader task feeds received bytes to ``h2``,
handles its events and moves whatever ``h2`` wants to send into the outbound buffer; handlers queue
messages on their stream; the writer moves queued messages into ``h2`` within the peer's flow-control
windows and sends the buffer out.

Bounds (:class:`GrpcLimits`), so no client can make a node hold without end:

* a gRPC message larger than ``max_message_bytes`` (10 MB) is refused (``RESOURCE_EXHAUSTED``) and its
  stream reset; the bytes buffered for incomplete messages of all streams together stay under
  ``max_inbound_bytes``, else the connection is closed;
* everything waiting to go out (the socket buffer, plus messages held back by flow control) stays under
  ``max_outbound_bytes``; a client that lets it grow past that, or that lets pending output make no
  progress for ``stall_timeout_ms`` (it does not read, or never opens its flow-control window), is a slow
  reader and is disconnected. Pushes are built when they are written (:meth:`GrpcConnection.pull_pushes`),
  so a slow reader's pushes coalesce instead of piling up;
* ``max_concurrent_streams`` is announced in SETTINGS and enforced by ``h2``;
* a connection that has not set itself up (``ConnectionSetupRequest`` on its bi-stream) within
  ``setup_timeout_ms`` is closed: idle or half-open sockets cannot pile up. Once set up, the connection
  table's detection watches it.

Received DATA is acknowledged to ``h2`` at once (the buffers above are what is bounded), so a client
never stalls on our receive window.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import trio

from cluster.grpc.wire import (
    MAX_MESSAGE_BYTES,
    MessageReader,
    Payload,
    WireError,
    decode_payload,
    encode_payload,
    frame_message,
)

log = logging.getLogger("distro.grpc")

UNARY_PATH = "/Request/request"
STREAM_PATH = "/BiRequestStream/requestBiStream"

GRPC_OK = 0
GRPC_INVALID_ARGUMENT = 3
GRPC_RESOURCE_EXHAUSTED = 8
GRPC_UNIMPLEMENTED = 12
GRPC_INTERNAL = 13
GRPC_UNAVAILABLE = 14

_READ_BYTES = 65536
_WRITE_CHUNK = 65536
_CLOSE_NOTIFY_S = 0.2


@dataclass(frozen=True, slots=True)
class GrpcLimits:
    """Per-connection bounds and timings of the gRPC front door (bytes, counts, milliseconds)."""

    max_message_bytes: int = MAX_MESSAGE_BYTES
    max_inbound_bytes: int = 16 * 1024 * 1024
    max_outbound_bytes: int = 12 * 1024 * 1024
    max_concurrent_streams: int = 128
    stall_timeout_ms: int = 20_000
    setup_timeout_ms: int = 30_000  # a connection that has not sent its ConnectionSetupRequest by then is closed
    tls_handshake_timeout_ms: int = 10_000  # with --grpc-tls: a TLS handshake not done by then is closed
    initial_window_bytes: int = 1024 * 1024


class ConnectionHandler(Protocol):
    """What a connection calls back into (the front door's dispatcher)."""

    async def unary(self, conn: GrpcConnection, payload: Payload) -> Payload:
        """Answer one ``/Request/request`` call."""

    def stream_message(self, conn: GrpcConnection, payload: Payload) -> None:
        """A message the client wrote on its bi-stream."""

    def stream_opened(self, conn: GrpcConnection) -> None:
        """The client opened its bi-stream."""


class SlowReader(Exception):
    """The client does not take what we send it fast enough: the connection is closed."""


class _Stream:
    __slots__ = ("answering", "done", "headers_sent", "is_bi", "out", "reader", "trailers")

    def __init__(self, is_bi: bool, max_message_bytes: int) -> None:
        self.is_bi = is_bi
        self.reader = MessageReader(max_message_bytes)
        self.out = bytearray()  # framed messages not yet handed to h2 (flow control)
        self.trailers: list[tuple[str, str]] | None = None  # to send once ``out`` is empty
        self.headers_sent = False
        self.done = False  # trailers handed to h2
        self.answering = False  # a unary call's message arrived and is being answered


class GrpcConnection:
    """One client connection. ``await conn.run(handler)`` serves it until it closes."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        connection_id: str,
        remote: tuple[str, int],
        limits: GrpcLimits,
        *,
        pull_pushes: Callable[[GrpcConnection, int], list[Payload]] | None = None,
    ) -> None:
        self.stream = stream
        self.connection_id = connection_id
        self.remote = remote
        self.limits = limits
        # Header validation and normalisation are off: they cost a third of h2's time per call, and the front
        # door only compares :method, :path and content-type against fixed values (nothing is forwarded).
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(
                client_side=False,
                header_encoding="utf-8",
                validate_inbound_headers=False,
                normalize_inbound_headers=False,
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
            )
        )
        self.h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: limits.initial_window_bytes,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 16 * 1024,
            },
        )
        self._streams: dict[int, _Stream] = {}
        self._out = bytearray()
        self._wake = trio.Event()
        self._stalled_since: float | None = None
        self._closed = trio.Event()
        self._pull_pushes = pull_pushes
        self.bi_stream_id: int | None = None
        self.registered = False  # ConnectionSetupRequest received
        self.client_version = ""
        self.app = ""  # the client's AppName label, if it sent one
        self.close_reason = ""
        self.bytes_in = 0
        self.bytes_out = 0
        self.messages_in = 0
        self.messages_out = 0
        self._nursery: trio.Nursery | None = None

    # ------------------------------------------------------------------------------------------
    # the two tasks
    # ------------------------------------------------------------------------------------------
    async def run(self, handler: ConnectionHandler) -> None:
        """Serve the connection until the client goes, misbehaves or :meth:`close` is called."""
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(self.limits.max_inbound_bytes)
        self._take_h2_output()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._writer)
                nursery.start_soon(self._reader, handler, nursery)
                nursery.start_soon(self._setup_deadline)
                await self._closed.wait()
                nursery.cancel_scope.cancel()
        finally:
            self._nursery = None
            with trio.CancelScope(shield=True):
                await self._goodbye()

    async def _setup_deadline(self) -> None:
        await trio.sleep(self.limits.setup_timeout_ms / 1000)
        if not self.registered:
            self.close(f"no connection setup within {self.limits.setup_timeout_ms} ms")

    def close(self, reason: str) -> None:
        """End the connection (from any task)."""
        if not self._closed.is_set():
            self.close_reason = reason
            self._closed.set()

    @property
    def closed(self) -> bool:
        """True once the connection is ending."""
        return self._closed.is_set()

    async def _goodbye(self) -> None:
        with trio.move_on_after(1):
            try:
                self.h2.close_connection()
                data = self.h2.data_to_send()
                if data:
                    await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError, h2.exceptions.ProtocolError, OSError):
                pass
        # TLS: its close_notify, if the socket takes it at once; plain: nothing to wait for
        with trio.move_on_after(_CLOSE_NOTIFY_S if isinstance(self.stream, trio.SSLStream) else 0):
            await self.stream.aclose()

    async def _reader(self, handler: ConnectionHandler, nursery: trio.Nursery) -> None:
        try:
            while not self.closed:
                data = await self.stream.receive_some(_READ_BYTES)
                if not data:
                    self.close("closed by the client")
                    return
                self.bytes_in += len(data)
                try:
                    events = self.h2.receive_data(data)
                except h2.exceptions.ProtocolError as exc:
                    self._take_h2_output()
                    self.close(f"HTTP/2 protocol error: {type(exc).__name__}")
                    return
                if any(isinstance(event, h2.events.ConnectionTerminated) for event in events):
                    # After a GOAWAY h2 sends nothing more (its state is CLOSED): what came with it cannot
                    # be answered, and the connection's instances go with it anyway.
                    self.close("the client sent GOAWAY")
                    return
                try:
                    for event in events:
                        self._on_event(event, handler, nursery)
                except h2.exceptions.ProtocolError as exc:  # h2 refused to send an answer: end, do not crash
                    self.close(f"HTTP/2 protocol error while answering: {type(exc).__name__}")
                    return
                self._take_h2_output()
                self._check_bounds()
                self._wake.set()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            self.close("connection lost")
        except SlowReader as exc:
            self.close(str(exc))

    async def _writer(self) -> None:
        limits = self.limits
        try:
            while True:
                timeout = limits.stall_timeout_ms / 1000
                with trio.move_on_after(timeout / 4):
                    await self._wake.wait()
                self._wake = trio.Event()
                self._flush_streams()
                self._take_h2_output()
                self._check_bounds()
                while self._out:
                    chunk = bytes(self._out[:_WRITE_CHUNK])
                    del self._out[:_WRITE_CHUNK]
                    with trio.move_on_after(timeout) as scope:
                        await self.stream.send_all(chunk)
                    if scope.cancelled_caught:
                        raise SlowReader(f"slow reader: could not write for {limits.stall_timeout_ms} ms")
                    self.bytes_out += len(chunk)
                    self._stalled_since = None
                    self._flush_streams()
                    self._take_h2_output()
                self._check_stall()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            self.close("connection lost")
        except SlowReader as exc:
            self.close(str(exc))

    # ------------------------------------------------------------------------------------------
    # h2 events
    # ------------------------------------------------------------------------------------------
    def _on_event(self, event: h2.events.Event, handler: ConnectionHandler, nursery: trio.Nursery) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self._on_request(event, handler)
        elif isinstance(event, h2.events.DataReceived):
            if event.flow_controlled_length:
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            self._on_data(event.stream_id, event.data, handler, nursery)
        elif isinstance(event, h2.events.StreamEnded):
            state = self._streams.get(event.stream_id)
            if state is not None and state.is_bi:
                self.close("the client ended its bi-stream")
            elif state is not None and not state.answering:
                self._finish(event.stream_id, GRPC_INVALID_ARGUMENT, "the call ended without a whole message")
        elif isinstance(event, h2.events.StreamReset):
            state = self._streams.pop(event.stream_id, None)
            if state is not None and state.is_bi:
                self.close("the client reset its bi-stream")
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.close("the client sent GOAWAY")
        elif isinstance(event, h2.events.WindowUpdated):
            self._stalled_since = None

    def _on_request(self, event: h2.events.RequestReceived, handler: ConnectionHandler) -> None:
        headers = {_text(k): _text(v) for k, v in event.headers or ()}
        path = headers.get(":path", "")
        stream_id = event.stream_id
        if path not in (UNARY_PATH, STREAM_PATH) or headers.get(":method") != "POST":
            state = self._streams[stream_id] = _Stream(False, self.limits.max_message_bytes)
            self._finish(stream_id, GRPC_UNIMPLEMENTED, f"unknown method {path[:200]}")
            return
        content_type = headers.get("content-type", "")
        if not content_type.startswith("application/grpc"):
            self._streams[stream_id] = _Stream(False, self.limits.max_message_bytes)
            self._finish(stream_id, GRPC_INVALID_ARGUMENT, "content-type must be application/grpc")
            return
        is_bi = path == STREAM_PATH
        if is_bi and self.bi_stream_id is not None:
            self._streams[stream_id] = _Stream(False, self.limits.max_message_bytes)
            self._finish(stream_id, GRPC_INVALID_ARGUMENT, "one bi-stream per connection")
            return
        state = _Stream(is_bi, self.limits.max_message_bytes)
        self._streams[stream_id] = state
        self._send_headers(stream_id, state)
        if is_bi:
            self.bi_stream_id = stream_id
            handler.stream_opened(self)

    def _on_data(self, stream_id: int, data: bytes, handler: ConnectionHandler, nursery: trio.Nursery) -> None:
        state = self._streams.get(stream_id)
        if state is None or state.trailers is not None:
            return  # a stream we already answered (or reset): its extra data is dropped
        try:
            messages = state.reader.feed(data)
        except WireError as exc:
            self._refuse(stream_id, state, exc)
            return
        for raw in messages:
            self.messages_in += 1
            try:
                payload = decode_payload(raw)
            except WireError as exc:
                self._refuse(stream_id, state, exc)
                return
            if state.is_bi:
                handler.stream_message(self, payload)
            else:
                state.reader = MessageReader(0)  # a unary call has one message: anything more is refused
                state.answering = True
                nursery.start_soon(self._answer, handler, stream_id, payload)
                return

    def _refuse(self, stream_id: int, state: _Stream, exc: WireError) -> None:
        code = GRPC_RESOURCE_EXHAUSTED if "at most" in str(exc) else GRPC_INVALID_ARGUMENT
        state.reader = MessageReader(0)
        if state.is_bi:
            self._finish(stream_id, code, str(exc))
            self.close(f"bad message on the bi-stream: {exc}")
        else:
            self._finish(stream_id, code, str(exc))

    async def _answer(self, handler: ConnectionHandler, stream_id: int, payload: Payload) -> None:
        try:
            reply = await handler.unary(self, payload)
        except Exception:  # a bug must cost one call, never the node
            log.exception("grpc: handler failed on %s from %s", payload.type, self.connection_id)
            self._finish(stream_id, GRPC_INTERNAL, "internal error")
            return
        self.send(stream_id, reply)
        self._finish(stream_id, GRPC_OK, "")

    # ------------------------------------------------------------------------------------------
    # sending (any task queues; the writer writes)
    # ------------------------------------------------------------------------------------------
    def send(self, stream_id: int, payload: Payload) -> bool:
        """Queue a message on a stream; False when the stream is gone."""
        state = self._streams.get(stream_id)
        if state is None or state.trailers is not None or self.closed:
            return False
        data = frame_message(encode_payload(payload))
        state.out += data
        self.messages_out += 1
        self._wake.set()
        return True

    def push(self, payload: Payload) -> bool:
        """Queue a server request on the bi-stream; False without one."""
        if self.bi_stream_id is None:
            return False
        return self.send(self.bi_stream_id, payload)

    def wake(self) -> None:
        """Ask the writer to look for work (e.g. pushes to pull)."""
        self._wake.set()

    def _finish(self, stream_id: int, status: int, message: str) -> None:
        state = self._streams.get(stream_id)
        if state is None or state.trailers is not None:
            return
        trailers = [("grpc-status", str(status))]
        if message:
            trailers.append(("grpc-message", _percent_encode(message[:500])))
        state.trailers = trailers
        self._wake.set()

    def _send_headers(self, stream_id: int, state: _Stream) -> None:
        self.h2.send_headers(stream_id, [(":status", "200"), ("content-type", "application/grpc")])
        state.headers_sent = True

    def _flush_streams(self) -> None:
        """Hand queued data to h2 within the flow-control windows; trailers once a stream's data is out."""
        if self.closed:
            return
        for stream_id, state in list(self._streams.items()):
            if state.is_bi and not state.out and self._pull_pushes is not None:
                window = self.h2.local_flow_control_window(stream_id) if not state.done else 0
                if window > 0:
                    for payload in self._pull_pushes(self, window):
                        state.out += frame_message(encode_payload(payload))
                        self.messages_out += 1
            try:
                self._flush_stream(stream_id, state)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                self._streams.pop(stream_id, None)  # the client reset or closed it meanwhile

    def _flush_stream(self, stream_id: int, state: _Stream) -> None:
        if not state.headers_sent:
            self._send_headers(stream_id, state)
        while state.out:
            window = min(self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size)
            if window <= 0:
                if self._stalled_since is None:
                    self._stalled_since = trio.current_time()
                return
            chunk = bytes(state.out[:window])
            del state.out[:window]
            self.h2.send_data(stream_id, chunk)
        if state.trailers is not None and not state.done:
            state.done = True
            self.h2.send_headers(stream_id, state.trailers, end_stream=True)
            self._streams.pop(stream_id, None)

    def _take_h2_output(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self._out += data

    def outbound_bytes(self) -> int:
        """Bytes waiting to go out: the socket buffer plus messages held back by flow control."""
        return len(self._out) + sum(len(state.out) for state in self._streams.values())

    def inbound_bytes(self) -> int:
        """Bytes of incomplete messages buffered, all streams together."""
        return sum(state.reader.buffered for state in self._streams.values())

    def _check_bounds(self) -> None:
        if self.outbound_bytes() > self.limits.max_outbound_bytes:
            raise SlowReader(f"slow reader: over {self.limits.max_outbound_bytes} bytes waiting to be sent")
        if self.inbound_bytes() > self.limits.max_inbound_bytes:
            raise SlowReader(f"over {self.limits.max_inbound_bytes} bytes of incomplete messages buffered")

    def _check_stall(self) -> None:
        since = self._stalled_since
        if since is not None and trio.current_time() - since > self.limits.stall_timeout_ms / 1000:
            raise SlowReader(f"slow reader: flow-control window closed for {self.limits.stall_timeout_ms} ms")


def _text(value: str | bytes) -> str:
    """A header name or value as text (h2 gives str with ``header_encoding`` set; be safe with bytes)."""
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _percent_encode(text: str) -> str:
    """``grpc-message`` is percent-encoded UTF-8 (printable ASCII except ``%`` passes as is)."""
    out = []
    for byte in text.encode("utf-8", "replace"):
        if 0x20 <= byte <= 0x7E and byte != 0x25:
            out.append(chr(byte))
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


__all__ = [
    "STREAM_PATH",
    "UNARY_PATH",
    "ConnectionHandler",
    "GrpcConnection",
    "GrpcLimits",
    "SlowReader",
]
