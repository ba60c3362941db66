"""Tiny HTTP services that stand in for registered instances (trio and thread-based)."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import trio

from cluster.http import HttpLimits, Request, Response, serve_http


@asynccontextmanager
async def trio_instances(count: int) -> AsyncIterator[list[int]]:
    """``count`` HTTP servers on 127.0.0.1 answering ``{"port": <their port>}``; yields their ports."""
    ports: list[int] = []
    async with trio.open_nursery() as nursery:
        for _ in range(count):
            box: list[int] = []

            async def handler(request: Request, box: list[int] = box) -> Response:
                return Response.json({"port": box[0], "path": request.path})

            port = await nursery.start(partial(serve_http, handler, "127.0.0.1", 0, HttpLimits()))
            box.append(port)
            ports.append(port)
        yield ports
        nursery.cancel_scope.cancel()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        port = self.server.server_address[1]  # type: ignore[index]
        body = json.dumps({"port": port, "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def thread_instances(count: int) -> Iterator[list[int]]:
    """The same with the standard library's threading HTTP server (for the blocking tests)."""
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), _Handler) for _ in range(count)]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    try:
        yield [int(s.server_address[1]) for s in servers]
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
        for thread in threads:
            thread.join()


def closed_port() -> int:
    """A port nothing listens on (connections are refused)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
