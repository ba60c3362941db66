"""TLS for the HTTP server's connections, behind the same non-blocking socket calls the server makes.

The server (:mod:`cluster.http.server`) drives plain non-blocking sockets: ``recv`` and ``send`` that raise
``BlockingIOError`` when they would block, with ``trio.lowlevel.wait_readable``/``wait_writable`` on the
file descriptor in between. :class:`TlsSocket` keeps exactly that contract over an ``ssl.SSLObject`` and
two memory BIOs (the stdlib ``ssl`` module; the context comes from :mod:`cluster.node.tls`), so the
connection code is the same for HTTP and HTTPS:

* ``recv`` decrypts everything the socket has delivered so far and returns it in one piece, so no
  plaintext is ever left waiting inside the TLS layer while the server waits for the descriptor to
  become readable; a partial TLS record raises ``BlockingIOError`` like an empty socket.
* ``send`` encrypts all of ``data`` and reports it sent only once its ciphertext is on the socket;
  until then it returns 0 and the server waits for the socket to become writable and calls it again
  with the same data (as it does after a partial send).
* ``recv(n, MSG_PEEK)`` peeks at the raw socket (end of file or a reset is all a peek is used for).
* ``shutdown`` and ``close`` send TLS's close_notify (best effort, without waiting) first.
"""

from __future__ import annotations

import contextlib
import socket
import ssl

from trio.lowlevel import wait_readable, wait_writable

__all__ = ["TlsSocket"]

_RECV_SIZE = 65536
_SEND_FLAGS = getattr(socket, "MSG_NOSIGNAL", 0)


class TlsSocket:
    """One server-side TLS connection over a non-blocking socket (see the module docstring)."""

    __slots__ = ("_incoming", "_out", "_outgoing", "_pending_plain", "_raw", "_ssl", "_unwrapped")

    def __init__(self, raw: socket.socket, context: ssl.SSLContext) -> None:
        self._raw = raw
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._out = b""  # ciphertext not yet taken by the socket
        self._pending_plain = 0  # plaintext bytes whose ciphertext is in _out
        self._unwrapped = False  # after shutdown: raw bytes only

    def fileno(self) -> int:
        """The socket's descriptor (for trio's wait_readable / wait_writable)."""
        return self._raw.fileno()

    async def handshake(self) -> None:
        """Run the server side of the handshake (the caller's cancel scope bounds it)."""
        while True:
            try:
                self._ssl.do_handshake()
            except ssl.SSLWantReadError:
                await self._flush_all()
                await self._read_raw()
                continue
            await self._flush_all()
            return

    async def _read_raw(self) -> None:
        while True:
            await wait_readable(self._raw)
            try:
                data = self._raw.recv(_RECV_SIZE)
            except BlockingIOError:
                continue
            if not data:
                raise ConnectionResetError("the client closed the connection during the TLS handshake")
            self._incoming.write(data)
            return

    async def _flush_all(self) -> None:
        self._out += self._outgoing.read()
        while self._out:
            self._flush()
            if self._out:
                await wait_writable(self._raw)

    def _flush(self) -> None:
        self._out += self._outgoing.read()
        while self._out:
            try:
                sent = self._raw.send(self._out, _SEND_FLAGS)
            except BlockingIOError:
                return
            self._out = self._out[sent:]

    def recv(self, size: int, flags: int = 0) -> bytes:
        """Decrypted bytes (everything available, possibly more than ``size``); b"" at the end."""
        if flags or self._unwrapped:
            return self._raw.recv(size, flags)
        plain = bytearray()
        while True:
            try:
                while True:
                    chunk = self._ssl.read(_RECV_SIZE)
                    if not chunk:
                        return bytes(plain)
                    plain += chunk
            except ssl.SSLWantReadError:
                pass
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):  # close_notify, or the end of the stream
                return bytes(plain)
            if plain:
                self._flush()  # whatever reading made TLS want to say (a key update, tickets)
                return bytes(plain)
            data = self._raw.recv(_RECV_SIZE)  # BlockingIOError: nothing more for now
            if not data:
                self._incoming.write_eof()
            else:
                self._incoming.write(data)

    def send(self, data: bytes | memoryview, flags: int = 0) -> int:
        """All of ``data`` once its ciphertext is on the socket, else 0 (call again with the same data)."""
        if self._out:
            self._flush()
            if self._out:
                return 0
            if self._pending_plain:
                sent, self._pending_plain = self._pending_plain, 0
                return sent
        self._ssl.write(data)
        self._flush()
        if self._out:
            self._pending_plain = len(data)
            return 0
        return len(data)

    def shutdown(self, how: int) -> None:
        """close_notify (best effort), then the socket's own shutdown."""
        self._close_notify()
        self._raw.shutdown(how)

    def _close_notify(self) -> None:
        """Tell the client the stream ends here (TLS's close_notify), if the socket takes it at once."""
        if not self._unwrapped:
            self._unwrapped = True
            with contextlib.suppress(OSError):  # SSLWantReadError: the client's close_notify is not awaited
                self._ssl.unwrap()
            with contextlib.suppress(OSError):
                self._flush()

    def setblocking(self, flag: bool) -> None:
        """As the socket's."""
        self._raw.setblocking(flag)

    def close(self) -> None:
        """close_notify (best effort, never waiting), then close the socket."""
        self._close_notify()
        self._raw.close()
