"""A small, hardened HTTP/1.1 server on trio with a hand-written parser.

One trio task per connection, no task per request. Sockets are plain non-blocking stdlib sockets driven by
``trio.lowlevel.wait_readable``/``wait_writable``: a ``send`` that fits in the kernel buffer (the usual case)
costs no trip through the scheduler. Every timeout is a trio cancel-scope deadline measured with
``trio.current_time()``, so ``MockClock``/``autojump_clock`` drive them in tests.

See ``docs/http-server.md`` for the behaviour in detail and the benchmark figures.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import re
import socket
import ssl
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from http import HTTPStatus

import trio
from trio.lowlevel import checkpoint, notify_closing, wait_readable, wait_writable

from cluster.http.lane import KeepAliveLane
from cluster.http.params import merge_params, percent_decode
from cluster.http.tlssocket import TlsSocket
from cluster.node.listeners import open_listeners

__all__ = [
    "LISTEN_BACKLOG",
    "Deferred",
    "FastHandler",
    "Handler",
    "HttpLimits",
    "HttpStats",
    "Request",
    "Response",
    "serve_http",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Bounds on what one client can make the server hold."""

    max_request_line_bytes: int = 8192
    max_header_bytes: int = 16384  # whole header block (without the request line)
    max_header_count: int = 100
    max_body_bytes: int = 1_048_576  # larger Content-Length (or chunked total) -> 413 and close
    max_connections: int = 2048  # beyond: shed the oldest idle connection, else answer 503 and close
    max_connections_per_ip: int = 512  # from one client address; beyond: 503 and close
    idle_timeout_ms: int = 60_000  # keep-alive connection with no new request -> close (silently)
    request_timeout_ms: int = 10_000  # head+body not complete within this -> 408 and close (slowloris)
    max_requests_per_connection: int = 100_000


@dataclass
class HttpStats:
    """Counters the node exports on /metrics (plain ints, updated by the server as it goes)."""

    connections_open: int = 0
    connections_total: int = 0  # connections served (rejected ones are not counted here)
    requests_total: int = 0  # requests handed to the handler
    inline_requests_total: int = 0  # of which answered in the keep-alive lane by the fast handler
    responses_by_status: dict[int, int] = field(default_factory=dict)  # every response written, errors too
    rejected_connections_total: int = 0  # connections closed at once because of max_connections
    rejected_per_ip_total: int = 0  # ... because of max_connections_per_ip
    idle_evicted_total: int = 0  # idle keep-alive connections closed to make room for a new one
    shed_at_fd_limit_total: int = 0  # connections answered 503 because the process ran out of descriptors
    lane_errors_total: int = 0  # unexpected errors in the keep-alive lane (a bug; logged, cluster/http/lane.py)


@dataclass(slots=True)
class Request:
    """One parsed request; the body is always complete when the handler sees it."""

    method: str  # as sent (a token; clients send it upper case)
    path: str  # percent-decoded (UTF-8, errors replaced) path without the query
    query: str  # raw query string, without '?'
    headers: dict[str, str]  # lower-cased names; latin-1 values; repeated headers joined with ", "
    body: bytes
    remote: tuple[str, int]
    _params: dict[str, str] | None = field(default=None, init=False, repr=False, compare=False)
    _connection: _Connection | None = field(default=None, init=False, repr=False, compare=False)

    def params(self) -> dict[str, str]:
        """Query parameters merged with a form body; first occurrence wins, query first (cached).

        See :mod:`cluster.http.params` for the exact rules.
        """
        p = self._params
        if p is None:
            p = self._params = merge_params(self.query, self.body, self.headers.get("content-type"))
        return p

    async def client_gone(self) -> None:
        """Return once the client has closed or reset its connection while the handler runs.

        For handlers that wait (long polls): run it beside the wait and stop waiting when it returns. It
        never returns when that cannot be told: a request built outside the server, or a client that sent
        more bytes (a pipelined request) instead of closing.
        """
        if self._connection is None:
            await trio.sleep_forever()
        else:
            await self._connection.wait_peer_gone()


_JSON_CT = "application/json;charset=UTF-8"
_TEXT_CT = "text/plain;charset=UTF-8"
_JSON_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


@dataclass(slots=True)
class Response:
    """What a handler returns. ``Content-Length``/``Connection`` are added by the server.

    A body made of pieces (a big list's kept runs of hosts) may be given as ``parts`` instead of ``body``: the
    body is their concatenation, sent with scatter-gather writes (``sendmsg``) without joining them first.
    """

    status: int
    body: bytes = b""
    content_type: str = _JSON_CT
    headers: list[tuple[str, str]] | None = None  # extra headers
    close: bool = False  # force Connection: close after this response
    parts: tuple[bytes, ...] | None = None  # the body in pieces, in order (then ``body`` is not used)
    # The bytes of a plain keep-alive HTTP/1.1 answer, once rendered: a response a handler hands out again and
    # again (cluster/api/memo.py) is rendered once. Responses are never modified once returned.
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)

    @staticmethod
    def text(status: int, text: str) -> Response:
        """A ``text/plain;charset=UTF-8`` response."""
        return Response(status, text.encode("utf-8", "replace"), _TEXT_CT)

    @staticmethod
    def json(obj: object, status: int = 200) -> Response:
        """A compact JSON response (``separators=(",", ":")``, ``ensure_ascii=False``)."""
        return Response(status, _JSON_ENCODER.encode(obj).encode("utf-8", "replace"), _JSON_CT)


class Deferred:
    """A fast handler's promise of a response that it cannot give yet (a write waiting for its owner's
    answer): the server sends it when :meth:`resolve` is called, from whichever task knows it, with the
    connection still parked in the keep-alive lane (no task wakes for it). Resolve it exactly once, with a
    plain response (as a fast handler's); later calls are ignored."""

    __slots__ = ("_on_ready", "response")

    def __init__(self) -> None:
        self.response: Response | None = None
        self._on_ready: Callable[[Response], None] | None = None

    def resolve(self, response: Response) -> None:
        """The response is known: send it (now, or as soon as the server takes the promise)."""
        if self.response is not None:
            return
        self.response = response
        on_ready = self._on_ready
        if on_ready is not None:
            self._on_ready = None
            on_ready(response)


Handler = Callable[[Request], Awaitable[Response]]
FastHandler = Callable[[Request], "Response | Deferred | None"]
"""Answers a keep-alive request at once, without waiting for anything, or promises its answer for later
(:class:`Deferred`), or None (the handler answers it). It runs inline in the keep-alive lane
(cluster/http/lane.py): it must not block, and it sees only requests without a body or with a
``Content-Length`` body that arrived whole (not chunked, no ``Expect``). A response it gives must be a plain
one (no extra headers, not ``close``)."""


# --------------------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------------------


class _HttpError(Exception):
    """A request the server answers itself, then closes the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _PeerGone(Exception):
    """The client closed its side in the middle of a request."""


_TOKEN_CHARS = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_TARGET_CHARS = bytes(range(0x21, 0x7F))  # visible ASCII
# Bytes allowed in the header block: field values may hold HTAB, SP, VCHAR and obs-text; CR/LF only as
# line separators (checked separately).
_FIELD_BLOCK_CHARS = b"\t\r\n" + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))
_CHUNK_SIZE_RE = re.compile(rb"([0-9A-Fa-f]{1,15})[ \t]*(?:;[\t\x20-\x7e\x80-\xff]*)?")

# Validated names seen before -> decoded (lower-cased) names. Only names that passed validation get in, and
# only short ones: 512 header names and 64 methods of at most 64 bytes, about 100 KB in all.
_CACHED_NAME_BYTES = 64
_name_cache: dict[bytes, str] = {}
_method_cache: dict[bytes, str] = {}


def _check_partial_head(buf: bytearray, limits: HttpLimits) -> None:
    """Raise 414/431 when an incomplete head is already longer than the limits allow."""
    line_end = buf.find(b"\r\n", 0, limits.max_request_line_bytes + 2)
    if line_end < 0:
        if len(buf) > limits.max_request_line_bytes + 1:
            raise _HttpError(414, "request line too long")
        return
    if len(buf) - line_end - 2 > limits.max_header_bytes + 3:  # block + at most 3 bytes of the CRLFCRLF
        raise _HttpError(431, "header block too large")


def _parse_head(head: bytes, limits: HttpLimits) -> tuple[str, str, str, bool, dict[str, str]]:
    """Parse a request head (no trailing CRLFCRLF): method, path, query, is_http11, headers.

    Strict: exactly ``METHOD SP target SP HTTP/1.x``, a target of visible ASCII, no obs-fold, no
    whitespace before a colon, no control characters (bare CR/LF, NUL, ...) anywhere.
    """
    line_end = head.find(b"\r\n")
    if line_end < 0:
        line_end = len(head)
    if line_end > limits.max_request_line_bytes:
        raise _HttpError(414, "request line too long")
    if len(head) - line_end - 2 > limits.max_header_bytes:
        raise _HttpError(431, "header block too large")
    parts = head[:line_end].split(b" ")
    if len(parts) != 3:
        raise _HttpError(400, "malformed request line")
    method_b, target_b, version = parts
    if version == b"HTTP/1.1":
        http11 = True
    elif version == b"HTTP/1.0":
        http11 = False
    else:
        raise _HttpError(
            400, "unsupported HTTP version" if version.startswith(b"HTTP/") else "malformed request line"
        )
    method = _method_cache.get(method_b)
    if method is None:
        if not method_b or method_b.translate(None, _TOKEN_CHARS):
            raise _HttpError(400, "malformed request method")
        method = method_b.decode("ascii")
        if len(_method_cache) < 64 and len(method_b) <= _CACHED_NAME_BYTES:
            _method_cache[method_b] = method
    if not target_b or target_b.translate(None, _TARGET_CHARS):
        raise _HttpError(400, "malformed request target")
    headers: dict[str, str] = {}
    if line_end < len(head):
        block = head[line_end + 2 :]
        if block.translate(None, _FIELD_BLOCK_CHARS):
            raise _HttpError(400, "invalid character in header block")
        lines = block.split(b"\r\n")
        if len(lines) > limits.max_header_count:
            raise _HttpError(431, "too many header fields")
        if block.count(b"\r") >= len(lines) or block.count(b"\n") >= len(lines):
            raise _HttpError(400, "bare CR or LF in header block")
        for line in lines:
            raw_name, colon, raw_value = line.partition(b":")
            name = _name_cache.get(raw_name)
            if name is None:
                if not raw_name or raw_name.translate(None, _TOKEN_CHARS):
                    raise _HttpError(400, "malformed header field")
                name = raw_name.decode("ascii").lower()
                if len(_name_cache) < 512 and len(raw_name) <= _CACHED_NAME_BYTES:
                    _name_cache[raw_name] = name
            if not colon:
                raise _HttpError(400, "malformed header field")
            value = raw_value.strip(b" \t").decode("latin-1")
            old = headers.get(name)
            headers[name] = value if old is None else old + ", " + value
    path, query = _split_target(target_b.decode("ascii"))
    return method, path, query, http11, headers


def _split_target(target: str) -> tuple[str, str]:
    """Path (percent-decoded) and raw query of an origin-form, absolute-form or ``*`` request target."""
    if target[0] != "/":
        low = target[:8].lower()
        if low.startswith(("http://", "https://")):
            slash = target.find("/", low.find("//") + 2)
            target = "/" if slash < 0 else target[slash:]
            if target[0] != "/":  # "http://host?x=1"
                target = "/" + target
        elif target != "*":
            raise _HttpError(400, "malformed request target")
    path, _, query = target.partition("?")
    if "#" in query:
        query = query.partition("#")[0]
    elif "#" in path:
        path = path.partition("#")[0]
    if "%" in path:
        path = percent_decode(path)
    return path, query


def _content_length(value: str) -> int:
    """The value of a Content-Length header (repeated identical values are accepted)."""
    if "," in value:
        values = {v.strip() for v in value.split(",")}
        if len(values) != 1:
            raise _HttpError(400, "conflicting Content-Length")
        value = values.pop()
    if not value or len(value) > 18 or not (value.isascii() and value.isdigit()):
        raise _HttpError(400, "invalid Content-Length")
    return int(value)


def _has_token(value: str, token: str) -> bool:
    """Whether a comma-separated header value (e.g. Connection) lists ``token`` (case-insensitive)."""
    value = value.lower()
    if value == token:
        return True
    return token in value and token in (t.strip() for t in value.split(","))


# --------------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------------


def _status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase.encode("latin-1", "replace"))


_STATUS_LINES: dict[int, bytes] = {s.value: _status_line(s.value) for s in HTTPStatus}
_ct_cache: dict[str, bytes] = {}
_CLOSE = b"Connection: close\r\n"
_KEEP_ALIVE = b"Connection: keep-alive\r\n"
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_SKIPPED_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "content-type"})


def _ct_header(content_type: str) -> bytes:
    line = _ct_cache.get(content_type)
    if line is None:
        if "\r" in content_type or "\n" in content_type:
            raise ValueError("invalid Content-Type")
        line = b"Content-Type: " + content_type.encode("latin-1") + b"\r\n"
        if len(_ct_cache) < 64:
            _ct_cache[content_type] = line
    return line


def _extra_headers(headers: list[tuple[str, str]]) -> tuple[bytes, bool]:
    """Encoded extra headers and whether one of them asked for ``Connection: close``."""
    out = []
    close = False
    for name, value in headers:
        low = name.lower()
        if low in _SKIPPED_HEADERS:
            if low == "connection" and _has_token(value, "close"):
                close = True
            continue
        if not re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", name) or "\r" in value or "\n" in value:
            raise ValueError(f"invalid response header {name!r}")
        out.append(b"%s: %s\r\n" % (name.encode("ascii"), value.encode("latin-1")))
    return b"".join(out), close


def _render(resp: Response, head_only: bool, keep_alive: bool,
            http11: bool) -> tuple[bytes | tuple[bytes, ...], int, bool]:
    """Serialize a response: (bytes, status, keep_alive); for a response given in ``parts``, the head and the
    parts as a tuple of buffers to send in order. Raises on a response that cannot be sent."""
    plain = keep_alive and http11 and not head_only
    if plain and resp._wire is not None:
        return resp._wire, resp.status, True
    status = resp.status
    line = _STATUS_LINES.get(status)
    if line is None:
        if type(status) is not int or not 200 <= status <= 999:
            raise ValueError(f"invalid response status {status!r}")
        line = _status_line(status)
    elif status < 200:
        raise ValueError(f"invalid response status {status!r}")
    parts = resp.parts
    body = resp.body
    head = line + _ct_header(resp.content_type)
    if resp.headers:
        extra, close = _extra_headers(resp.headers)
        head += extra
        if close:
            keep_alive = False
    if resp.close:
        keep_alive = False
    if status == 204 or status == 304:
        body = b""
        parts = None
    else:
        head += b"Content-Length: %d\r\n" % (len(body) if parts is None else sum(map(len, parts)))
    if not keep_alive:
        head += _CLOSE
    elif not http11:
        head += _KEEP_ALIVE
    if head_only:
        return head + b"\r\n", status, keep_alive
    if parts is not None:
        return (head + b"\r\n", *parts), status, keep_alive
    out = b"".join((head, b"\r\n", body))  # one copy of a body of megabytes, not two
    if plain and keep_alive:
        resp._wire = out
    return out, status, keep_alive


def _error_bytes(status: int, message: str) -> bytes:
    body = message.encode("utf-8", "replace")
    return (
        _STATUS_LINES.get(status, b"HTTP/1.1 %d \r\n" % status)
        + b"Content-Type: text/plain;charset=UTF-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
        % len(body)
        + body
    )


_REJECT_503 = _error_bytes(503, "too many connections")


# --------------------------------------------------------------------------------------------------------
# Socket helpers
# --------------------------------------------------------------------------------------------------------

_Sock = socket.socket | TlsSocket  # a connection's socket: plain, or TLS behind the same calls
_RECV_SIZE = 65536
_SEND_FLAGS = getattr(socket, "MSG_NOSIGNAL", 0)  # EPIPE instead of SIGPIPE, whatever the signal setup
_IDLE, _READING, _HANDLING, _WRITING = 0, 1, 2, 3
_LINGER_SECONDS = 1.0
_LINGER_BYTES = 4 * 1_048_576
_ACCEPT_BATCH = 64
LISTEN_BACKLOG = 4096
"""The HTTP port's listen backlog (connections the kernel queues before they are accepted)."""
_OUT_OF_FDS_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE})  # shed with the reserved descriptor
_ACCEPT_RETRY_ERRNOS = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
)  # out of resources (and nothing could be shed): back off a little


async def _send_rest(sock: _Sock, data: bytes, sent: int) -> None:
    """Send ``data[sent:]``, waiting for the socket to become writable as needed."""
    view = memoryview(data)
    total = len(data)
    while sent < total:
        await wait_writable(sock)
        try:
            sent += sock.send(view[sent:], _SEND_FLAGS)
        except BlockingIOError:  # spurious wake-up
            continue


_IOV_MAX_REPORTED = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else -1
_IOV_MAX = min(_IOV_MAX_REPORTED, 1024) if _IOV_MAX_REPORTED > 0 else 1024  # -1: no limit reported


async def _send_parts(sock: _Sock, parts: tuple[bytes, ...]) -> None:
    """Send ``parts`` in order with scatter-gather writes (at most ``_IOV_MAX`` buffers a call), waiting for
    the socket to become writable as needed. A TLS socket has no ``sendmsg``: the parts are joined for it."""
    if isinstance(sock, TlsSocket):
        await _send_all(sock, b"".join(parts))
        return
    pending = [memoryview(part) for part in parts if part]
    first = 0  # pending[first:] is what is left to send
    while first < len(pending):
        try:
            sent = sock.sendmsg(pending[first:first + _IOV_MAX], (), _SEND_FLAGS)
        except BlockingIOError:
            await wait_writable(sock)
            continue
        while sent:
            size = len(pending[first])
            if sent < size:
                pending[first] = pending[first][sent:]
                break
            sent -= size
            first += 1
        if first < len(pending):
            await wait_writable(sock)


async def _send_all(sock: _Sock, data: bytes) -> None:
    try:
        sent = sock.send(data, _SEND_FLAGS)
    except BlockingIOError:
        sent = 0
    if sent < len(data):
        await _send_rest(sock, data, sent)


async def _recv_more(sock: _Sock, buf: bytearray) -> None:
    """Append at least one byte to ``buf``; raise _PeerGone on end of file."""
    while True:
        await wait_readable(sock)
        try:
            data = sock.recv(_RECV_SIZE)
        except BlockingIOError:
            continue
        if not data:
            raise _PeerGone
        buf += data
        return


async def _read_chunked(sock: _Sock, buf: bytearray, limits: HttpLimits) -> bytes:
    """Decode a chunked body from ``buf`` (refilled from ``sock``), consuming it and the trailer section."""
    body = bytearray()
    max_body = limits.max_body_bytes
    while True:
        line_end = buf.find(b"\r\n")
        while line_end < 0:
            if len(buf) > 1024:
                raise _HttpError(400, "chunk size line too long")
            await _recv_more(sock, buf)
            line_end = buf.find(b"\r\n")
        m = _CHUNK_SIZE_RE.fullmatch(buf, 0, line_end)
        if m is None:
            raise _HttpError(400, "malformed chunk size")
        size = int(m.group(1), 16)
        del buf[: line_end + 2]
        if size == 0:
            break
        if len(body) + size > max_body:
            raise _HttpError(413, "request body too large")
        while len(buf) < size + 2:
            await _recv_more(sock, buf)
        if buf[size : size + 2] != b"\r\n":
            raise _HttpError(400, "malformed chunk")
        body += buf[:size]
        del buf[: size + 2]
    trailer_bytes = 0
    while True:  # trailer fields are read and ignored
        line_end = buf.find(b"\r\n")
        while line_end < 0:
            if len(buf) + trailer_bytes > limits.max_header_bytes:
                raise _HttpError(431, "trailer section too large")
            await _recv_more(sock, buf)
            line_end = buf.find(b"\r\n")
        del buf[: line_end + 2]
        if line_end == 0:
            return bytes(body)
        trailer_bytes += line_end + 2
        if trailer_bytes > limits.max_header_bytes:
            raise _HttpError(431, "trailer section too large")


def _skip_empty_lines(buf: bytearray) -> None:
    """Drop the empty lines (CRLFs) that may precede a request line (RFC 9112 section 2.2)."""
    start = 0
    while buf.startswith(b"\r\n", start):
        start += 2
    if start:
        del buf[:start]


async def _linger_and_close(sock: _Sock) -> None:
    """Half-close, then discard what the client still sends for a moment so the last response is not lost
    to a TCP reset (which a close() with unread input produces)."""
    try:
        sock.shutdown(socket.SHUT_WR)
        with trio.move_on_after(_LINGER_SECONDS):
            drained = 0
            while drained < _LINGER_BYTES:
                await wait_readable(sock)
                try:
                    data = sock.recv(_RECV_SIZE)
                except BlockingIOError:
                    continue
                if not data:
                    break
                drained += len(data)
    except OSError:
        pass


def _close(sock: _Sock) -> None:
    """Close a connection socket. No task can be waiting on it (only its own task uses it, and that task
    is here), so trio's ``notify_closing`` (one more epoll_ctl syscall per connection) is not needed."""
    sock.close()


def _count(stats: HttpStats, status: int) -> None:
    by_status = stats.responses_by_status
    by_status[status] = by_status.get(status, 0) + 1


# --------------------------------------------------------------------------------------------------------
# The connection loop
# --------------------------------------------------------------------------------------------------------


class _Connection:
    """One client connection: reads requests, calls the handler, writes responses, until it closes.

    Deadlines are set lazily, only before actually waiting (``phase`` says which one is in force), so a
    request that arrives whole and is answered at once costs no cancel-scope update.
    """

    __slots__ = (
        "admission", "buf", "check_partial_at", "counted", "deadline_set", "deferred", "fast", "first_s", "graceful",
        "handler", "head_limit", "idle_s", "lane", "lane_eof", "lane_fd", "lane_out", "lane_paused", "limits",
        "max_requests", "phase", "remote", "request_s", "scope", "served", "sock", "stats", "unyielded",
    )

    def __init__(
        self,
        sock: _Sock,
        remote: tuple[str, int],
        handler: Handler,
        admission: _Admission,
        lane: tuple[KeepAliveLane, FastHandler] | None = None,
    ) -> None:
        self.sock = sock
        # The keep-alive lane and the fast handler it answers with (plain sockets only: a TLS record may
        # hold half a request, and TLS writes are not the lane's).
        self.lane: KeepAliveLane | None = None
        self.fast: FastHandler | None = None
        if lane is not None and not isinstance(sock, TlsSocket):
            self.lane, self.fast = lane
        self.lane_eof = False  # the lane read the end of the stream (or an error) while the task was parked
        self.lane_out: tuple[bytes, int, bool] | None = None  # an answer the lane could not send whole
        self.lane_fd = -1  # the socket's descriptor while the task is parked in the lane, else -1
        self.deferred: Deferred | None = None  # a fast handler's answer still to come (the task stays parked)
        self.lane_paused = False  # input came while an answer was awaited: the lane stopped watching the socket
        self.remote = remote
        self.handler = handler
        self.admission = admission
        self.limits = limits = admission.limits
        self.stats = admission.stats
        self.counted = True  # in stats.connections_open (until closed, or shed while idle)
        self.idle_s = limits.idle_timeout_ms / 1000
        self.request_s = limits.request_timeout_ms / 1000
        self.first_s = min(self.idle_s, self.request_s)  # a new connection gets this long to send its first byte
        self.max_requests = limits.max_requests_per_connection
        self.head_limit = limits.max_request_line_bytes + limits.max_header_bytes + 4
        self.check_partial_at = min(limits.max_request_line_bytes, limits.max_header_bytes)
        self.buf = bytearray()
        self.scope = trio.CancelScope()
        self.phase = _HANDLING  # i.e. no deadline yet
        self.deadline_set = False  # the scope has a finite deadline (the phase's)
        self.served = 0
        self.unyielded = 0
        self.graceful = True  # False: close at once without lingering

    def _enter(self, phase: int, timeout_s: float) -> None:
        """Switch to ``phase`` with a deadline ``timeout_s`` from now (``inf``: none)."""
        if self.phase == _IDLE:
            self.admission.kept_alive.pop(self, None)
        self.phase = phase
        self.scope.deadline = trio.current_time() + timeout_s
        self.deadline_set = True

    def _wait_kept_alive(self) -> None:
        """Wait for the next request of a keep-alive connection: timed by the server's reaper
        (:func:`_reap_kept_alive`), not by a deadline of its own, so a keep-alive request costs no
        cancel-scope deadline change (two of them, ~3 µs each, were ~3% of a registration's samples)."""
        if self.deadline_set:  # a blocked send's deadline (_WRITING)
            self.scope.deadline = math.inf
            self.deadline_set = False
        self.phase = _IDLE
        self.admission.wait_kept_alive(self)

    async def serve(self) -> None:
        """Serve until the connection closes; never raises (except trio.Cancelled on shutdown)."""
        error: _HttpError | None = None
        try:
            with self.scope:
                try:
                    if isinstance(self.sock, TlsSocket):  # within the time a new connection has for its first byte
                        self._enter(_IDLE, self.first_s)
                        await self.sock.handshake()
                    await self._request_loop()
                except _HttpError as exc:
                    error = exc
                except _PeerGone:
                    self.graceful = False
                    return
            if self.scope.cancelled_caught:
                if self.phase == _READING:
                    error = _HttpError(408, "request timeout")
                else:
                    self.graceful = False
                    return
            if error is not None:
                _count(self.stats, error.status)
                with trio.move_on_after(self.request_s):
                    await _send_all(self.sock, _error_bytes(error.status, error.message))
        except OSError:
            self.graceful = False
        except Exception:
            log.exception("HTTP connection from %s failed", self.remote)
            self.graceful = False
        finally:
            self.admission.release(self)
            try:
                if error is not None and self.graceful:
                    await _linger_and_close(self.sock)
            finally:
                _close(self.sock)

    async def _request_loop(self) -> None:
        buf = self.buf
        # The first request usually arrives with (or right after) the connection: try without waiting.
        try:
            data = self.sock.recv(_RECV_SIZE)
            if not data:
                return
            buf += data
        except BlockingIOError:
            pass
        limits = self.limits
        while True:
            if buf and buf[0] == 13:  # CR: empty lines before the request line
                _skip_empty_lines(buf)
            head_end = buf.find(b"\r\n\r\n")
            if head_end <= 0:  # incomplete, or stray empty lines before the request line
                head_end = await self._read_head()
                if head_end < 0:  # the client closed the connection
                    return
            if head_end > self.head_limit:
                _check_partial_head(buf, limits)
                raise _HttpError(431, "header block too large")
            head = bytes(buf[:head_end])
            del buf[: head_end + 4]
            method, path, query, http11, headers = _parse_head(head, limits)
            if "transfer-encoding" in headers or "content-length" in headers or "expect" in headers:
                body = await self._read_body(headers, http11)
            else:
                body = b""
            request = Request(method, path, query, headers, body, self.remote)
            request._connection = self
            if not await self._respond(request, http11):
                return
            self.unyielded += 1
            if self.unyielded >= 16:  # pipelined input and a handler that never yields: be fair
                self.unyielded = 0
                await checkpoint()

    async def _read_head(self) -> int:
        """Read until ``buf`` holds a complete head; where it ends, or -1 when the client closed."""
        buf = self.buf
        sock = self.sock
        scanned = 0
        while True:
            if buf and buf[0] == 13 and buf.startswith(b"\r\n"):  # empty lines before a request line
                _skip_empty_lines(buf)
                scanned = 0
            head_end = buf.find(b"\r\n\r\n", scanned)
            if head_end > 0:
                return head_end
            if buf:
                if len(buf) > self.check_partial_at:
                    _check_partial_head(buf, self.limits)
                scanned = len(buf) - 3 if len(buf) > 3 else 0
                if self.phase != _READING:
                    self._enter(_READING, self.request_s)
            elif self.phase != _IDLE:
                if self.served:
                    self._wait_kept_alive()
                else:
                    self._enter(_IDLE, self.first_s)
            idle = not buf
            if idle:  # nothing of a request yet: may be shed to make room (_Admission)
                self.admission.idle[self] = None
            if idle and self.served and self.lane is not None:
                fd = self.lane_fd = self.sock.fileno()
                try:
                    await self.lane.park(fd, self)
                finally:
                    self.lane_fd = -1  # a Deferred resolved from now on finds its connection gone
                    self.admission.idle.pop(self, None)
                if not await self._after_lane():
                    return -1
                scanned = 0
                continue
            try:
                while True:
                    await wait_readable(sock)
                    try:
                        data = sock.recv(_RECV_SIZE)
                        break
                    except BlockingIOError:
                        continue
            finally:
                if idle:
                    self.admission.idle.pop(self, None)
            self.unyielded = 0
            if not data:
                if buf:
                    self.graceful = False
                return -1
            buf += data

    async def _after_lane(self) -> bool:
        """The lane handed the connection back: finish the answer it could not send whole; False when the
        connection is to close (the stream ended, or that answer said so)."""
        pending = self.lane_out
        if pending is not None:
            self.lane_out = None
            out, sent, keep_alive = pending
            self._enter(_WRITING, self.idle_s)
            await _send_rest(self.sock, out, sent)
            if not keep_alive:
                return False
            self._wait_kept_alive()
        if self.lane_eof:
            if not self.buf:
                return False
            if not self.graceful:  # reset: nobody to answer
                return False
            # The stream ended behind requests read while a deferred answer was awaited (a client that
            # half-closed after pipelining): answer them first, as the task would have; reading again
            # finds the end of the stream again (and a partial request there closes as usual).
            self.lane_eof = False
        return True

    def serve_parked(self) -> bool:
        """The lane saw this parked connection's socket readable: read, and answer inline every complete
        request the fast handler answers. True: stay parked; False: hand it back to its task (see
        cluster/http/lane.py)."""
        if self.deferred is not None:
            self._read_while_deferred()
            return True
        try:
            data = self.sock.recv(_RECV_SIZE)
        except BlockingIOError:
            return True
        except OSError:
            self.lane_eof = True
            self.graceful = False
            return False
        if not data:
            self.lane_eof = True
            return False
        self.buf += data
        for _ in range(16):  # pipelined requests: a few inline, then the task (fairness)
            if not self.buf:
                self._wait_parked()
                return True
            if not self._answer_inline():
                return False
            if self.deferred is not None:  # what follows waits for that answer (then the task takes it)
                return True
        return False

    def _wait_parked(self) -> None:
        """A parked connection waits for its next request from now on (timed by the reaper, sheddable)."""
        admission = self.admission
        admission.kept_alive.pop(self, None)
        admission.wait_kept_alive(self)  # (wakes the reaper when nothing else waited)
        admission.idle.pop(self, None)
        admission.idle[self] = None

    def _read_while_deferred(self) -> None:
        """Input while a deferred answer is awaited (a pipelined request, or the end of the stream): read it
        and stop watching the socket; once the answer is sent, the task takes the connection."""
        try:
            data = self.sock.recv(_RECV_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
            self.graceful = False
        if data:
            self.buf += data
        else:
            self.lane_eof = True
        self.lane_paused = True
        assert self.lane is not None
        self.lane.pause(self.lane_fd)

    def _deferred_ready(self, response: Response) -> None:
        """The fast handler's deferred answer came (from whichever task resolved it): send it, then wait for
        the next request in the lane, or hand the connection to its task when anything else is to be done."""
        self.deferred = None
        lane, fd = self.lane, self.lane_fd
        if lane is None or fd < 0:  # the task left the lane meanwhile (cancelled): the connection is closing
            return
        try:
            rendered, status, keep_alive = _render(response, False, True, True)
            if type(rendered) is not bytes:
                raise ValueError("a deferred response must be plain (a body, not parts)")
            out = rendered
        except Exception as exc:
            log.exception("a deferred HTTP answer could not be rendered")
            out = _error_bytes(500, f"caused: {exc};")
            status, keep_alive = 500, False
        _count(self.stats, status)
        sent = self._send_now(out)
        if sent < 0:
            pass
        elif sent < len(out) or not keep_alive:
            self.lane_out = (out, sent, keep_alive)
        elif not (self.lane_paused or self.lane_eof or self.buf):
            self._wait_parked()
            return
        self.lane_paused = False
        lane.hand_over(fd)

    def _answer_inline(self) -> bool:
        """Answer the request at the front of ``buf`` with the fast handler, if it is complete (head, and a
        ``Content-Length`` body if any, all read) and the handler answers it; False (nothing consumed)
        otherwise, or when the answer could not be sent whole."""
        buf = self.buf
        head_end = buf.find(b"\r\n\r\n")
        if head_end <= 0 or head_end > self.head_limit or buf[0] == 13 or self.served + 1 >= self.max_requests:
            return False
        try:
            method, path, query, http11, headers = _parse_head(bytes(buf[:head_end]), self.limits)
        except _HttpError:
            return False  # the task parses it again and answers the error
        if not http11 or method == "HEAD" or "transfer-encoding" in headers or "expect" in headers:
            return False
        conn_hdr = headers.get("connection")
        if conn_hdr is not None and _has_token(conn_hdr, "close"):
            return False
        end = head_end + 4
        body = b""
        length = headers.get("content-length")
        if length is not None and length != "0":  # a form body (the Java client's registrations): whole, or the task's
            try:
                size = _content_length(length)
            except _HttpError:
                return False
            if size > self.limits.max_body_bytes or len(buf) < end + size:
                return False
            body = bytes(buf[end : end + size])
            end += size
        request = Request(method, path, query, headers, body, self.remote)
        request._connection = self
        assert self.fast is not None
        try:
            answer = self.fast(request)
            if answer is None:
                return False
            if isinstance(answer, Deferred):
                if answer.response is None:
                    self._defer(end, answer)
                    return True
                answer = answer.response
            out, status, keep_alive = _render(answer, False, True, True)
            if type(out) is not bytes:
                raise ValueError("a fast handler's response must be plain (a body, not parts)")
        except Exception:
            log.exception("fast HTTP handler failed on %s %s", method, path)
            return False  # the handler answers it (a 500 if it fails as well)
        del buf[:end]
        self.served += 1
        stats = self.stats
        stats.requests_total += 1
        stats.inline_requests_total += 1
        _count(stats, status)
        sent = self._send_now(out)
        if sent < 0:
            return False
        if sent < len(out) or not keep_alive:
            self.lane_out = (out, sent, keep_alive)
            return False
        return True

    def _send_now(self, out: bytes) -> int:
        """The lane's send of an answer, without waiting: the bytes the socket took at once (0 if none), or
        -1 when the connection is lost (then it is marked ended: ``lane_eof``, not graceful)."""
        try:
            return self.sock.send(out, _SEND_FLAGS)
        except BlockingIOError:
            return 0
        except OSError:
            self.lane_eof = True
            self.graceful = False
            return -1

    def _defer(self, end: int, deferred: Deferred) -> None:
        """The request at the front of ``buf`` (its first ``end`` bytes) is answered later
        (:meth:`_deferred_ready`): take it off, and neither reap nor shed the connection while it waits."""
        del self.buf[:end]
        self.served += 1
        stats = self.stats
        stats.requests_total += 1
        stats.inline_requests_total += 1
        self.admission.kept_alive.pop(self, None)
        self.admission.idle.pop(self, None)
        self.deferred = deferred
        deferred._on_ready = self._deferred_ready

    async def _read_body(self, headers: dict[str, str], http11: bool) -> bytes:
        """The body announced by ``headers`` (Content-Length or chunked; 100-continue answered)."""
        buf = self.buf
        te = headers.get("transfer-encoding")
        cl = headers.get("content-length")
        if te is not None:
            if cl is not None:
                raise _HttpError(400, "both Content-Length and Transfer-Encoding")
            if te.strip().lower() != "chunked":
                raise _HttpError(501, f"unsupported transfer-encoding: {te}")
            length = -1
        else:
            length = _content_length(cl) if cl is not None else 0
            if length > self.limits.max_body_bytes:
                raise _HttpError(413, "request body too large")
        expect = headers.get("expect")
        if expect is not None and http11 and expect.strip().lower() != "100-continue":
            raise _HttpError(417, f"unsupported expectation: {expect}")
        if not length:
            return b""
        if self.phase != _READING and (length < 0 or len(buf) < length):
            self._enter(_READING, self.request_s)
        if expect is not None and http11 and not buf:
            await _send_all(self.sock, _CONTINUE)
        if length < 0:
            return await _read_chunked(self.sock, buf, self.limits)
        while len(buf) < length:
            await _recv_more(self.sock, buf)
            self.unyielded = 0
        body = bytes(buf[:length])
        del buf[:length]
        return body

    async def wait_peer_gone(self) -> None:
        """See :meth:`Request.client_gone` (only the handler's tasks use the socket meanwhile).

        Bytes that arrive instead of the end (a pipelined request) are kept in ``buf`` for the request
        loop, and the watching stops: the client is still there.
        """
        if self.buf:  # the next request is already here: the client is still there
            await trio.sleep_forever()
        sock = self.sock
        while True:
            await wait_readable(sock)
            try:
                data = sock.recv(_RECV_SIZE)
            except BlockingIOError:  # nothing yet (or half a TLS record)
                continue
            except OSError:  # reset
                return
            if not data:  # closed (for TLS: close_notify or the end of the stream)
                return
            self.buf += data
            await trio.sleep_forever()

    async def _respond(self, request: Request, http11: bool) -> bool:
        """Run the handler and write its response; whether the connection stays open."""
        self.served += 1
        stats = self.stats
        stats.requests_total += 1
        conn_hdr = request.headers.get("connection")
        if http11:
            keep_alive = conn_hdr is None or not _has_token(conn_hdr, "close")
        else:
            keep_alive = conn_hdr is not None and _has_token(conn_hdr, "keep-alive")
        if self.served >= self.max_requests:
            keep_alive = False
        if self.phase != _HANDLING:
            if self.phase == _IDLE:
                self.admission.kept_alive.pop(self, None)
            self.phase = _HANDLING
            if self.deadline_set:
                self.scope.deadline = math.inf
                self.deadline_set = False
        head_only = request.method == "HEAD"
        try:
            response = await self.handler(request)
            out, status, keep_alive = _render(response, head_only, keep_alive, http11)
        except Exception as exc:
            log.exception("HTTP handler failed on %s %s", request.method, request.path)
            response = Response.text(500, f"caused: {exc};")
            out, status, keep_alive = _render(response, head_only, keep_alive, http11)
        by_status = stats.responses_by_status
        by_status[status] = by_status.get(status, 0) + 1
        if type(out) is tuple:
            self._enter(_WRITING, self.idle_s)  # a client that does not read: bounded by the idle timeout
            await _send_parts(self.sock, out)
            self.unyielded = 0
            return keep_alive
        assert isinstance(out, bytes)
        try:
            sent = self.sock.send(out, _SEND_FLAGS)
        except BlockingIOError:
            sent = 0
        if sent < len(out):  # a client that does not read: bounded by the idle timeout
            self._enter(_WRITING, self.idle_s)
            await _send_rest(self.sock, out, sent)
            self.unyielded = 0
        return keep_alive


class _Admission:
    """Who gets a connection: ``max_connections`` in all and ``max_connections_per_ip`` per client address.

    At the global cap, the connection that has been idle longest (waiting for a first or next request, no
    byte of it received) is closed to make room, so idle keep-alive sockets never lock new clients out;
    only when none is idle is the newcomer refused. Over its address's cap a newcomer is always refused.
    """

    __slots__ = ("idle", "kept_alive", "limits", "per_ip", "per_ip_cap", "reaper_wake", "stats")

    def __init__(self, limits: HttpLimits, stats: HttpStats) -> None:
        self.limits = limits
        self.stats = stats
        # a cap at or above the global one means none (the global cap decides)
        self.per_ip_cap = limits.max_connections_per_ip if limits.max_connections_per_ip < limits.max_connections \
            else math.inf
        self.per_ip: dict[str, int] = {}  # open connections per client address (only addresses with some)
        self.idle: dict[_Connection, None] = {}  # idle connections, oldest first
        # Keep-alive connections waiting for their next request, and since when (trio time), oldest first:
        # the reaper closes each idle_timeout_ms after it started waiting (see _reap_kept_alive).
        self.kept_alive: dict[_Connection, float] = {}
        self.reaper_wake: trio.Event | None = None  # set when kept_alive stops being empty

    def wait_kept_alive(self, conn: _Connection) -> None:
        """``conn`` starts waiting for its next request (it stays listed until it leaves that phase)."""
        if not self.kept_alive and self.reaper_wake is not None:
            self.reaper_wake.set()
        self.kept_alive[conn] = trio.current_time()

    def admit(self, ip: str) -> bool:
        """Count a new connection from ``ip`` in, or say why not (the refusal is counted)."""
        stats = self.stats
        held = self.per_ip.get(ip, 0)
        if held >= self.per_ip_cap:
            stats.rejected_per_ip_total += 1
            return False
        if stats.connections_open >= self.limits.max_connections:
            if not self.idle:
                stats.rejected_connections_total += 1
                return False
            oldest = next(iter(self.idle))
            del self.idle[oldest]
            oldest.counted = False  # its slot is the newcomer's now; it closes when its task next runs
            oldest.scope.cancel()
            stats.connections_open -= 1
            stats.idle_evicted_total += 1
        self.per_ip[ip] = held + 1
        stats.connections_open += 1
        stats.connections_total += 1
        return True

    def release(self, conn: _Connection) -> None:
        """A connection closed."""
        ip = conn.remote[0]
        left = self.per_ip.get(ip, 1) - 1
        if left:
            self.per_ip[ip] = left
        else:
            self.per_ip.pop(ip, None)
        self.idle.pop(conn, None)
        self.kept_alive.pop(conn, None)
        if conn.counted:
            conn.counted = False
            self.stats.connections_open -= 1


class _FdReserve:
    """One descriptor held back so that, when ``accept()`` fails for want of descriptors, the server can
    still take each waiting connection and answer it 503 instead of leaving the client hanging."""

    def __init__(self) -> None:
        self.fd = -1
        self.take()

    def take(self) -> None:
        if self.fd < 0:
            try:
                self.fd = os.open(os.devnull, os.O_RDONLY)
            except OSError:
                self.fd = -1

    def release(self) -> bool:
        if self.fd < 0:
            return False
        os.close(self.fd)
        self.fd = -1
        return True


def _reject(conn: socket.socket, tls: bool = False) -> None:
    """Close a connection that will not be served: with a plain 503 first, unless it is a TLS connection
    (whose client would read the bytes as a broken TLS record)."""
    try:
        conn.setblocking(False)
        if not tls:
            conn.send(_REJECT_503, _SEND_FLAGS)
        conn.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    conn.close()


def _shed_one(listener: socket.socket, reserve: _FdReserve, stats: HttpStats, tls: bool) -> bool:
    """Out of descriptors: use the reserved one to take one waiting connection and answer it 503.
    False when there is nothing (more) to do now."""
    if not reserve.release():
        return False
    try:
        conn, _ = listener.accept()
    except OSError:
        reserve.take()
        return False
    _count(stats, 503)
    stats.shed_at_fd_limit_total += 1
    _reject(conn, tls)  # closing it gives the descriptor back to the reserve
    reserve.take()
    return True


async def _accept_loop(
    listener: socket.socket,
    nursery: trio.Nursery,
    handler: Handler,
    admission: _Admission,
    reserve: _FdReserve,
    ssl_context: ssl.SSLContext | None,
    lane: tuple[KeepAliveLane, FastHandler] | None,
) -> None:
    stats = admission.stats
    tls = ssl_context is not None
    while True:
        await wait_readable(listener)
        for _ in range(_ACCEPT_BATCH):
            try:
                conn, addr = listener.accept()
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno in _OUT_OF_FDS_ERRNOS and _shed_one(listener, reserve, stats, tls):
                    continue
                if exc.errno in _ACCEPT_RETRY_ERRNOS:
                    log.error("accept() failed: %s; backing off", exc)
                    await trio.sleep(0.1)
                    break
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EINTR):
                    continue
                raise
            if not admission.admit(addr[0]):
                _count(stats, 503)
                _reject(conn, tls)
                continue
            try:
                conn.setblocking(False)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                conn.close()
                admission.per_ip[addr[0]] -= 1  # undo admit() (nothing else ran in between)
                if not admission.per_ip[addr[0]]:
                    del admission.per_ip[addr[0]]
                stats.connections_open -= 1
                continue
            sock: _Sock = conn if ssl_context is None else TlsSocket(conn, ssl_context)
            nursery.start_soon(_Connection(sock, (addr[0], addr[1]), handler, admission, lane).serve)


async def _reap_kept_alive(admission: _Admission, idle_s: float) -> None:
    """Close keep-alive connections that waited ``idle_s`` for their next request, oldest first, each at
    its own moment: the list is in the order they started waiting, so one sleep until the oldest's
    expiry serves them all (a connection that leaves the wait leaves the list)."""
    waiting = admission.kept_alive
    while True:
        if not waiting:
            wake = admission.reaper_wake = trio.Event()
            await wake.wait()
            admission.reaper_wake = None
            continue
        conn, since = next(iter(waiting.items()))
        expiry = since + idle_s
        if trio.current_time() >= expiry:
            del waiting[conn]
            conn.scope.cancel()  # its task sees the cancellation while _IDLE: closes without an answer
            continue
        await trio.sleep_until(expiry)


async def serve_http(
    handler: Handler,
    host: str,
    port: int,
    limits: HttpLimits = HttpLimits(),  # frozen, so sharing one default instance is fine
    *,
    stats: HttpStats | None = None,
    ssl_context: ssl.SSLContext | None = None,
    fast: FastHandler | None = None,
    fast_step: Callable[[], AbstractContextManager[None]] | None = None,
    sockets: list[socket.socket] | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on host:port (port 0 = pick one) and serve forever; task_status.started(actual_port).

    ``sockets``: listening sockets opened already (:func:`cluster.node.listeners.open_listener_pair`),
    served instead of opening host:port; they are closed when serving stops.

    ``host`` may be a name or an address; every address it resolves to is listened on ("" = all).
    With ``ssl_context`` (cluster.node.tls.server_context) every connection is TLS (HTTPS).
    With ``fast``, keep-alive requests that it answers at once are answered in the keep-alive lane
    (cluster/http/lane.py), without waking their connection's task; plain HTTP only. ``fast_step`` is entered
    around each step of the lane (every ready connection it serves at once), such as ``NodeRuntime.batch``.
    Cancelling the surrounding scope stops the server and closes every connection.
    """
    if stats is None:
        stats = HttpStats()
    admission = _Admission(limits, stats)
    reserve = _FdReserve()
    if sockets is None:
        sockets = await open_listeners(host, port, backlog=LISTEN_BACKLOG, what="the HTTP port")
    listeners = sockets
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_reap_kept_alive, admission, limits.idle_timeout_ms / 1000)
            lane: tuple[KeepAliveLane, FastHandler] | None = None
            if fast is not None and ssl_context is None:
                lane = (KeepAliveLane(fast_step, stats), fast)
                nursery.start_soon(lane[0].run)
            for listener in listeners:
                nursery.start_soon(_accept_loop, listener, nursery, handler, admission, reserve, ssl_context, lane)
            task_status.started(listeners[0].getsockname()[1])
    finally:
        for listener in listeners:
            notify_closing(listener)
            listener.close()
        reserve.release()
