"""One client's HTTP/2 connection carrying Nacos gRPC: the sans-IO :class:`~cluster.grpc.http2.H2Server` on a
trio stream.

A reader task, a writer task, and one rule: **one writer at a time** (two tasks sending at once make trio
raise ``BusyResourceError``, and two writes could interleave). The reader feeds received bytes to the
framer, which calls back :meth:`GrpcConnection.on_request` and friends and appends what it must send
(SETTINGS and PING acks, WINDOW_UPDATEs) to the outbound buffer. No task per call: a unary call's handler
runs in the reader and answers at once, or, a write forwarded to its owner, from the task that delivers the
owner's reply (:meth:`GrpcConnection.answer`). The answer is written by the task that has it
(:meth:`GrpcConnection._write_now`: a non-blocking write that never awaits, so no other task can run
during it) unless the writer task is in the middle of a partial write, when the writer is woken instead;
the writer task sends what the kernel did not take at once, pushes, and anything else queued. A unary
call's answer (HEADERS, DATA, trailers) leaves in one write: its response headers wait for the answer,
and both header blocks are cached bytes.

Bounds (:class:`GrpcLimits`), so no client can make a node hold without end:

* a gRPC message larger than ``max_message_bytes`` (10 MB) is refused (``RESOURCE_EXHAUSTED``) and its
  stream reset; the bytes buffered for incomplete messages of all streams together stay under
  ``max_inbound_bytes``, else the connection is closed;
* everything waiting to go out (the socket buffer, plus messages held back by flow control) stays under
  ``max_outbound_bytes``; a client that lets it grow past that, or that lets pending output make no
  progress for ``stall_timeout_ms`` (it does not read, or never opens its flow-control window), is a slow
  reader and is disconnected. Pushes are built when they are written (:meth:`GrpcConnection.pull_pushes`),
  so a slow reader's pushes coalesce instead of piling up;
* ``max_concurrent_streams`` is announced in SETTINGS and enforced (more are refused);
* a connection that has not set itself up (``ConnectionSetupRequest`` on its bi-stream) within
  ``setup_timeout_ms`` is closed: idle or half-open sockets cannot pile up. Once set up, the connection
  table's detection watches it.

On plain TCP the reader parks in the server's lane (cluster/http/lane.py), whose one task reads and serves
every ready connection inline (:meth:`GrpcConnection.serve_parked`), a step of ready connections per
``NodeRuntime.batch``; the reader task takes over again only when the connection ends.

Received DATA is acknowledged at once (the buffers above are what is bounded), in bulk: one WINDOW_UPDATE
per window once half of it is used, so a client never stalls on our receive window.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

import trio

from cluster.grpc.http2 import H2ProtocolError, H2Server, header_block
from cluster.grpc.wire import (
    MAX_MESSAGE_BYTES,
    MessageReader,
    Payload,
    WireError,
    decode_payload,
    encode_message,
    whole_message,
)
from cluster.http.lane import KeepAliveLane

log = logging.getLogger("distro.grpc")

UNARY_PATH = "/Request/request"
STREAM_PATH = "/BiRequestStream/requestBiStream"

GRPC_OK = 0
GRPC_INVALID_ARGUMENT = 3
GRPC_RESOURCE_EXHAUSTED = 8
GRPC_UNIMPLEMENTED = 12
GRPC_INTERNAL = 13
GRPC_UNAVAILABLE = 14
_ONE_MESSAGE = "a unary call carries exactly one request message"

_READ_BYTES = 65536
_WRITE_CHUNK = 65536
_CLOSE_NOTIFY_S = 0.2
_RESPONSE_HEADERS = header_block([(":status", "200"), ("content-type", "application/grpc")])
_OK_TRAILERS = header_block([("grpc-status", "0")])


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

    def unary(self, conn: GrpcConnection, stream_id: int, payload: Payload) -> Payload | None:
        """Answer one ``/Request/request`` call: the answer now, or None and ``conn.answer(stream_id, ...)``
        later (a write waiting for its owner)."""

    def stream_message(self, conn: GrpcConnection, payload: Payload) -> None:
        """A message the client wrote on its bi-stream."""

    def stream_opened(self, conn: GrpcConnection) -> None:
        """The client opened its bi-stream."""


class SlowReader(Exception):
    """The client does not take what we send it fast enough: the connection is closed."""


class _Stream:
    __slots__ = ("answering", "done", "headers_sent", "is_bi", "out", "reader", "trailers", "whole")

    def __init__(self, is_bi: bool) -> None:
        self.is_bi = is_bi
        self.reader: MessageReader | None = None  # made when a message arrives in pieces
        self.out = bytearray()  # framed messages not yet framed as DATA (flow control)
        self.whole: bytes | None = None  # a unary call's answer (its only message, with the OK trailers)
        self.trailers: bytes | None = None  # the trailers' header block, to send once ``out`` is empty
        self.headers_sent = False
        self.done = False  # trailers sent
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
        lane: KeepAliveLane | None = None,
        step: Callable[[], AbstractContextManager[None]] | None = None,
    ) -> None:
        """``lane``: the server's lane (cluster/http/lane.py) that watches the socket while the reader waits
        (plain TCP only); ``step``: entered around the framing and serving of each read the reader does
        itself (TLS), as ``NodeRuntime.batch``: what a read's calls cause is carried out once."""
        self.stream = stream
        self.connection_id = connection_id
        self.remote = remote
        self.limits = limits
        self._out = bytearray()
        self.h2 = H2Server(
            self,
            self._out,
            max_concurrent_streams=limits.max_concurrent_streams,
            stream_window_bytes=limits.initial_window_bytes,
            connection_window_bytes=limits.max_inbound_bytes,
            max_header_list_bytes=16 * 1024,
        )
        self._streams: dict[int, _Stream] = {}
        self._handler: ConnectionHandler | None = None
        # Plain TCP is read and written through its descriptor (TLS goes through the stream's methods).
        self._fd: int | None = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else None
        self._lane = lane if self._fd is not None else None
        self._step = step or contextlib.nullcontext
        self._sent_now = 0
        self._pending = False  # work for the writer (set by wake())
        self._sending = False  # the writer is inside send_all (a partial write): nobody else may write
        self._in_receive = False  # the reader is inside the framer: answers wait until it is out
        self._ready: list[int] = []  # streams answered while the reader was inside the framer
        self._route_of: tuple[object, tuple[str, str, str]] = (None, ("", "", ""))  # last headers -> route
        self._parked: trio.lowlevel.Task | None = None  # the writer, while it waits for work
        self._stalled_since: float | None = None
        self._closed = trio.Event()
        self._ended = False  # close() was called (what ``closed`` says, read on every call)
        self._pull_pushes = pull_pushes
        self.bi_stream_id: int | None = None
        self._goaway_code = 0  # NO_ERROR, or the code of the client's protocol error
        self.registered = False  # ConnectionSetupRequest received
        self.client_version = ""
        self.app = ""  # the client's AppName label, if it sent one
        self.close_reason = ""
        self.bytes_in = 0
        self.bytes_out = 0
        self.messages_in = 0
        self.messages_out = 0

    # ------------------------------------------------------------------------------------------
    # the two tasks
    # ------------------------------------------------------------------------------------------
    async def run(self, handler: ConnectionHandler) -> None:
        """Serve the connection until the client goes, misbehaves or :meth:`close` is called."""
        self._handler = handler
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer)
                nursery.start_soon(self._reader)
                nursery.start_soon(self._watchdog)
                await self._closed.wait()
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await self._goodbye()

    async def _watchdog(self) -> None:
        """The connection's timers in one task: the setup deadline, and a look at stalled output every quarter
        of the stall timeout (the writer itself waits for work without a timeout)."""
        limits = self.limits
        setup_deadline = trio.current_time() + limits.setup_timeout_ms / 1000
        try:
            while True:
                wait_s = limits.stall_timeout_ms / 4000
                if not self.registered:
                    wait_s = min(wait_s, max(0.0, setup_deadline - trio.current_time()))
                await trio.sleep(wait_s)
                if not self.registered and trio.current_time() >= setup_deadline:
                    self.close(f"no connection setup within {limits.setup_timeout_ms} ms")
                    return
                self._check_stall()
                if self.outbound_bytes():
                    self.wake()  # held-back output is looked at again
        except SlowReader as exc:
            self.close(str(exc))

    def close(self, reason: str) -> None:
        """End the connection (from any task)."""
        if not self._ended:
            self._ended = True
            self.close_reason = reason
            self._closed.set()

    @property
    def closed(self) -> bool:
        """True once the connection is ending."""
        return self._ended

    async def _goodbye(self) -> None:
        with trio.move_on_after(1):
            try:
                self.h2.goaway(self._goaway_code)
                if self._out:
                    await self.stream.send_all(bytes(self._out[: self.limits.max_outbound_bytes]))
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError, OSError):
                pass
        # TLS: its close_notify, if the socket takes it at once; plain: nothing to wait for
        with trio.move_on_after(_CLOSE_NOTIFY_S if isinstance(self.stream, trio.SSLStream) else 0):
            await self.stream.aclose()

    async def _reader(self) -> None:
        data: bytes | bytearray
        try:
            while not self.closed:
                if self._lane is not None:  # plain TCP: the lane reads and serves while the reader waits
                    await self._lane.park(self._fd or 0, self)  # raises what serving a read raised (a bug)
                    if self.closed:
                        return
                    # handed back without closing: the lane stopped; read here (as below) from now on
                if self._fd is not None:  # plain TCP: wait, then one read (no failed attempt, no extra yield)
                    await trio.lowlevel.wait_readable(self._fd)
                    try:
                        data = os.read(self._fd, _READ_BYTES)
                    except BlockingIOError:
                        continue
                else:
                    data = await self.stream.receive_some(_READ_BYTES)
                if not data:
                    self.close("closed by the client")
                    return
                with self._step():
                    if not self._received(data):
                        return
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            self.close("connection lost")
        except SlowReader as exc:
            self.close(str(exc))

    def serve_parked(self) -> bool:
        """The lane saw the socket readable (plain TCP, the reader parked in the lane): read once and serve
        what arrived, as the reader would, inside the lane's step (every ready gRPC connection's calls in
        one ``NodeRuntime.batch``), with no wake-up of the reader task. True: stay parked; False: hand the
        connection back to its reader (it is closing). An unexpected error (a bug) is not caught here: the
        lane counts it (``distro_grpc_lane_errors_total``) and raises it in the reader, which ends this
        connection and not the lane."""
        if self._ended or self._fd is None:
            return False
        try:
            try:
                data = os.read(self._fd, _READ_BYTES)
            except BlockingIOError:
                return True
            if not data:
                self.close("closed by the client")
                return False
            return self._received(data) and not self._ended
        except OSError:
            self.close("connection lost")
        except SlowReader as exc:
            self.close(str(exc))
        return False

    def _received(self, data: bytes | bytearray) -> bool:
        """Bytes read from the client: framed, served, and the answers ready now written (False once the
        connection must end: a protocol error). Raises :class:`SlowReader` past a bound."""
        self.bytes_in += len(data)
        self._in_receive = True
        try:
            self.h2.receive(data)
        except H2ProtocolError as exc:
            self._goaway_code = exc.code
            self.close(f"HTTP/2 protocol error: {exc}")
            return False
        finally:
            self._in_receive = False
        if self._ready:  # _write_now checks the bounds once the answers are framed
            ready, self._ready = self._ready, []
            self._write_now(ready)
            return True
        self._check_bounds()
        if self._out:
            self.wake()
        return True

    async def _writer(self) -> None:
        limits = self.limits
        try:
            timeout = limits.stall_timeout_ms / 1000
            while True:
                if self._pending:
                    await trio.lowlevel.checkpoint()  # woken while busy: let the others run first
                else:
                    await self._park()
                self._pending = False
                self._flush_streams()
                self._check_bounds()
                while self._out:
                    chunk = bytes(self._out[:_WRITE_CHUNK])
                    del self._out[:_WRITE_CHUNK]
                    if self._send_now(chunk):
                        self.bytes_out += len(chunk)
                        self._stalled_since = None
                        self._flush_streams()
                        continue
                    self._sending = True
                    try:
                        with trio.move_on_after(timeout) as scope:
                            await self.stream.send_all(chunk[self._sent_now :])
                    finally:
                        self._sending = False
                    if scope.cancelled_caught:
                        raise SlowReader(f"slow reader: could not write for {limits.stall_timeout_ms} ms")
                    self.bytes_out += len(chunk)
                    self._stalled_since = None
                    self._flush_streams()
                self._check_stall()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            self.close("connection lost")
        except SlowReader as exc:
            self.close(str(exc))

    async def _park(self) -> None:
        """Wait (no Event, no cancel scope) until :meth:`wake` reschedules the writer."""
        self._parked = trio.lowlevel.current_task()

        def abort(_raise_cancel: object) -> trio.lowlevel.Abort:
            self._parked = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def _send_now(self, chunk: bytes) -> bool:
        """Plain TCP: write what the kernel takes at once; True when it took everything (the usual case: no
        trip through the scheduler). ``_sent_now`` says how much it took otherwise."""
        self._sent_now = 0
        if self._fd is None:
            return False
        try:
            self._sent_now = os.write(self._fd, chunk)
        except BlockingIOError:
            return False
        return self._sent_now == len(chunk)

    def _write_now(self, stream_ids: list[int] | tuple[int, ...]) -> None:
        """Write the answers of ``stream_ids`` (and whatever the buffer already holds) from the calling task
        instead of waking the writer (an answer from the reader or from the task that delivered the owner's
        reply): one trip through the scheduler less per call. Pushes are left to the writer (a change wakes
        it), as is data that flow control holds back.

        Still one writer at a time: trio runs one task at a time, this method never awaits, and it steps
        aside (wakes the writer instead) while the writer is inside ``send_all`` (``_sending``: a partial
        write whose rest must go first), on TLS (the stream's own methods) and once the connection ends;
        stepping aside, it still checks the bounds (a client that never reads fills the buffer while the
        writer waits). What the kernel does not take at once is left at the head of the buffer for the writer."""
        fd = self._fd
        if self._sending or fd is None or self._ended:
            if not self._ended:  # the writer frames these answers later: the bounds hold meanwhile all the same
                try:
                    self._check_bounds()
                except SlowReader as exc:
                    self.close(str(exc))
            self.wake()
            return
        out, streams = self._out, self._streams
        try:
            for stream_id in stream_ids:
                state = streams.get(stream_id)
                if state is not None:
                    self._flush_stream(stream_id, state)
            self._check_bounds()
            while out:
                size = min(len(out), _WRITE_CHUNK)
                try:  # the buffer itself when it fits one chunk (the usual answer): no copy
                    sent = os.write(fd, out if size == len(out) else out[:size])
                except BlockingIOError:
                    sent = 0
                del out[:sent]
                self.bytes_out += sent
                if sent < size:
                    self.wake()  # the writer waits until the socket takes the rest
                    return
                self._stalled_since = None
        except OSError:
            self.close("connection lost")
        except SlowReader as exc:
            self.close(str(exc))

    # ------------------------------------------------------------------------------------------
    # HTTP/2 events (H2Listener)
    # ------------------------------------------------------------------------------------------
    def on_end(self, stream_id: int) -> None:
        """The client ended its side of a stream."""
        state = self._streams.get(stream_id)
        if state is not None and state.is_bi:
            self.close("the client ended its bi-stream")
        elif state is not None and not state.answering:
            self._finish(stream_id, GRPC_INVALID_ARGUMENT, "the call ended without a whole message")

    def on_reset(self, stream_id: int) -> None:
        """The client reset a stream."""
        state = self._streams.pop(stream_id, None)
        if state is not None and state.is_bi:
            self.close("the client reset its bi-stream")

    def on_goaway(self) -> None:
        """The client is going away."""
        self.close("the client sent GOAWAY")

    def on_window(self) -> None:
        """A send window opened: held-back data may fit now."""
        self._stalled_since = None
        self.wake()

    def on_request(self, stream_id: int, headers: list[tuple[str, str]]) -> None:
        """A new call: check its method and content type; a unary call's headers wait for its answer."""
        if headers is self._route_of[0]:  # the framer's kept decoding of a repeated header block
            path, method, content_type = self._route_of[1]
        else:
            path = method = content_type = ""
            for name, value in headers:
                if name == ":path":
                    path = value
                elif name == ":method":
                    method = value
                elif name == "content-type":
                    content_type = value
            self._route_of = (headers, (path, method, content_type))
        if path not in (UNARY_PATH, STREAM_PATH) or method != "POST":
            self._streams[stream_id] = _Stream(False)
            self._finish(stream_id, GRPC_UNIMPLEMENTED, f"unknown method {path[:200]}")
            return
        if not content_type.startswith("application/grpc"):
            self._streams[stream_id] = _Stream(False)
            self._finish(stream_id, GRPC_INVALID_ARGUMENT, "content-type must be application/grpc")
            return
        is_bi = path == STREAM_PATH
        if is_bi and self.bi_stream_id is not None:
            self._streams[stream_id] = _Stream(False)
            self._finish(stream_id, GRPC_INVALID_ARGUMENT, "one bi-stream per connection")
            return
        state = _Stream(is_bi)
        self._streams[stream_id] = state
        if is_bi:  # a unary call's headers go out with its answer, in the same write
            self._send_headers(stream_id, state)
            self.bi_stream_id = stream_id
            assert self._handler is not None
            self._handler.stream_opened(self)

    def on_data(self, stream_id: int, data: bytes) -> None:
        """DATA of a call: whole gRPC messages go to the handler (no task per call: a unary call is answered
        at once or, a write waiting for its owner, when the owner's reply comes)."""
        handler = self._handler
        assert handler is not None
        state = self._streams.get(stream_id)
        if state is None or state.trailers is not None:
            return  # a stream we already answered (or reset): its extra data is dropped
        if state.answering and data:  # more after a unary call's message, its answer still to come
            self._refuse(stream_id, state, WireError(_ONE_MESSAGE), GRPC_INTERNAL)
            return
        reader = state.reader
        whole = whole_message(data, self.limits.max_message_bytes) if reader is None else None
        if whole is not None:
            messages = [whole]
        else:
            if reader is None:
                reader = state.reader = MessageReader(self.limits.max_message_bytes)
            try:
                messages = reader.feed(data)
            except WireError as exc:
                self._refuse(stream_id, state, exc)
                return
        if not state.is_bi:  # a unary call has one message: anything more ends it (INTERNAL, as gRPC servers)
            if len(messages) > 1 or (messages and reader is not None and reader.buffered):
                self._refuse(stream_id, state, WireError(_ONE_MESSAGE), GRPC_INTERNAL)
            elif messages:
                self._unary(stream_id, state, messages[0])
            return
        for raw in messages:
            payload = self._decoded(stream_id, state, raw)
            if payload is None:
                return
            handler.stream_message(self, payload)

    def on_call(self, stream_id: int, headers: list[tuple[str, str]], data: bytes) -> None:
        """A call's headers and the DATA that ends it, read together (see :meth:`H2Server.receive`): as
        :meth:`on_request`, :meth:`on_data` and :meth:`on_end` in turn; a unary call whose one message is
        the whole DATA (the usual case) goes straight to its handler."""
        self.on_request(stream_id, headers)
        state = self._streams.get(stream_id)
        if state is not None and not state.is_bi and state.trailers is None and not state.answering:
            raw = whole_message(data, self.limits.max_message_bytes)
            if raw is not None:
                self._unary(stream_id, state, raw)  # answering from now on: nothing for on_end to do
                return
        if data:
            self.on_data(stream_id, data)
        if stream_id in self.h2.streams:
            self.on_end(stream_id)

    def _decoded(self, stream_id: int, state: _Stream, raw: bytes) -> Payload | None:
        """One message of a call, counted and decoded; None when it is not a Payload (the call is refused)."""
        self.messages_in += 1
        try:
            return decode_payload(raw)
        except WireError as exc:
            self._refuse(stream_id, state, exc)
            return None

    def _unary(self, stream_id: int, state: _Stream, raw: bytes) -> None:
        """A unary call's one message: decoded and handed to the handler; answered now or later."""
        payload = self._decoded(stream_id, state, raw)
        if payload is None:
            return
        state.reader = None  # what else it held is dropped: more data is refused (``answering``)
        state.answering = True
        handler = self._handler
        assert handler is not None
        try:
            reply = handler.unary(self, stream_id, payload)
        except Exception:  # a bug must cost one call, never the node
            log.exception("grpc: handler failed on %s from %s", payload.type, self.connection_id)
            self._finish(stream_id, GRPC_INTERNAL, "internal error")
            return
        if reply is not None:
            self.answer(stream_id, reply)

    def _refuse(self, stream_id: int, state: _Stream, exc: WireError, code: int | None = None) -> None:
        """End a call for a bad message: ``code``, else ``RESOURCE_EXHAUSTED`` (too large) or
        ``INVALID_ARGUMENT``; a bad message on the bi-stream ends the connection too."""
        if code is None:
            code = GRPC_RESOURCE_EXHAUSTED if "at most" in str(exc) else GRPC_INVALID_ARGUMENT
        state.reader = None
        if state.is_bi:
            self._finish(stream_id, code, str(exc))
            self.close(f"bad message on the bi-stream: {exc}")
        else:
            self._finish(stream_id, code, str(exc))

    def answer(self, stream_id: int, reply: Payload | None) -> None:
        """The answer to a unary call (None: the handler failed, ``INTERNAL``), with the OK trailers; written
        at once from the calling task when the writer is idle (:meth:`_write_now`), else by the writer."""
        state = self._streams.get(stream_id)
        if state is None or state.trailers is not None or self._ended:
            return
        if reply is None:
            self._finish(stream_id, GRPC_INTERNAL, "internal error")
            return
        message = encode_message(reply)
        self.messages_out += 1
        if not state.headers_sent and not state.out:
            state.whole = message  # framed with its headers and trailers in one piece (_flush_stream)
        else:
            state.out += message
        state.trailers = _OK_TRAILERS
        if self._in_receive:
            self._ready.append(stream_id)  # the reader writes it once the framer is done with this read
        else:
            self._write_now((stream_id,))

    # ------------------------------------------------------------------------------------------
    # sending (any task queues; the writer writes)
    # ------------------------------------------------------------------------------------------
    def send(self, stream_id: int, payload: Payload) -> bool:
        """Queue a message on a stream; False when the stream is gone."""
        state = self._streams.get(stream_id)
        if state is None or state.trailers is not None or self.closed:
            return False
        data = encode_message(payload)
        state.out += data
        self.messages_out += 1
        self.wake()
        return True

    def push(self, payload: Payload) -> bool:
        """Queue a server request on the bi-stream; False without one."""
        if self.bi_stream_id is None:
            return False
        return self.send(self.bi_stream_id, payload)

    def wake(self) -> None:
        """Ask the writer to look for work (e.g. pushes to pull); from any task, cheap when it is awake."""
        self._pending = True
        task = self._parked
        if task is not None:
            self._parked = None
            trio.lowlevel.reschedule(task)

    def _finish(self, stream_id: int, status: int, message: str) -> None:
        state = self._streams.get(stream_id)
        if state is None or state.trailers is not None:
            return
        if status == GRPC_OK and not message:
            state.trailers = _OK_TRAILERS
        else:
            trailers = [("grpc-status", str(status))]
            if message:
                trailers.append(("grpc-message", _percent_encode(message[:500])))
            state.trailers = header_block(trailers)
        self.wake()

    def _send_headers(self, stream_id: int, state: _Stream) -> None:
        self.h2.send_headers(stream_id, _RESPONSE_HEADERS)
        state.headers_sent = True

    def _flush_streams(self) -> None:
        """Frame queued data within the flow-control windows; trailers once a stream's data is out."""
        if self.closed:
            return
        for stream_id, state in list(self._streams.items()):
            if state.is_bi and not state.out and self._pull_pushes is not None:
                window = self.h2.window(stream_id) if not state.done else 0
                if window > 0:
                    for payload in self._pull_pushes(self, window):
                        state.out += encode_message(payload)
                        self.messages_out += 1
            self._flush_stream(stream_id, state)

    def _flush_stream(self, stream_id: int, state: _Stream) -> None:
        whole = state.whole
        if whole is not None:  # a unary answer: HEADERS, DATA and trailers in one piece when it fits
            state.whole = None
            if self.h2.send_unary(stream_id, _RESPONSE_HEADERS, whole, _OK_TRAILERS):
                state.headers_sent = state.done = True
                del self._streams[stream_id]
                return
            state.out += whole
        if not state.headers_sent:
            if not state.out and state.trailers is None:
                return  # nothing to answer yet
            self._send_headers(stream_id, state)
        if state.out:
            taken = self.h2.send_data(stream_id, state.out)
            del state.out[:taken]
            if state.out:
                if self._stalled_since is None:
                    self._stalled_since = trio.current_time()
                return
        if state.trailers is not None and not state.done:
            state.done = True
            self.h2.send_headers(stream_id, state.trailers, end_stream=True)
            self._streams.pop(stream_id, None)

    def outbound_bytes(self) -> int:
        """Bytes waiting to go out: the socket buffer plus messages held back by flow control."""
        total = len(self._out)
        for state in self._streams.values():
            total += len(state.out) if state.whole is None else len(state.out) + len(state.whole)
        return total

    def inbound_bytes(self) -> int:
        """Bytes of incomplete messages buffered, all streams together."""
        total = self.h2.buffered
        for state in self._streams.values():
            if state.reader is not None:
                total += state.reader.buffered
        return total

    def _check_bounds(self) -> None:
        outbound, inbound = len(self._out), self.h2.buffered  # both sums in one pass (every read and write)
        for state in self._streams.values():
            outbound += len(state.out) if state.whole is None else len(state.out) + len(state.whole)
            if state.reader is not None:
                inbound += state.reader.buffered
        if outbound > self.limits.max_outbound_bytes:
            raise SlowReader(f"slow reader: over {self.limits.max_outbound_bytes} bytes waiting to be sent")
        if inbound > self.limits.max_inbound_bytes:
            raise SlowReader(f"over {self.limits.max_inbound_bytes} bytes of incomplete messages buffered")

    def _check_stall(self) -> None:
        since = self._stalled_since
        if since is not None and trio.current_time() - since > self.limits.stall_timeout_ms / 1000:
            raise SlowReader(f"slow reader: flow-control window closed for {self.limits.stall_timeout_ms} ms")


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
