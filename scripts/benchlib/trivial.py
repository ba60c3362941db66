"""A trivial HTTP server for measuring the load generator's own ceiling.

    PYTHONPATH=scripts python -m benchlib.trivial PORT

It parses nothing: every ``\\r\\n\\r\\n`` it reads is counted as one request (the generator's register
requests have empty bodies) and answered with a canned ``200 ok``, all answers to one read in one send.
So it costs a few microseconds per request and the generator, not the server, is what saturates.
(``scripts/bench_http --serve`` runs our real ``cluster.http`` server instead, which is slower.)
"""

from __future__ import annotations

import socket
import sys

import trio

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


async def handle(sock: socket.socket) -> None:
    tail = b""
    try:
        while True:
            try:
                data = sock.recv(262144)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(sock)
                continue
            if not data:
                return
            data = tail + data
            n = data.count(b"\r\n\r\n")
            cut = data.rfind(b"\r\n\r\n")
            tail = data[cut + 4 :] if cut >= 0 else data
            if n:
                out = memoryview(RESPONSE * n)
                while out:
                    try:
                        out = out[sock.send(out, socket.MSG_NOSIGNAL) :]
                    except BlockingIOError:
                        await trio.lowlevel.wait_writable(sock)
    except OSError:
        return
    finally:
        sock.close()


async def serve(port: int) -> None:
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", port))
    lsock.listen(1024)
    lsock.setblocking(False)
    async with trio.open_nursery() as nursery:
        while True:
            try:
                conn, _ = lsock.accept()
            except BlockingIOError:
                await trio.lowlevel.wait_readable(lsock)
                continue
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            nursery.start_soon(handle, conn)


if __name__ == "__main__":
    trio.run(serve, int(sys.argv[1]))
