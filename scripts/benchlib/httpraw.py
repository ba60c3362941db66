"""A raw-socket HTTP/1.1 keep-alive client on trio, built for load generation.

httpx manages 300-650 requests/s per core on these machines; this client writes pre-built request bytes
with one ``send`` per batch (pipelining optional) and parses responses by ``Content-Length`` or
``Transfer-Encoding: chunked`` without any header objects, so one Python process drives tens of thousands
of requests per second. It deliberately supports only what the benchmark needs: no redirects, no TLS,
no ``Connection: close`` bodies.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator

import trio


class HttpError(Exception):
    """The connection broke or the peer sent something this client does not parse."""


def build_request(method: str, target: str, host: str, body: bytes = b"", headers: str = "") -> bytes:
    """The bytes of one HTTP/1.1 request (``headers``: extra ``Name: value\\r\\n`` lines)."""
    head = f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n{headers}"
    if body or method in ("POST", "PUT", "PATCH"):
        head += f"Content-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


class ResponseParser:
    """Incremental parser: ``feed(bytes)`` returns the responses completed so far as ``(status, body)``."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self.buf + data if self.buf else data
        out: list[tuple[int, bytes]] = []
        pos = 0
        n = len(buf)
        while pos < n:
            end = buf.find(b"\r\n\r\n", pos)
            if end < 0:
                break
            if buf[pos : pos + 5] != b"HTTP/":
                raise HttpError(f"not an HTTP response: {buf[pos:pos + 40]!r}")
            status = int(buf[pos + 9 : pos + 12])
            head = buf[pos:end].lower()
            body_start = end + 4
            cl = head.find(b"\ncontent-length:")
            if cl >= 0:
                eol = head.find(b"\r", cl + 16)
                length = int(head[cl + 16 : eol if eol >= 0 else len(head)])
                if n < body_start + length:
                    break
                out.append((status, buf[body_start : body_start + length]))
                pos = body_start + length
            elif head.find(b"\ntransfer-encoding:") >= 0:
                parsed = _parse_chunked(buf, body_start)
                if parsed is None:
                    break
                body, pos = parsed
                out.append((status, body))
            elif status in (204, 304) or 100 <= status < 200:
                pos = body_start
                if status >= 200:
                    out.append((status, b""))
            else:
                raise HttpError("response without Content-Length or chunked body (close-delimited)")
        self.buf = buf[pos:]
        return out


def _parse_chunked(buf: bytes, pos: int) -> tuple[bytes, int] | None:
    parts: list[bytes] = []
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(buf[pos:eol].split(b";", 1)[0], 16)
        if size == 0:
            # no trailers expected; the chunked body ends with an empty line
            end = buf.find(b"\r\n", eol + 2)
            if end < 0:
                return None
            return b"".join(parts), end + 2
        if len(buf) < eol + 2 + size + 2:
            return None
        parts.append(buf[eol + 2 : eol + 2 + size])
        pos = eol + 2 + size + 2


class ChunkStream:
    """Splits a streamed chunked response body (e.g. etcd's /v3/watch) into newline-delimited messages."""

    def __init__(self) -> None:
        self.buf = b""
        self.head_done = False
        self.status = 0
        self.pending = b""

    def feed(self, data: bytes) -> Iterator[bytes]:
        self.buf += data
        if not self.head_done:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self.status = int(self.buf[9:12])
            self.buf = self.buf[end + 4 :]
            self.head_done = True
        while True:
            eol = self.buf.find(b"\r\n")
            if eol < 0:
                return
            size = int(self.buf[:eol].split(b";", 1)[0], 16)
            if len(self.buf) < eol + 2 + size + 2:
                return
            self.pending += self.buf[eol + 2 : eol + 2 + size]
            self.buf = self.buf[eol + 2 + size + 2 :]
            while True:
                nl = self.pending.find(b"\n")
                if nl < 0:
                    break
                line, self.pending = self.pending[:nl], self.pending[nl + 1 :]
                if line.strip():
                    yield line


class RawConn:
    """One keep-alive TCP connection driven with non-blocking stdlib socket calls and trio's wait_*."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.sock: socket.socket | None = None
        self.parser = ResponseParser()

    async def connect(self, timeout: float = 5.0) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        try:
            with trio.fail_after(timeout):
                try:
                    sock.connect((self.host, self.port))
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(sock)
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise OSError(err, errno.errorcode.get(err, str(err))) from None
        except BaseException:
            sock.close()
            raise
        self.sock = sock

    async def send_all(self, data: bytes) -> None:
        sock = self.sock
        if sock is None:
            raise HttpError("not connected")
        view = memoryview(data)
        while view:
            try:
                sent = sock.send(view, socket.MSG_NOSIGNAL)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(sock)
                continue
            except OSError as exc:
                raise HttpError(f"send failed: {exc}") from exc
            view = view[sent:]

    async def recv_some(self) -> bytes:
        sock = self.sock
        if sock is None:
            raise HttpError("not connected")
        while True:
            try:
                data = sock.recv(262144)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(sock)
                continue
            except OSError as exc:
                raise HttpError(f"recv failed: {exc}") from exc
            if not data:
                raise HttpError("connection closed by peer")
            return data

    async def responses(self, count: int) -> list[tuple[int, bytes]]:
        """Read until ``count`` responses (of requests already sent) have arrived."""
        out: list[tuple[int, bytes]] = []
        while len(out) < count:
            out.extend(self.parser.feed(await self.recv_some()))
        return out

    async def request(self, data: bytes) -> tuple[int, bytes]:
        """Send one request and read its response."""
        await self.send_all(data)
        return (await self.responses(1))[0]

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


async def open_conn(host: str, port: int, timeout: float = 5.0) -> RawConn:
    conn = RawConn(host, port)
    await conn.connect(timeout)
    return conn


def split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host, int(port)
