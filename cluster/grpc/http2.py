"""The server side of HTTP/2 (RFC 9113) that gRPC with prior knowledge needs, sans-IO and lean.

:class:`H2Server` takes the bytes a client sends (:meth:`H2Server.receive`) and calls back an
:class:`H2Listener` for what matters to gRPC (a request's headers, its DATA, its end, a reset, GOAWAY, a
window opening); what it has to send goes to ``out`` (a bytearray the caller drains). It replaces the
generic ``h2`` state machine on the hot path: a unary call costs a few frame headers parsed with ``struct``,
one HPACK decode and three frames written from cached bytes.

What it does, and what it refuses:

* the client preface, then SETTINGS first; SETTINGS are applied and acknowledged (``INITIAL_WINDOW_SIZE``
  moves every open stream's send window, ``MAX_FRAME_SIZE`` caps our DATA frames);
* HEADERS (+ CONTINUATION, bounded in bytes) opens a stream: odd ids, each above the last, at most
  ``max_concurrent_streams`` open (more get ``RST_STREAM REFUSED_STREAM``); the block is HPACK-decoded
  with the ``hpack`` package even for a refused stream, so the decoder's table stays in step (a repeated
  block of index references only is decoded once, see :meth:`H2Server._decode`);
* DATA is counted against both receive windows (more than announced is a ``FLOW_CONTROL_ERROR``) and
  acknowledged in bulk: one WINDOW_UPDATE per window once half of it is used, not one per frame;
* our DATA never exceeds the client's connection and stream windows (:meth:`H2Server.window`); WINDOW_UPDATE
  opens them (overflow past 2^31-1 is an error);
* PING is answered, PRIORITY ignored, PUSH_PROMISE from a client is an error, unknown frame types are
  ignored; frames for streams that ended are dropped (DATA still counts against the connection window);
  a stream we answered before the client finished sending stays half-closed until it does, its DATA
  acknowledged and dropped (it still counts against ``max_concurrent_streams``);
* our header blocks use no dynamic table (the first one shrinks it to 0), so the response headers of
  every unary call are the same cached bytes.

Connection errors raise :class:`H2ProtocolError`; the caller sends :meth:`H2Server.goaway` and closes.
"""

from __future__ import annotations

import struct
from typing import Protocol, cast

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
FLAG_END_STREAM = 0x1
FLAG_ACK = 0x1
FLAG_END_HEADERS = 0x4
FLAG_PADDED = 0x8
FLAG_PRIORITY = 0x20

NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
FLOW_CONTROL_ERROR = 0x3
STREAM_CLOSED = 0x5
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
COMPRESSION_ERROR = 0x9
ENHANCE_YOUR_CALM = 0xB

SETTINGS_HEADER_TABLE_SIZE = 0x1
SETTINGS_ENABLE_PUSH = 0x2
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5
SETTINGS_MAX_HEADER_LIST_SIZE = 0x6

MAX_WINDOW = 2**31 - 1
DEFAULT_WINDOW = 65_535
DEFAULT_FRAME_BYTES = 16_384  # what we announce (the default): a longer frame from the client is an error
MAX_HEADER_BLOCK_BYTES = 64 * 1024  # one request's HEADERS + CONTINUATION, compressed

_HEAD = struct.Struct(">BHBBL")  # length (24 bits as 8 + 16), type, flags, stream id
_U32 = struct.Struct(">L")
_SETTING = struct.Struct(">HL")


class H2ProtocolError(Exception):
    """The client broke HTTP/2: the connection ends with GOAWAY ``code``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class H2Listener(Protocol):
    """What :class:`H2Server` reports to the connection that owns it."""

    def on_request(self, stream_id: int, headers: list[tuple[str, str]]) -> None:
        """A new stream's request headers."""

    def on_data(self, stream_id: int, data: bytes) -> None:
        """DATA on an open stream (already acknowledged for flow control)."""

    def on_call(self, stream_id: int, headers: list[tuple[str, str]], data: bytes) -> None:
        """A new stream's request headers and one DATA frame that ends it, read together (the usual unary
        call): what :meth:`on_request`, :meth:`on_data` (when ``data`` is not empty) and :meth:`on_end`
        would say in turn, in one call."""

    def on_end(self, stream_id: int) -> None:
        """The client ended its side of the stream (END_STREAM)."""

    def on_reset(self, stream_id: int) -> None:
        """The client reset the stream."""

    def on_goaway(self) -> None:
        """The client sent GOAWAY."""

    def on_window(self) -> None:
        """A send window opened: held-back data may go out."""


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One HTTP/2 frame's bytes."""
    length = len(payload)
    return _HEAD.pack(length >> 16, length & 0xFFFF, kind, flags, stream_id) + payload


def _hpack_int(value: int, prefix_bits: int, first: int) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def header_block(headers: list[tuple[str, str]]) -> bytes:
    """HPACK bytes of ``headers`` that touch no dynamic table (literal, not indexed, not Huffman-coded):
    the same headers always give the same bytes, whatever was sent before."""
    out = bytearray()
    for name, value in headers:
        if name == ":status" and value == "200":
            out.append(0x88)  # static table entry 8
            continue
        raw_name, raw_value = name.encode(), value.encode()
        out += b"\x00" + _hpack_int(len(raw_name), 7, 0) + raw_name + _hpack_int(len(raw_value), 7, 0) + raw_value
    return bytes(out)


_TABLE_SIZE_ZERO = b"\x20"  # dynamic table size update to 0, at the start of our first header block


class _StreamFlow:
    __slots__ = ("local_closed", "recv_used", "remote_closed", "send_window")

    def __init__(self, send_window: int) -> None:
        self.send_window = send_window
        self.recv_used = 0  # bytes received since the last WINDOW_UPDATE for this stream
        self.remote_closed = False
        self.local_closed = False  # we ended it; the client is still sending (its DATA is acknowledged, dropped)


class H2Server:
    """One server-side HTTP/2 connection's framing, flow control and stream states (no IO)."""

    def __init__(
        self,
        listener: H2Listener,
        out: bytearray,
        *,
        max_concurrent_streams: int,
        stream_window_bytes: int,
        connection_window_bytes: int,
        max_header_list_bytes: int,
    ) -> None:
        self.listener = listener
        self.out = out
        self.max_concurrent_streams = max_concurrent_streams
        self.stream_window_bytes = stream_window_bytes
        self.connection_window_bytes = max(DEFAULT_WINDOW, min(MAX_WINDOW, connection_window_bytes))
        self.streams: dict[int, _StreamFlow] = {}
        self.last_stream_id = 0
        self.send_window = DEFAULT_WINDOW  # the client's connection window for our DATA
        self.peer_stream_window = DEFAULT_WINDOW  # the client's INITIAL_WINDOW_SIZE
        self.peer_max_frame_bytes = DEFAULT_FRAME_BYTES
        self.goaway_received = False
        self._recv_used = 0  # connection-level bytes received since our last WINDOW_UPDATE
        self._buf = bytearray()
        self._preface_done = False
        self._settings_seen = False
        self._first_block = True
        self._pending_headers: tuple[int, int, bytearray] | None = None  # (stream id, flags, block so far)
        self._decoder = hpack.Decoder(max_header_list_size=max_header_list_bytes)
        self._indexed_block: bytes | None = None  # the last indexed-only block decoded, and its headers
        self._indexed_headers: list[tuple[str, str]] = []
        self.out += frame(SETTINGS, 0, 0, b"".join(_SETTING.pack(k, v) for k, v in (
            (SETTINGS_MAX_CONCURRENT_STREAMS, max_concurrent_streams),
            (SETTINGS_INITIAL_WINDOW_SIZE, stream_window_bytes),
            (SETTINGS_MAX_HEADER_LIST_SIZE, max_header_list_bytes),
        )))
        if self.connection_window_bytes > DEFAULT_WINDOW:
            self.out += frame(WINDOW_UPDATE, 0, 0, _U32.pack(self.connection_window_bytes - DEFAULT_WINDOW))

    # ------------------------------------------------------------------------------------------
    # receiving
    # ------------------------------------------------------------------------------------------
    @property
    def buffered(self) -> int:
        """Received bytes not yet a whole frame (at most one frame's worth)."""
        return len(self._buf)

    def receive(self, data: bytes | bytearray) -> None:
        """Process received bytes; raises :class:`H2ProtocolError` on a connection error.

        Bytes that arrive with nothing left over from the last read (the usual case) are framed where they
        are, without going through the buffer (which keeps only an incomplete frame's bytes). A new
        stream's HEADERS followed by one DATA frame that ends it, both whole in the read, is taken as one
        call (:meth:`_call`) when nothing about it needs the general path."""
        buf = self._buf
        src: bytes | bytearray
        if buf or not self._preface_done or type(data) is not bytes:
            buf += data
            if not self._preface_done:
                if len(buf) < len(PREFACE):
                    if not PREFACE.startswith(bytes(buf)):
                        raise H2ProtocolError(PROTOCOL_ERROR, "not the HTTP/2 client preface")
                    return
                if buf[: len(PREFACE)] != PREFACE:
                    raise H2ProtocolError(PROTOCOL_ERROR, "not the HTTP/2 client preface")
                del buf[: len(PREFACE)]
                self._preface_done = True
            src = buf
        else:
            src = data
        pos, end = 0, len(src)
        try:
            while end - pos >= 9:
                high, low, kind, flags, stream_id = _HEAD.unpack_from(src, pos)
                length = (high << 16) | low
                if length > DEFAULT_FRAME_BYTES:
                    raise H2ProtocolError(FRAME_SIZE_ERROR, f"frame of {length} bytes: at most {DEFAULT_FRAME_BYTES}")
                stop = pos + 9 + length
                if stop > end:
                    break
                if kind == HEADERS and flags == FLAG_END_HEADERS and end - stop >= 9:
                    high, low, kind2, flags2, stream2 = _HEAD.unpack_from(src, stop)
                    stop2 = stop + 9 + ((high << 16) | low)
                    if (kind2 == DATA and flags2 == FLAG_END_STREAM and stream2 == stream_id and stop2 <= end
                            and stop2 - stop - 9 <= DEFAULT_FRAME_BYTES
                            and self._call(stream_id, bytes(src[pos + 9 : stop]), bytes(src[stop + 9 : stop2]))):
                        pos = stop2
                        continue
                payload = bytes(src[pos + 9 : stop])
                pos = stop
                self._frame(kind, flags, stream_id & 0x7FFFFFFF, payload)
        finally:
            if src is buf:
                del buf[:pos]
            elif pos < end:
                buf += src[pos:]

    def _call(self, stream_id: int, block: bytes, data: bytes) -> bool:
        """A new stream's HEADERS (END_HEADERS only, no padding or priority) and the DATA frame that ends it,
        handled as :meth:`_frame` would handle the two in turn, in one step; False (nothing done) when
        anything about them needs the general path: an error to raise, a stream to refuse, a header block
        still open, the first SETTINGS not seen yet, DATA beyond a window."""
        size = len(data)
        if (not self._settings_seen or self._pending_headers is not None or stream_id <= self.last_stream_id
                or not stream_id & 1 or stream_id > 0x7FFFFFFF or self.goaway_received
                or len(self.streams) >= self.max_concurrent_streams or size > self.stream_window_bytes
                or self._recv_used + size > self.connection_window_bytes):
            return False
        headers = self._decode(block)
        self.last_stream_id = stream_id
        stream = self.streams[stream_id] = _StreamFlow(self.peer_stream_window)
        self._recv_used += size
        if self._recv_used * 2 >= self.connection_window_bytes:
            self.out += frame(WINDOW_UPDATE, 0, 0, _U32.pack(self._recv_used))
            self._recv_used = 0
        stream.recv_used = size
        stream.remote_closed = True
        self.listener.on_call(stream_id, headers, data)
        return True

    def _frame(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if not self._settings_seen and kind != SETTINGS:
            raise H2ProtocolError(PROTOCOL_ERROR, "the client's first frame must be SETTINGS")
        if self._pending_headers is not None and kind != CONTINUATION:
            raise H2ProtocolError(PROTOCOL_ERROR, "a header block was interrupted")
        if kind == DATA:
            self._on_data(flags, stream_id, payload)
        elif kind == HEADERS:
            self._on_headers(flags, stream_id, payload)
        elif kind == CONTINUATION:
            self._on_continuation(flags, stream_id, payload)
        elif kind == WINDOW_UPDATE:
            self._on_window_update(stream_id, payload)
        elif kind == SETTINGS:
            self._on_settings(flags, stream_id, payload)
        elif kind == PING:
            if stream_id != 0 or len(payload) != 8:
                raise H2ProtocolError(FRAME_SIZE_ERROR if len(payload) != 8 else PROTOCOL_ERROR, "bad PING")
            if not flags & FLAG_ACK:
                self.out += frame(PING, FLAG_ACK, 0, payload)
        elif kind == RST_STREAM:
            if stream_id == 0 or len(payload) != 4:
                raise H2ProtocolError(PROTOCOL_ERROR, "bad RST_STREAM")
            if stream_id > self.last_stream_id:
                raise H2ProtocolError(PROTOCOL_ERROR, "RST_STREAM on an idle stream")
            if self.streams.pop(stream_id, None) is not None:
                self.listener.on_reset(stream_id)
        elif kind == PRIORITY:
            if stream_id == 0 or len(payload) != 5:
                raise H2ProtocolError(PROTOCOL_ERROR, "bad PRIORITY")
        elif kind == GOAWAY:
            if stream_id != 0 or len(payload) < 8:
                raise H2ProtocolError(PROTOCOL_ERROR, "bad GOAWAY")
            self.goaway_received = True
            self.listener.on_goaway()
        elif kind == PUSH_PROMISE:
            raise H2ProtocolError(PROTOCOL_ERROR, "a client cannot push")
        # unknown frame types are ignored (RFC 9113, 5.5)

    @staticmethod
    def _unpad(flags: int, payload: bytes) -> bytes:
        if not flags & FLAG_PADDED:
            return payload
        if not payload or payload[0] >= len(payload):
            raise H2ProtocolError(PROTOCOL_ERROR, "padding longer than the frame")
        return payload[1 : len(payload) - payload[0]]

    def _on_data(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0:
            raise H2ProtocolError(PROTOCOL_ERROR, "DATA on stream 0")
        if stream_id > self.last_stream_id:
            raise H2ProtocolError(PROTOCOL_ERROR, "DATA on an idle stream")
        size = len(payload)
        self._recv_used += size
        if self._recv_used > self.connection_window_bytes:
            raise H2ProtocolError(FLOW_CONTROL_ERROR, "more DATA than the connection window")
        if self._recv_used * 2 >= self.connection_window_bytes:
            self.out += frame(WINDOW_UPDATE, 0, 0, _U32.pack(self._recv_used))
            self._recv_used = 0
        stream = self.streams.get(stream_id)
        if stream is None or stream.remote_closed:
            return  # a stream that ended or was reset: its bytes are counted above and dropped
        stream.recv_used += size
        if stream.recv_used > self.stream_window_bytes:
            raise H2ProtocolError(FLOW_CONTROL_ERROR, "more DATA than the stream window")
        end = bool(flags & FLAG_END_STREAM)
        if not end and stream.recv_used * 2 >= self.stream_window_bytes:
            self.out += frame(WINDOW_UPDATE, 0, stream_id, _U32.pack(stream.recv_used))
            stream.recv_used = 0
        if stream.local_closed:
            if end:
                del self.streams[stream_id]
            return
        data = self._unpad(flags, payload)
        if data:
            self.listener.on_data(stream_id, data)
        if end and stream_id in self.streams:
            stream.remote_closed = True
            self.listener.on_end(stream_id)

    def _on_headers(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0:
            raise H2ProtocolError(PROTOCOL_ERROR, "HEADERS on stream 0")
        block = self._unpad(flags, payload)
        if flags & FLAG_PRIORITY:
            if len(block) < 5:
                raise H2ProtocolError(FRAME_SIZE_ERROR, "HEADERS too short for its priority")
            block = block[5:]
        if flags & FLAG_END_HEADERS:
            self._headers_done(stream_id, flags, block)
        else:
            self._pending_headers = (stream_id, flags, bytearray(block))

    def _on_continuation(self, flags: int, stream_id: int, payload: bytes) -> None:
        pending = self._pending_headers
        if pending is None or pending[0] != stream_id:
            raise H2ProtocolError(PROTOCOL_ERROR, "CONTINUATION without its HEADERS")
        block = pending[2]
        block += payload
        if len(block) > MAX_HEADER_BLOCK_BYTES:
            raise H2ProtocolError(ENHANCE_YOUR_CALM, f"header block over {MAX_HEADER_BLOCK_BYTES} bytes")
        if flags & FLAG_END_HEADERS:
            self._pending_headers = None
            self._headers_done(stream_id, pending[1], bytes(block))

    def _headers_done(self, stream_id: int, flags: int, block: bytes) -> None:
        headers = self._decode(block)
        end = bool(flags & FLAG_END_STREAM)
        if stream_id <= self.last_stream_id:
            stream = self.streams.get(stream_id)
            if stream is None:
                return  # trailers on a stream that ended: decoded (the table stays in step), dropped
            if not end or stream.remote_closed:
                raise H2ProtocolError(PROTOCOL_ERROR, "a second header block without END_STREAM")
            if stream.local_closed:
                del self.streams[stream_id]
                return
            stream.remote_closed = True
            self.listener.on_end(stream_id)
            return
        if stream_id % 2 == 0:
            raise H2ProtocolError(PROTOCOL_ERROR, "a client stream id must be odd")
        self.last_stream_id = stream_id
        if self.goaway_received or len(self.streams) >= self.max_concurrent_streams:
            self.out += frame(RST_STREAM, 0, stream_id, _U32.pack(REFUSED_STREAM))
            return
        stream = self.streams[stream_id] = _StreamFlow(self.peer_stream_window)
        self.listener.on_request(stream_id, headers)
        if end and stream_id in self.streams:
            stream.remote_closed = True
            self.listener.on_end(stream_id)

    def _decode(self, block: bytes) -> list[tuple[str, str]]:
        """HPACK-decode a header block. A gRPC client repeats its request headers as the same one-byte index
        references call after call; such a block (every byte has its high bit set: indexed fields only)
        does not change the dynamic table, so its decoding is kept and reused until a block that may change
        the table arrives."""
        if block == self._indexed_block:
            return self._indexed_headers
        try:
            headers = cast("list[tuple[str, str]]", self._decoder.decode(block))  # str with raw=False
        except (hpack.HPACKError, UnicodeDecodeError, IndexError, ValueError) as exc:
            raise H2ProtocolError(COMPRESSION_ERROR, f"bad header block: {type(exc).__name__}") from None
        if block and all(byte & 0x80 for byte in block):
            self._indexed_block, self._indexed_headers = block, headers
        else:
            self._indexed_block = None
        return headers

    def _on_window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise H2ProtocolError(FRAME_SIZE_ERROR, "WINDOW_UPDATE of the wrong size")
        increment = _U32.unpack(payload)[0] & 0x7FFFFFFF
        if stream_id == 0:
            if increment == 0:
                raise H2ProtocolError(PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self.send_window += increment
            if self.send_window > MAX_WINDOW:
                raise H2ProtocolError(FLOW_CONTROL_ERROR, "connection window over 2^31-1")
        else:
            if stream_id > self.last_stream_id:
                raise H2ProtocolError(PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream")
            stream = self.streams.get(stream_id)
            if stream is None or stream.local_closed:
                return
            if increment == 0 or stream.send_window + increment > MAX_WINDOW:
                self.reset(stream_id, PROTOCOL_ERROR if increment == 0 else FLOW_CONTROL_ERROR)
                self.listener.on_reset(stream_id)
                return
            stream.send_window += increment
        self.listener.on_window()

    def _on_settings(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id != 0:
            raise H2ProtocolError(PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & FLAG_ACK:
            if payload:
                raise H2ProtocolError(FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            return
        if len(payload) % 6:
            raise H2ProtocolError(FRAME_SIZE_ERROR, "SETTINGS of the wrong size")
        self._settings_seen = True
        opened = False
        for pos in range(0, len(payload), 6):
            key, value = _SETTING.unpack_from(payload, pos)
            if key == SETTINGS_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise H2ProtocolError(FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE over 2^31-1")
                delta = value - self.peer_stream_window
                self.peer_stream_window = value
                for stream in self.streams.values():
                    stream.send_window += delta
                    if stream.send_window > MAX_WINDOW:
                        raise H2ProtocolError(FLOW_CONTROL_ERROR, "a stream window over 2^31-1")
                opened = opened or delta > 0
            elif key == SETTINGS_MAX_FRAME_SIZE:
                if not DEFAULT_FRAME_BYTES <= value <= 2**24 - 1:
                    raise H2ProtocolError(PROTOCOL_ERROR, "MAX_FRAME_SIZE out of range")
                self.peer_max_frame_bytes = value
            elif key == SETTINGS_ENABLE_PUSH and value > 1:
                raise H2ProtocolError(PROTOCOL_ERROR, "ENABLE_PUSH must be 0 or 1")
            # HEADER_TABLE_SIZE: our blocks use no dynamic table; the rest concern us as a client only
        self.out += frame(SETTINGS, FLAG_ACK, 0)
        if opened:
            self.listener.on_window()

    # ------------------------------------------------------------------------------------------
    # sending (the caller moves ``out`` to the socket)
    # ------------------------------------------------------------------------------------------
    def window(self, stream_id: int) -> int:
        """Bytes of DATA the client lets us send on ``stream_id`` now (0 for a stream that is gone)."""
        stream = self.streams.get(stream_id)
        if stream is None or stream.local_closed:
            return 0
        return max(0, min(self.send_window, stream.send_window))

    def send_headers(self, stream_id: int, block: bytes, end_stream: bool = False) -> None:
        """A HEADERS frame carrying ``block`` (from :func:`header_block`; it fits one frame)."""
        if self._first_block:
            self._first_block = False
            block = _TABLE_SIZE_ZERO + block
        self.out += frame(HEADERS, FLAG_END_HEADERS | (FLAG_END_STREAM if end_stream else 0), stream_id, block)
        if end_stream:
            self._ended(stream_id)

    def send_data(self, stream_id: int, data: bytes | bytearray) -> int:
        """Frame as much of ``data`` as the windows allow; returns the bytes taken."""
        stream = self.streams.get(stream_id)
        if stream is None or stream.local_closed:
            return 0
        allowed = min(len(data), self.send_window, stream.send_window)
        if allowed <= 0:
            return 0
        step = self.peer_max_frame_bytes
        out = self.out
        for start in range(0, allowed, step):
            chunk = data[start : min(allowed, start + step)]
            out += frame(DATA, 0, stream_id, bytes(chunk))
        self.send_window -= allowed
        stream.send_window -= allowed
        return allowed

    def send_unary(self, stream_id: int, headers: bytes, message: bytes, trailers: bytes) -> bool:
        """A whole unary answer at once: HEADERS (``headers``), one DATA frame (``message``) and the
        trailers' HEADERS with END_STREAM, appended to ``out`` in one piece. False (nothing sent) when the
        message does not fit one frame within the windows: the caller then takes the general path
        (:meth:`send_headers`, :meth:`send_data`)."""
        stream = self.streams.get(stream_id)
        size = len(message)
        if (stream is None or stream.local_closed or size > self.send_window or size > stream.send_window
                or size > self.peer_max_frame_bytes):
            return False
        if self._first_block:
            self._first_block = False
            headers = _TABLE_SIZE_ZERO + headers
        self.out += b"".join((
            _HEAD.pack(0, len(headers), HEADERS, FLAG_END_HEADERS, stream_id), headers,
            _HEAD.pack(size >> 16, size & 0xFFFF, DATA, 0, stream_id), message,
            _HEAD.pack(0, len(trailers), HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, stream_id), trailers,
        ))
        self.send_window -= size
        stream.send_window -= size
        if stream.remote_closed:
            del self.streams[stream_id]
        else:  # half-closed (local): see _ended
            stream.local_closed = True
        return True

    def _ended(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        if stream.remote_closed:
            del self.streams[stream_id]
        else:  # half-closed (local): the client may finish sending; it still holds one of its streams
            stream.local_closed = True

    def reset(self, stream_id: int, code: int) -> None:
        """Reset a stream (RST_STREAM ``code``) and forget it."""
        if self.streams.pop(stream_id, None) is not None:
            self.out += frame(RST_STREAM, 0, stream_id, _U32.pack(code))

    def goaway(self, code: int = NO_ERROR, message: str = "") -> None:
        """GOAWAY with the last stream we saw; nothing new is accepted after it."""
        self.out += frame(GOAWAY, 0, 0, _U32.pack(self.last_stream_id) + _U32.pack(code) + message.encode()[:256])


__all__ = [
    "PREFACE",
    "H2Listener",
    "H2ProtocolError",
    "H2Server",
    "frame",
    "header_block",
]
