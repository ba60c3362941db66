"""Tests for cluster.http: real sockets on 127.0.0.1, raw trio clients, no real waiting."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from functools import partial
from urllib.parse import unquote

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.http import Deferred, FastHandler, Handler, HttpLimits, HttpStats, Request, Response, serve_http
from cluster.http.params import merge_params, percent_decode
from cluster.http.server import _HttpError, _parse_head

GUARD = 5  # seconds (real, or virtual under autojump_clock) before a hung test fails


async def echo(request: Request) -> Response:
    """Describe the request back as JSON."""
    return Response.json(
        {
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "params": request.params(),
            "headers": request.headers,
            "body": request.body.decode("utf-8", "replace"),
            "remote": list(request.remote),
        }
    )


def never_fast(request: Request) -> Response | None:
    """A fast handler that answers nothing: every keep-alive request is parked in the lane, read there and
    handed back to its connection's task (cluster/http/lane.py)."""
    return None


_FAST: list[FastHandler | None] = [None]


@pytest.fixture(autouse=True, params=["no lane", "lane"])
def lane_mode(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test of this module runs twice: without the keep-alive lane, and with a lane whose fast handler
    hands every request back (the connection's task then answers it as before)."""
    _FAST[0] = never_fast if request.param == "lane" else None
    yield
    _FAST[0] = None


@asynccontextmanager
async def running(
    handler: Handler = echo,
    limits: HttpLimits | None = None,
    fast: FastHandler | None = None,
    fast_step: Callable[[], AbstractContextManager[None]] | None = None,
) -> AsyncIterator[tuple[int, HttpStats]]:
    """A server on 127.0.0.1:<free port>; yields (port, stats). ``fast`` (else the module's lane mode)."""
    stats = HttpStats()
    limits = limits or HttpLimits()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(
            partial(serve_http, handler, "127.0.0.1", 0, limits, stats=stats, fast=fast or _FAST[0],
                    fast_step=fast_step)
        )
        yield port, stats
        nursery.cancel_scope.cancel()


class Client:
    """A raw HTTP/1.1 client over one TCP stream, reading responses with a tiny parser of its own."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = bytearray()

    @classmethod
    async def connect(cls, port: int) -> Client:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    @classmethod
    async def connect_from(cls, port: int, source: str) -> Client:
        """A connection from ``source`` (another loopback address) to 127.0.0.1:port."""
        sock = trio.socket.socket()
        await sock.bind((source, 0))
        await sock.connect(("127.0.0.1", port))
        return cls(trio.SocketStream(sock))

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def _fill(self) -> bool:
        try:
            data = await self.stream.receive_some(65536)
        except trio.BrokenResourceError:  # reset by the server
            data = b""
        self.buf += data
        return bool(data)

    async def read_exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not await self._fill():
                raise EOFError(bytes(self.buf))
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    async def read_response(self, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        """(status, headers with lower-cased names, body)."""
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            if not await self._fill():
                raise EOFError(bytes(self.buf))
        head = bytes(self.buf[:end]).decode("latin-1")
        del self.buf[: end + 4]
        status_line, *lines = head.split("\r\n")
        version, status, _reason = status_line.split(" ", 2)
        assert version == "HTTP/1.1"
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            assert name.lower() not in headers, f"duplicate header {name}"
            headers[name.lower()] = value.strip()
        length = 0 if head_only or int(status) in (100, 204, 304) else int(headers["content-length"])
        return int(status), headers, await self.read_exactly(length)

    async def at_eof(self) -> bool:
        """True if the server closed the connection with nothing more to read."""
        if self.buf:
            return False
        return not await self._fill()

    async def request(self, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        await self.send(raw)
        return await self.read_response()

    async def aclose(self) -> None:
        await self.stream.aclose()


def get(target: str, *extra: str, version: str = "1.1") -> bytes:
    """A GET request with optional extra header lines."""
    lines = [f"GET {target} HTTP/{version}", "Host: test", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def post(target: str, body: bytes, *extra: str) -> bytes:
    """A POST request with a Content-Length body."""
    lines = [f"POST {target} HTTP/1.1", "Host: test", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# ------------------------------------------------------------------------------------------------ basics


async def test_get_with_query_params() -> None:
    with trio.fail_after(GUARD):
        async with running() as (port, stats):
            c = await Client.connect(port)
            status, headers, body = await c.request(
                get("/nacos/v1/ns/instance/list?serviceName=svc%40%40g&clusters=a%2Cb&x=+y+")
            )
            assert status == 200
            assert headers["content-type"] == "application/json;charset=UTF-8"
            assert int(headers["content-length"]) == len(body)
            assert "connection" not in headers and "date" not in headers
            doc = json.loads(body)
            assert doc["method"] == "GET"
            assert doc["path"] == "/nacos/v1/ns/instance/list"
            assert doc["query"] == "serviceName=svc%40%40g&clusters=a%2Cb&x=+y+"
            assert doc["params"] == {"serviceName": "svc@@g", "clusters": "a,b", "x": "y"}
            assert doc["remote"][0] == "127.0.0.1"
            await c.aclose()
            assert stats.requests_total == 1
            assert stats.responses_by_status == {200: 1}
            assert stats.connections_total == 1


async def test_path_is_percent_decoded_and_headers_lower_cased_and_joined() -> None:
    with trio.fail_after(GUARD):
        async with running() as (port, _):
            c = await Client.connect(port)
            _, _, body = await c.request(get("/a%20b/%E2%82%AC", "X-Thing: one", "x-thing:two  ", "Empty:"))
            doc = json.loads(body)
            assert doc["path"] == "/a b/\u20ac"
            assert doc["headers"]["x-thing"] == "one, two"
            assert doc["headers"]["empty"] == ""
            assert doc["headers"]["host"] == "test"
            await c.aclose()


async def test_absolute_form_target() -> None:
    with trio.fail_after(GUARD):
        async with running() as (port, _):
            c = await Client.connect(port)
            _, _, body = await c.request(get("http://example.com:8848/nacos/v1/ns/service/list?pageNo=1"))
            doc = json.loads(body)
            assert doc["path"] == "/nacos/v1/ns/service/list"
            assert doc["params"] == {"pageNo": "1"}
            await c.aclose()


async def test_post_form_body_merged_with_query_first_wins() -> None:
    with trio.fail_after(GUARD):
        async with running() as (port, _):
            c = await Client.connect(port)
            form = b"serviceName=fromBody&ip=10.0.0.1&port=8080&healthy=True&enabled=true&note=a+b%21"
            status, _, body = await c.request(
                post(
                    "/nacos/v1/ns/instance?serviceName=fromQuery&namespaceId=public",
                    form,
                    "Content-Type: application/x-www-form-urlencoded; charset=UTF-8",
                )
            )
            assert status == 200
            doc = json.loads(body)
            assert doc["method"] == "POST"
            assert doc["params"] == {
                "serviceName": "fromQuery",  # the query comes first and the first occurrence wins
                "namespaceId": "public",
                "ip": "10.0.0.1",
                "port": "8080",
                "healthy": "True",  # booleans are left for the caller to parse
                "enabled": "true",
                "note": "a b!",
            }
            await c.aclose()


async def test_form_body_without_content_type_any_method() -> None:
    with trio.fail_after(GUARD):
        async with running() as (port, _):
            c = await Client.connect(port)
            raw = b"PUT /x HTTP/1.1\r\nHost: t\r\nContent-Length: 8\r\n\r\nweight=2"
            _, _, body = await c.request(raw)
            assert json.loads(body)["params"] == {"weight": "2"}
            # A JSON body is not a form, even without a content type.
            _, _, body = await c.request(post("/x", b'{"a=1":2}'))
            assert json.loads(body)["params"] == {}
            # An explicit non-form content type is not decoded either.
            _, _, body = await c.request(post("/x", b"a=1", "Content-Type: text/plain"))
            assert json.loads(body)["params"] == {}
            await c.aclose()


def test_params_never_raise_on_bad_encoding() -> None:
    params = merge_params("a=%zz&b=%ff%fe&c=%E2%82&d&=skipped&e=1&e=2&f=%20x%20", b"", None)
    assert params["a"] == "%zz"
    assert params["b"] == "\ufffd\ufffd"
    assert params["c"] == "\ufffd"
    assert params["d"] == ""
    assert "" not in params
    assert params["e"] == "1"
    assert params["f"] == "x"
    body_params = merge_params("", b"name=\xff\xfe&k=v", "application/x-www-form-urlencoded")
    assert body_params == {"name": "\ufffd\ufffd", "k": "v"}


def test_params_are_cached() -> None:
    request = Request("GET", "/", "a=1", {}, b"", ("127.0.0.1", 1))
    first = request.params()
    assert first == {"a": "1"}
    assert request.params() is first


def test_response_helpers() -> None:
    r = Response.json({"name": "caf\u00e9", "list": [1, 2]})
    assert r.status == 200
    assert r.body == '{"name":"caf\u00e9","list":[1,2]}'.encode()
    assert r.content_type == "application/json;charset=UTF-8"
    t = Response.text(404, "no such service")
    assert (t.status, t.body, t.content_type) == (404, b"no such service", "text/plain;charset=UTF-8")


# ------------------------------------------------------------------------------------- connection reuse


async def test_keep_alive_serves_several_requests_on_one_connection() -> None:
    with trio.fail_after(GUARD):
        async with running() as (port, stats):
            c = await Client.connect(port)
            for i in range(5):
                status, headers, body = await c.request(get(f"/n?i={i}"))
                assert status == 200
                assert "connection" not in headers
                assert json.loads(body)["params"] == {"i": str(i)}
            await c.aclose()
            assert stats.connections_total == 1
            assert stats.requests_total == 5


async def test_pipelined_requests_are_answered_in_order() -> None:
    with trio.fail_after(GUARD):
        async with running() as (port, _):
            c = await Client.connect(port)
            batch = b"".join(
                [get("/p?i=0"), post("/p?i=1", b"x=1"), get("/p?i=2"), post("/p?i=3", b""), get("/p?i=4")]
            )
            await c.send(batch)
            for i in range(5):
                status, _, body = await c.read_response()
                assert status == 200
                assert json.loads(body)["params"]["i"] == str(i)
            await c.aclose()


async def test_pipelined_bytes_split_at_every_position() -> None:
    with trio.fail_after(GUARD):
        async with running() as (port, _):
            raw = post("/s?q=1", b"a=2") + get("/s?q=3")
            for cut in range(1, len(raw)):
                c = await Client.connect(port)
                await c.send(raw[:cut])
                await c.send(raw[cut:])
                first = json.loads((await c.read_response())[2])
                second = json.loads((await c.read_response())[2])
                assert (first["params"], second["params"]) == ({"q": "1", "a": "2"}, {"q": "3"})
                await c.aclose()


@pytest.mark.parametrize("prefix", [b"\r\n", b"\r\n\r\n", b"\r\n" * 5])
async def test_leading_empty_lines_are_skipped_even_in_the_same_segment(prefix: bytes) -> None:
    # Issue 14, finding 5: CRLFs arriving in one segment with the request line were a 400.
    with trio.fail_after(GUARD):
        async with running() as (port, _):
            c = await Client.connect(port)
            status, _, body = await c.request(prefix + get("/first?i=1"))
            assert status == 200 and json.loads(body)["params"] == {"i": "1"}
            status, _, body = await c.request(prefix + post("/second", b"i=2"))  # and between requests
            assert status == 200 and json.loads(body)["params"] == {"i": "2"}
            await c.aclose()


def test_the_parser_caches_only_short_names() -> None:
    # Header names and methods seen before are kept decoded; clients choose them, so only short ones are.
    from cluster.http import server

    limits = HttpLimits()
    for i in range(600):
        name = f"X-{i:05d}-" + "n" * 1000
        _parse_head(f"M{i:04d}{'m' * 1000} / HTTP/1.1\r\n{name}: v".encode(), limits)
    assert sum(len(name) for name in server._name_cache) <= 512 * 64
    assert sum(len(method) for method in server._method_cache) <= 64 * 64


async def test_connection_close_from_client() -> None:
    with trio.fail_after(GUARD):
        async with running() as (port, stats):
            c = await Client.connect(port)
            await c.send(get("/a", "Connection: close") + get("/never"))
            status, headers, _ = await c.read_response()
            assert status == 200
            assert headers["connection"] == "close"
            assert await c.at_eof()
            await c.aclose()
            assert stats.requests_total == 1


async def test_http10_closes_unless_keep_alive() -> None:
    with trio.fail_after(GUARD):
        async with running() as (port, _):
            c = await Client.connect(port)
            status, headers, _ = await c.request(get("/a", "Connection: Keep-Alive", version="1.0"))
            assert status == 200
            assert headers["connection"] == "keep-alive"
            status, headers, _ = await c.request(b"GET /b HTTP/1.0\r\n\r\n")
            assert status == 200
            assert headers["connection"] == "close"
            assert await c.at_eof()
            await c.aclose()


async def test_max_requests_per_connection() -> None:
    with trio.fail_after(GUARD):
        async with running(limits=HttpLimits(max_requests_per_connection=2)) as (port, _):
            c = await Client.connect(port)
            assert "connection" not in (await c.request(get("/1")))[1]
            assert (await c.request(get("/2")))[1]["connection"] == "close"
            assert await c.at_eof()
            await c.aclose()


async def test_head_sends_headers_only() -> None:
    async def handler(request: Request) -> Response:
        return Response.text(200, f"hello {request.method}")

    with trio.fail_after(GUARD):
        async with running(handler) as (port, _):
            c = await Client.connect(port)
            await c.send(b"HEAD /h HTTP/1.1\r\nHost: t\r\n\r\n" + get("/h"))
            status, headers, _ = await c.read_response(head_only=True)
            assert status == 200
            assert int(headers["content-length"]) == len(b"hello HEAD")
            # The next response starts right after the HEAD's headers: no body bytes were sent.
            assert await c.read_response() == (
                200,
                {"content-type": "text/plain;charset=UTF-8", "content-length": "9"},
                b"hello GET",
            )
            await c.aclose()


async def test_handler_response_options() -> None:
    async def handler(request: Request) -> Response:
        if request.path == "/204":
            return Response(204, b"ignored")
        return Response(
            201, b"created", "text/plain", headers=[("X-Trace", "abc"), ("Content-Length", "999")], close=True
        )

    with trio.fail_after(GUARD):
        async with running(handler) as (port, _):
            c = await Client.connect(port)
            status, headers, body = await c.request(get("/204"))
            assert status == 204
            assert body == b"" and "content-length" not in headers
            status, headers, body = await c.request(get("/other"))
            assert (status, body) == (201, b"created")
            assert headers["x-trace"] == "abc"
            assert headers["content-length"] == "7"  # the handler cannot override framing
            assert headers["content-type"] == "text/plain"
            assert headers["connection"] == "close"
            assert await c.at_eof()
            await c.aclose()


async def test_a_body_in_parts_is_sent_whole_in_order_even_past_the_socket_buffers() -> None:
    """``Response.parts``: one body made of many pieces (more than one ``sendmsg`` takes, and more bytes than
    the socket buffers hold while the client does not read), framed by their total length, kept alive."""
    pieces = tuple(b"%06d:" % i + b"x" * (i % 7000) for i in range(2500))  # ~8.7 MB in 2,500 buffers

    async def handler(request: Request) -> Response:
        if request.path == "/empty":
            return Response(200, parts=(b"", b""))
        if request.path == "/204":
            return Response(204, parts=pieces)
        return Response(200, b"ignored", parts=(b"", *pieces))

    with trio.fail_after(GUARD):
        async with running(handler) as (port, _):
            c = await Client.connect(port)
            await c.send(get("/big") + b"HEAD /big HTTP/1.1\r\nHost: t\r\n\r\n" + get("/empty") + get("/204"))
            status, headers, body = await c.read_response()
            assert status == 200 and body == b"".join(pieces)
            assert headers["content-length"] == str(len(body))
            status, headers, body = await c.read_response(head_only=True)
            assert (status, body) == (200, b"") and headers["content-length"] == str(sum(map(len, pieces)))
            assert await c.read_response() == (
                200, {"content-type": "application/json;charset=UTF-8", "content-length": "0"}, b"")
            status, headers, body = await c.read_response()
            assert (status, body) == (204, b"") and "content-length" not in headers
            await c.aclose()


class _TrickleSocket:
    """A socket whose ``sendmsg`` takes only a few bytes (often ending inside a buffer, sometimes none:
    BlockingIOError), recording what it was sent and how many buffers each call carried."""

    def __init__(self, seed: int) -> None:
        import random

        self.rng = random.Random(seed)
        self.out = bytearray()
        self.most_buffers = 0

    def sendmsg(self, buffers: list[memoryview], _ancillary: object, _flags: int) -> int:
        self.most_buffers = max(self.most_buffers, len(buffers))
        if self.rng.random() < 0.2:
            raise BlockingIOError
        room = self.rng.choice([1, 2, 7, 100, 5000, 70000])
        taken = 0
        for buffer in buffers:
            piece = bytes(buffer[: room - taken])
            self.out += piece
            taken += len(piece)
            if taken == room:
                break
        return taken


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=300) | st.sampled_from([b"", b",", b"x" * 9000]), max_size=40), st.integers(0, 99))
def test_send_parts_resumes_partial_writes_exactly(parts: list[bytes], seed: int) -> None:
    """``_send_parts`` against writes that stop anywhere (inside a buffer, at its end, none at all) and with
    more buffers than one call may carry: the bytes sent are the parts' concatenation, in order, once."""
    from cluster.http import server as server_module

    async def writable(_sock: object) -> None:
        await trio.lowlevel.checkpoint()

    sock = _TrickleSocket(seed)
    many = parts * 60  # past _IOV_MAX buffers now and then
    real = server_module.wait_writable
    server_module.wait_writable = writable  # type: ignore[assignment]
    try:
        trio.run(server_module._send_parts, sock, tuple(many))
    finally:
        server_module.wait_writable = real
    assert bytes(sock.out) == b"".join(many)
    assert sock.most_buffers <= server_module._IOV_MAX


async def test_a_fast_handler_answering_with_parts_leaves_the_request_to_the_handler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def fast(request: Request) -> Response | None:
        return Response(200, parts=(b"fast",))

    async def handler(request: Request) -> Response:
        return Response(200, parts=(b"slow", b"-path"))

    with trio.fail_after(GUARD):
        async with running(handler, fast=fast) as (port, _):
            c = await Client.connect(port)
            for _ in range(2):
                status, _headers, body = await c.request(get("/x"))
                assert (status, body) == (200, b"slow-path")
            await c.aclose()
    assert "a fast handler's response must be plain" in caplog.text


# ------------------------------------------------------------------------------------------------ bodies


async def test_chunked_request_body() -> None:
    with trio.fail_after(GUARD):
        async with running() as (port, _):
            c = await Client.connect(port)
            head = (
                b"POST /c?z=0 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n\r\n"
            )
            chunks = [
                b"4;ext=1\r\nip=1\r\n",
                b"A\r\n0.0.0.1&p=\r\n",
                b"2\r\n42\r\n",
                b"0\r\nX-Trailer: t\r\n\r\n",
            ]
            await c.send(head)
            for chunk in chunks:
                await c.send(chunk)
            status, _, body = await c.read_response()
            assert status == 200
            doc = json.loads(body)
            assert doc["body"] == "ip=10.0.0.1&p=42"
            assert doc["params"] == {"z": "0", "ip": "10.0.0.1", "p": "42"}
            # the connection is still in sync after the trailer
            assert (await c.request(get("/after")))[0] == 200
            await c.aclose()


async def test_chunked_body_too_large_is_413() -> None:
    with trio.fail_after(GUARD):
        async with running(limits=HttpLimits(max_body_bytes=10)) as (port, stats):
            c = await Client.connect(port)
            status, headers, _ = await c.request(
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n"
            )
            assert status == 413 and headers["connection"] == "close"
            assert await c.at_eof()
            await c.aclose()
            assert stats.responses_by_status == {413: 1}


async def test_expect_100_continue() -> None:
    with trio.fail_after(GUARD):
        async with running() as (port, _):
            c = await Client.connect(port)
            await c.send(
                b"POST /e HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nExpect: 100-continue\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n\r\n"
            )
            assert await c.read_exactly(25) == b"HTTP/1.1 100 Continue\r\n\r\n"
            await c.send(b"a=1")
            status, _, body = await c.read_response()
            assert status == 200
            assert json.loads(body)["params"] == {"a": "1"}
            await c.aclose()


async def test_expect_100_continue_with_too_large_body_is_413_without_continue() -> None:
    with trio.fail_after(GUARD):
        async with running(limits=HttpLimits(max_body_bytes=100)) as (port, _):
            c = await Client.connect(port)
            await c.send(
                b"POST /e HTTP/1.1\r\nHost: t\r\nContent-Length: 101\r\nExpect: 100-continue\r\n\r\n"
            )
            status, headers, _ = await c.read_response()
            assert status == 413
            assert headers["connection"] == "close"
            assert await c.at_eof()
            await c.aclose()


# ------------------------------------------------------------------------------------------------ errors


async def test_body_too_large_is_413_even_while_the_client_keeps_sending() -> None:
    with trio.fail_after(GUARD):
        async with running(limits=HttpLimits(max_body_bytes=1000)) as (port, _):
            c = await Client.connect(port)
            await c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 200000\r\n\r\n" + b"x" * 100_000)
            status, headers, body = await c.read_response()
            assert status == 413
            assert headers["connection"] == "close"
            assert headers["content-type"] == "text/plain;charset=UTF-8"
            assert b"too large" in body
            await c.aclose()


async def test_request_line_too_long_is_414() -> None:
    with trio.fail_after(GUARD):
        async with running(limits=HttpLimits(max_request_line_bytes=100)) as (port, _):
            c = await Client.connect(port)
            status, headers, _ = await c.request(get("/" + "a" * 200))
            assert status == 414 and headers["connection"] == "close"
            # also without ever finishing the line
            c2 = await Client.connect(port)
            await c2.send(b"GET /" + b"b" * 500)
            assert (await c2.read_response())[0] == 414
            # a line of exactly the limit is fine
            c3 = await Client.connect(port)
            target = "/" + "c" * (100 - len("GET  HTTP/1.1") - 1)
            assert len(f"GET {target} HTTP/1.1") == 100
            assert (await c3.request(get(target)))[0] == 200
            for client in (c, c2, c3):
                await client.aclose()


@pytest.mark.parametrize(
    "extra",
    [
        [f"X-H{i}: v" for i in range(20)],  # too many
        ["X-Big: " + "v" * 600],  # too big
    ],
    ids=["count", "size"],
)
async def test_header_block_too_large_is_431(extra: list[str]) -> None:
    with trio.fail_after(GUARD):
        limits = HttpLimits(max_header_count=10, max_header_bytes=512)
        async with running(limits=limits) as (port, stats):
            c = await Client.connect(port)
            status, headers, _ = await c.request(get("/", *extra))
            assert status == 431 and headers["connection"] == "close"
            assert await c.at_eof()
            await c.aclose()
            assert stats.requests_total == 0


async def test_unfinished_header_block_too_large_is_431() -> None:
    with trio.fail_after(GUARD):
        async with running(limits=HttpLimits(max_header_bytes=512)) as (port, _):
            c = await Client.connect(port)
            await c.send(b"GET / HTTP/1.1\r\nX-Big: " + b"v" * 2000)
            assert (await c.read_response())[0] == 431
            await c.aclose()


GARBAGE = {
    "binary": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",  # a TLS client hello
    "non-ascii-target": "GET /caf\u00e9 HTTP/1.1\r\nHost: t\r\n\r\n".encode(),
    "no-version": b"GET /\r\n\r\n",
    "http2-preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "http09-version": b"GET / HTTP/0.9\r\n\r\n",
    "lowercase-http": b"GET / http/1.1\r\n\r\n",
    "double-space": b"GET  / HTTP/1.1\r\n\r\n",
    "space-before-colon": b"GET / HTTP/1.1\r\nHost : t\r\n\r\n",
    "no-colon": b"GET / HTTP/1.1\r\nHost\r\n\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\nX-A: a\r\n  b\r\n\r\n",
    "bare-lf-in-value": b"GET / HTTP/1.1\r\nX-A: a\nb: c\r\n\r\n",
    "nul-in-value": b"GET / HTTP/1.1\r\nX-A: a\x00b\r\n\r\n",
    "negative-length": b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    "plus-length": b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\nx",
    "hex-length": b"POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n",
    "unicode-digit-length": b"POST / HTTP/1.1\r\nContent-Length: \xb2\r\n\r\n",
    "conflicting-lengths": b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
    "length-and-chunked": b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "bad-chunk-size": b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "bad-chunk-end": b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxyz\r\n",
    "relative-target": b"GET nacos/v1 HTTP/1.1\r\n\r\n",
}


@pytest.mark.parametrize("raw", list(GARBAGE.values()), ids=list(GARBAGE))
async def test_garbage_is_400_and_the_server_keeps_serving(raw: bytes) -> None:
    with trio.fail_after(GUARD):
        async with running() as (port, stats):
            c = await Client.connect(port)
            status, headers, _ = await c.request(raw)
            assert status == 400
            assert headers["connection"] == "close"
            assert headers["content-type"] == "text/plain;charset=UTF-8"
            assert await c.at_eof()
            await c.aclose()
            c = await Client.connect(port)
            assert (await c.request(get("/ok")))[0] == 200
            await c.aclose()
            assert stats.responses_by_status == {400: 1, 200: 1}


async def test_identical_repeated_content_length_is_accepted() -> None:
    with trio.fail_after(GUARD):
        async with running() as (port, _):
            c = await Client.connect(port)
            status, _, body = await c.request(
                b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\na=1"
            )
            assert status == 200 and json.loads(body)["params"] == {"a": "1"}
            await c.aclose()


async def test_unknown_transfer_encoding_is_501() -> None:
    with trio.fail_after(GUARD):
        async with running() as (port, _):
            c = await Client.connect(port)
            status, headers, body = await c.request(
                b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            )
            assert status == 501
            assert headers["connection"] == "close"
            assert headers["content-type"] == "text/plain;charset=UTF-8"
            assert b"gzip" in body
            await c.aclose()


async def test_handler_exception_is_500_and_the_connection_stays_usable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def handler(request: Request) -> Response:
        if request.path == "/boom":
            raise RuntimeError("service not found")
        return Response.text(200, "fine")

    with trio.fail_after(GUARD):
        async with running(handler) as (port, stats):
            c = await Client.connect(port)
            with caplog.at_level(logging.ERROR, logger="cluster.http.server"):
                status, headers, body = await c.request(post("/boom", b"a=1"))
            assert status == 500
            assert body == b"caused: service not found;"
            assert headers["content-type"] == "text/plain;charset=UTF-8"
            assert "connection" not in headers
            assert any(r.exc_info and r.exc_info[0] is RuntimeError for r in caplog.records)
            assert await c.request(get("/next")) == (200, {**headers, "content-length": "4"}, b"fine")
            await c.aclose()
            assert stats.responses_by_status == {500: 1, 200: 1}


async def test_handler_returning_garbage_is_500() -> None:
    async def handler(request: Request) -> Response:
        return Response(200, b"x", headers=[("Bad\r\nHeader", "v")])

    with trio.fail_after(GUARD):
        async with running(handler) as (port, _):
            c = await Client.connect(port)
            status, _, body = await c.request(get("/"))
            assert status == 500
            assert body.startswith(b"caused: ")
            await c.aclose()


# ------------------------------------------------------------------------------------ slow clients, limits


class Trickle:
    """Send bytes one at a time with a pause between them until the server hangs up."""

    def __init__(self, client: Client, data: bytes, pause: float) -> None:
        self.client, self.data, self.pause = client, data, pause
        self.sent = 0

    async def run(self) -> None:
        try:
            for i in range(len(self.data)):
                await self.client.send(self.data[i : i + 1])
                self.sent += 1
                await trio.sleep(self.pause)  # virtual time under autojump_clock
        except trio.BrokenResourceError:
            pass


async def test_slowloris_headers_cut_off_by_request_timeout(autojump_clock: trio.testing.MockClock) -> None:
    limits = HttpLimits(request_timeout_ms=2000, idle_timeout_ms=60_000)
    with trio.fail_after(30):
        async with running(limits=limits) as (port, stats), trio.open_nursery() as nursery:
            c = await Client.connect(port)
            trickle = Trickle(c, get("/", *[f"X-{i}: {'v' * 20}" for i in range(20)]), pause=0.1)
            start = trio.current_time()
            nursery.start_soon(trickle.run)
            status, headers, _ = await c.read_response()
            elapsed = trio.current_time() - start
            assert status == 408
            assert headers["connection"] == "close"
            assert 2.0 <= elapsed < 2.2
            assert trickle.sent < len(trickle.data)
            assert await c.at_eof()
            nursery.cancel_scope.cancel()
            await c.aclose()
            assert stats.requests_total == 0


async def test_slow_body_cut_off_by_request_timeout(autojump_clock: trio.testing.MockClock) -> None:
    limits = HttpLimits(request_timeout_ms=3000)
    with trio.fail_after(30):
        async with running(limits=limits) as (port, _), trio.open_nursery() as nursery:
            c = await Client.connect(port)
            start = trio.current_time()
            await c.send(b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n")
            nursery.start_soon(Trickle(c, b"x" * 100, pause=0.5).run)
            assert (await c.read_response())[0] == 408
            assert 3.0 <= trio.current_time() - start < 3.2
            nursery.cancel_scope.cancel()
            await c.aclose()


async def test_silent_new_connection_is_closed(autojump_clock: trio.testing.MockClock) -> None:
    limits = HttpLimits(request_timeout_ms=5000, idle_timeout_ms=60_000)
    with trio.fail_after(30):
        async with running(limits=limits) as (port, stats):
            c = await Client.connect(port)
            start = trio.current_time()
            assert await c.at_eof()  # closed without a response: nothing of a request was received
            assert 5.0 <= trio.current_time() - start < 5.2
            await c.aclose()
            assert stats.responses_by_status == {}


async def test_idle_keep_alive_connection_is_closed(autojump_clock: trio.testing.MockClock) -> None:
    limits = HttpLimits(request_timeout_ms=1000, idle_timeout_ms=7000)
    with trio.fail_after(30):
        async with running(limits=limits) as (port, stats):
            c = await Client.connect(port)
            assert (await c.request(get("/")))[0] == 200
            start = trio.current_time()
            await trio.sleep(6.5)  # idle, but within idle_timeout: still open
            assert (await c.request(get("/")))[0] == 200
            assert await c.at_eof()
            assert 13.5 <= trio.current_time() - start < 13.7
            await c.aclose()
            await trio.testing.wait_all_tasks_blocked()
            assert stats.connections_open == 0


async def test_slow_handler_is_not_subject_to_request_timeout(autojump_clock: trio.testing.MockClock) -> None:
    async def handler(request: Request) -> Response:
        await trio.sleep(30)
        return Response.text(200, "late")

    limits = HttpLimits(request_timeout_ms=1000, idle_timeout_ms=2000)
    with trio.fail_after(60):
        async with running(handler, limits) as (port, _):
            c = await Client.connect(port)
            assert await c.request(get("/")) == (
                200,
                {"content-type": "text/plain;charset=UTF-8", "content-length": "4"},
                b"late",
            )
            await c.aclose()


async def test_max_connections() -> None:
    with trio.fail_after(GUARD):
        async with running(limits=HttpLimits(max_connections=2)) as (port, stats):
            c1 = await Client.connect(port)
            c2 = await Client.connect(port)
            assert (await c1.request(get("/1")))[0] == 200
            assert (await c2.request(get("/2")))[0] == 200
            assert stats.connections_open == 2
            # both busy (half a request each): nothing idle to shed, so a third is refused
            await c1.send(b"GET /half")
            await c2.send(b"GET /half")
            await trio.testing.wait_all_tasks_blocked()
            c3 = await Client.connect(port)
            assert await refused_or_closed(c3)
            await c3.aclose()
            assert stats.rejected_connections_total == 1
            assert stats.connections_total == 2
            # after one closes, a new connection is served
            await c1.aclose()
            await trio.testing.wait_all_tasks_blocked()
            assert stats.connections_open == 1
            c4 = await Client.connect(port)
            assert (await c4.request(get("/4")))[0] == 200
            await c2.send(b" HTTP/1.1\r\nHost: t\r\n\r\n")
            assert (await c2.read_response())[0] == 200
            await c2.aclose()
            await c4.aclose()


async def refused_or_closed(c: Client) -> bool:
    """True when the server answered 503 and closed, or just closed, a connection it would not serve."""
    try:
        status, headers, _ = await c.read_response()
    except EOFError as exc:
        return exc.args == (b"",)
    return status == 503 and headers["connection"] == "close" and await c.at_eof()


async def test_one_address_cannot_hold_every_connection() -> None:
    # Issue 14, finding 3: one address holding more idle keep-alive sockets than max_connections got every
    # other client a 503. Now each address has its own cap below the global one.
    limits = HttpLimits(max_connections=6, max_connections_per_ip=3)
    with trio.fail_after(GUARD):
        async with running(limits=limits) as (port, stats):
            hog = [await Client.connect(port) for _ in range(3)]
            for c in hog:
                assert (await c.request(get("/mine")))[0] == 200  # three idle keep-alive connections now
            extra = await Client.connect(port)
            assert await refused_or_closed(extra)
            assert stats.rejected_per_ip_total == 1
            other = await Client.connect_from(port, "127.0.0.2")
            assert (await other.request(get("/healthz")))[0] == 200
            for c in [*hog, extra, other]:
                await c.aclose()


async def test_at_the_global_cap_the_oldest_idle_connection_makes_room() -> None:
    # Many addresses together: idle keep-alive connections are shed (oldest first) before anyone is refused.
    limits = HttpLimits(max_connections=4, max_connections_per_ip=4)
    with trio.fail_after(GUARD):
        async with running(limits=limits) as (port, stats):
            idle = [await Client.connect_from(port, f"127.0.0.{i + 10}") for i in range(4)]
            for c in idle:
                assert (await c.request(get("/idle")))[0] == 200
            newcomer = await Client.connect_from(port, "127.0.0.20")
            assert (await newcomer.request(get("/new")))[0] == 200
            assert await idle[0].at_eof()  # the oldest idle one was closed to make room
            assert (await idle[1].request(get("/still")))[0] == 200
            assert stats.idle_evicted_total == 1 and stats.rejected_connections_total == 0
            for c in [*idle, newcomer]:
                await c.aclose()


_LOW_FD_SERVER = """
import resource, sys, trio
from functools import partial
from cluster.http import HttpLimits, Response, serve_http
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
async def handler(request):
    return Response.text(200, "ok")
async def main():
    async with trio.open_nursery() as nursery:
        port = await nursery.start(partial(serve_http, handler, "127.0.0.1", 0, HttpLimits(max_connections=1000,
                                           max_connections_per_ip=1000)))
        print(port, flush=True)
trio.run(main)
"""


async def test_out_of_descriptors_clients_get_503_not_silence() -> None:
    # Issue 14, finding 3: at the soft file limit accept() failed with EMFILE and the clients waiting in the
    # backlog hung. Now a reserved descriptor takes each of them and answers 503.
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", _LOW_FD_SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        with trio.fail_after(GUARD):
            clients = [await Client.connect(port) for _ in range(100)]  # more than 64 descriptors' worth
            for c in clients:
                await c.send(get("/x"))
            statuses = []
            for c in clients:
                try:
                    statuses.append((await c.read_response())[0])
                except EOFError:
                    statuses.append(0)
            assert statuses.count(200) >= 40 and statuses.count(503) >= 30, statuses
            assert set(statuses) <= {200, 503}
            for c in clients:
                await c.aclose()
            # the server is still fine: once it has seen those clients go (it may take a moment on a busy
            # machine), a new client is served again
            while True:
                late = await Client.connect(port)
                status = (await late.request(get("/y")))[0]
                await late.aclose()
                if status == 200:
                    break
                assert status == 503
                await trio.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()


async def test_server_stops_when_cancelled() -> None:
    with trio.fail_after(GUARD):
        async with running() as (port, _):
            c = await Client.connect(port)
            assert (await c.request(get("/")))[0] == 200
        # the nursery was cancelled: the connection is closed and nobody listens any more
        assert await c.at_eof()
        await c.aclose()
        with pytest.raises(OSError):
            await trio.open_tcp_stream("127.0.0.1", port)


async def test_client_that_does_not_read_is_cut_off_by_idle_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    big = b"x" * (64 * 1024 * 1024)  # far more than the socket buffers hold

    async def handler(request: Request) -> Response:
        return Response(200, big, "application/octet-stream")

    limits = HttpLimits(idle_timeout_ms=5000)
    with trio.fail_after(60):
        async with running(handler, limits) as (port, stats):
            c = await Client.connect(port)
            await c.send(get("/big"))
            start = trio.current_time()
            await trio.sleep(4)
            await trio.testing.wait_all_tasks_blocked()
            assert stats.connections_open == 1  # still trying to write
            await trio.sleep(1.5)
            await trio.testing.wait_all_tasks_blocked()
            assert stats.connections_open == 0
            assert trio.current_time() - start < 6
            await c.aclose()


async def test_unsupported_expectation_is_417() -> None:
    with trio.fail_after(GUARD):
        async with running() as (port, _):
            c = await Client.connect(port)
            status, headers, _ = await c.request(
                b"POST / HTTP/1.1\r\nContent-Length: 3\r\nExpect: something-else\r\n\r\n"
            )
            assert status == 417 and headers["connection"] == "close"
            await c.aclose()


async def test_http10_post_with_body() -> None:
    with trio.fail_after(GUARD):
        async with running() as (port, _):
            c = await Client.connect(port)
            status, headers, body = await c.request(
                b"POST /x?a=0 HTTP/1.0\r\nContent-Length: 7\r\n\r\nb=1&a=2"
            )
            assert status == 200 and headers["connection"] == "close"
            assert json.loads(body)["params"] == {"a": "0", "b": "1"}
            await c.aclose()


# ------------------------------------------------------------------------------------------ parser fuzzing


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_parse_head_never_raises_anything_but_http_errors(raw: bytes) -> None:
    try:
        method, path, _, _, headers = _parse_head(raw, HttpLimits())
    except _HttpError as exc:
        assert exc.status in (400, 414, 431)
    else:
        assert method and path and all(name == name.lower() for name in headers)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.text(max_size=8), st.text(max_size=8)),
        max_size=5,
    ),
    st.binary(max_size=40),
)
def test_merge_params_never_raises(pairs: list[tuple[str, str]], body: bytes) -> None:
    query = "&".join(f"{k}={v}" for k, v in pairs)
    params = merge_params(query, body, None)
    assert all(isinstance(k, str) and isinstance(v, str) and v == v.strip() for k, v in params.items())


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("%%%0123456789abcdefABCDEFgz+/\u00e9\u20ac\U0001f600"), max_size=30))
def test_percent_decode_matches_urllib(text: str) -> None:
    assert percent_decode(text) == unquote(text, errors="replace")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_percent_decode_matches_urllib_on_any_text(text: str) -> None:
    assert percent_decode(text) == unquote(text, errors="replace")


# ------------------------------------------------------------------------------------------------
# The keep-alive lane (cluster/http/lane.py): a fast handler answering inline
# ------------------------------------------------------------------------------------------------
class Fast:
    """Answers ``GET /fast`` at once and counts what it saw; leaves everything else to the handler."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, request: Request) -> Response | None:
        self.seen.append(request.query)
        if request.path != "/fast":
            return None
        return Response.text(200, f"fast {request.query}" + (f" {request.body.decode()}" if request.body else ""))


async def test_fast_handler_answers_keep_alive_requests_inline() -> None:
    fast = Fast()
    async with running(fast=fast) as (port, stats):
        client = await Client.connect(port)
        status, _, body = await client.request(get("/fast?n=0"))  # a new connection's first request: its task
        assert (status, fast.seen) == (200, [])
        assert json.loads(body)["path"] == "/fast"
        for n in range(1, 4):
            status, headers, body = await client.request(get(f"/fast?n={n}"))
            assert (status, body, headers["content-length"]) == (200, f"fast n={n}".encode(), str(len(body)))
        # pipelined, in one segment: answered in order, inline
        await client.send(get("/fast?n=4") + get("/fast?n=5") + get("/fast?n=6"))
        assert [(await client.read_response())[2] for _ in range(3)] == [b"fast n=4", b"fast n=5", b"fast n=6"]
        assert fast.seen == [f"n={n}" for n in range(1, 7)]
        # what the fast handler leaves goes to the handler, on the same connection, in order (and what was
        # read with it as well: the task answers what its buffer holds)
        await client.send(get("/slow?n=7") + get("/fast?n=8"))
        first, second = await client.read_response(), await client.read_response()
        assert json.loads(first[2])["query"] == "n=7" and json.loads(second[2])["query"] == "n=8"
        assert (await client.request(get("/fast?n=8")))[2] == b"fast n=8"  # parked again: inline
        # a Content-Length body read whole is the fast handler's too (a form, as the Java client sends)
        status, _, body = await client.request(post("/fast?n=b", b"a=1"))
        assert body == b"fast n=b a=1"
        # a body still arriving, or Connection: close, is the connection task's
        await client.send(post("/fast?n=c", b"a=12")[:-1])
        await trio.testing.wait_all_tasks_blocked()
        await client.send(b"2")
        status, _, body = await client.read_response()
        assert json.loads(body)["body"] == "a=12"
        status, headers, body = await client.request(get("/fast?n=9", "Connection: close"))
        assert json.loads(body)["query"] == "n=9" and headers["connection"] == "close"
        assert await client.at_eof()
        assert stats.requests_total == 13 and stats.responses_by_status == {200: 13}
        assert stats.inline_requests_total == 8  # n=1..6, the last n=8 and n=b
        assert fast.seen == [f"n={n}" for n in range(1, 9)] + ["n=b"]


async def test_a_parked_connection_closed_by_its_client_is_closed() -> None:
    fast = Fast()
    async with running(fast=fast) as (port, stats):
        client = await Client.connect(port)
        await client.request(get("/fast"))
        await client.request(get("/fast"))  # answered inline: the connection is parked
        await client.aclose()
        await wait_for(lambda: stats.connections_open == 0)


async def test_a_parked_connection_is_closed_when_idle(autojump_clock: trio.testing.MockClock) -> None:
    fast = Fast()
    async with running(fast=fast, limits=HttpLimits(idle_timeout_ms=2_000)) as (port, stats):
        client = await Client.connect(port)
        await client.request(get("/fast"))
        await client.request(get("/fast"))
        await trio.sleep(1.5)
        await client.request(get("/fast"))  # inline: it waits for its next request from now on
        await trio.sleep(1.5)
        assert stats.connections_open == 1
        with trio.fail_after(GUARD):
            assert await client.at_eof()
        assert stats.connections_open == 0


async def test_a_fast_handler_that_raises_leaves_the_request_to_the_handler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(request: Request) -> Response | None:
        raise RuntimeError("boom")

    async with running(fast=broken) as (port, _):
        client = await Client.connect(port)
        for _ in range(3):
            status, _, body = await client.request(get("/x?a=1"))
            assert status == 200 and json.loads(body)["query"] == "a=1"
    assert "fast HTTP handler failed" in caplog.text


class Later:
    """Promises ``GET /later`` (answered when the test resolves it), answers ``GET /now`` through a promise
    resolved at once, answers ``GET /fast`` at once; leaves everything else to the handler."""

    def __init__(self) -> None:
        self.pending: list[tuple[str, Deferred]] = []
        self.deferred = trio.Event()  # set whenever a request is deferred

    def __call__(self, request: Request) -> Response | Deferred | None:
        if request.path == "/fast":
            return Response.text(200, f"fast {request.query}")
        if request.path == "/now":
            done = Deferred()
            done.resolve(Response.text(200, f"now {request.query}"))
            return done
        if request.path != "/later":
            return None
        promise = Deferred()
        self.pending.append((request.query, promise))
        self.deferred.set()
        return promise

    async def next_deferred(self) -> tuple[str, Deferred]:
        with trio.fail_after(GUARD):
            await self.deferred.wait()
        self.deferred = trio.Event()
        return self.pending.pop(0)


async def _parked(client: Client) -> None:
    """The connection's first request (its task's), so that the next one is the lane's."""
    status, _, _ = await client.request(get("/first"))
    assert status == 200


@asynccontextmanager
async def parked_client(fast: FastHandler, limits: HttpLimits | None = None) -> AsyncIterator[tuple[Client, HttpStats]]:
    """A server with the lane (``fast``) and a client whose connection waits in it (:func:`_parked`)."""
    async with running(fast=fast, limits=limits) as (port, stats):
        client = await Client.connect(port)
        await _parked(client)
        yield client, stats


async def test_a_deferred_answer_is_sent_when_resolved_and_the_connection_stays_in_the_lane() -> None:
    later = Later()
    async with parked_client(later) as (client, stats):
        for n in range(3):
            await client.send(get(f"/later?n={n}"))
            query, promise = await later.next_deferred()
            assert query == f"n={n}"
            promise.resolve(Response.text(200, f"later {query}"))
            promise.resolve(Response.text(500, "ignored: resolved once"))
            status, headers, body = await client.read_response()
            assert (status, body, headers["content-length"]) == (200, f"later n={n}".encode(), str(len(body)))
        assert (await client.request(get("/now?n=3")))[2] == b"now n=3"  # resolved before it was returned
        assert (await client.request(get("/fast?n=4")))[2] == b"fast n=4"
        assert stats.requests_total == 6 and stats.inline_requests_total == 5
        assert stats.responses_by_status == {200: 6}


async def test_requests_pipelined_behind_a_deferred_answer_follow_it_in_order() -> None:
    later = Later()
    async with parked_client(later) as (client, stats):
        # in the same segment: read with it, they wait for it, then the connection's task answers them
        await client.send(get("/later?n=1") + get("/x?n=2") + get("/fast?n=3"))
        _, first = await later.next_deferred()
        # after it: read while the answer is awaited (the lane stops watching the socket meanwhile)
        await client.send(get("/x?n=4"))
        await trio.testing.wait_all_tasks_blocked()
        first.resolve(Response.text(200, "later n=1"))
        answers = [await client.read_response() for _ in range(4)]
        assert answers[0][2] == b"later n=1"
        assert [json.loads(body)["query"] for _, _, body in answers[1:]] == ["n=2", "n=3", "n=4"]
        # the task parks the connection again: the lane defers and answers as before
        await client.send(get("/later?n=5"))
        _, fifth = await later.next_deferred()
        fifth.resolve(Response.text(200, "later n=5"))
        assert (await client.read_response())[2] == b"later n=5"
        assert stats.requests_total == 6 and stats.inline_requests_total == 2


async def test_a_deferred_answer_to_a_client_that_left_closes_the_connection() -> None:
    later = Later()
    async with parked_client(later) as (client, stats):
        await client.send(get("/later"))
        _, promise = await later.next_deferred()
        await client.aclose()
        await trio.testing.wait_all_tasks_blocked()
        assert stats.connections_open == 1  # it waits for its answer
        promise.resolve(Response.text(200, "too late"))
        await wait_for(lambda: stats.connections_open == 0)


async def test_requests_read_with_a_deferred_one_are_answered_when_the_client_half_closed() -> None:
    # A client that sends its requests then shuts down its sending side (pipelining with a half-close)
    # is answered every request before the connection closes, as by the connection's task; the lane read
    # the end of the stream while the answer was awaited, and the second request used to be dropped.
    later = Later()
    async with parked_client(later) as (client, stats):
        await client.send(get("/later?n=1") + get("/x?n=2") + get("/fast?n=3"))
        _, first = await later.next_deferred()
        await client.stream.send_eof()
        await trio.testing.wait_all_tasks_blocked()
        first.resolve(Response.text(200, "later n=1"))
        answers = [await client.read_response() for _ in range(3)]
        assert answers[0][2] == b"later n=1"
        assert [json.loads(body)["query"] for _, _, body in answers[1:]] == ["n=2", "n=3"]
        with trio.fail_after(GUARD):
            assert await client.at_eof()
        await wait_for(lambda: stats.connections_open == 0)
        assert stats.responses_by_status == {200: 4}


async def test_a_deferred_answer_resolved_after_the_connection_closed_is_dropped() -> None:
    later = Later()
    async with parked_client(later) as (client, stats):
        await client.send(get("/later"))
        _, promise = await later.next_deferred()
    # the server stopped (every connection closed) before the answer came: nothing to send it on
    promise.resolve(Response.text(200, "too late"))
    assert stats.connections_open == 0 and stats.responses_by_status == {200: 1}


async def test_a_connection_awaiting_a_deferred_answer_is_not_reaped_as_idle(
    autojump_clock: trio.testing.MockClock,
) -> None:
    later = Later()
    async with parked_client(later, HttpLimits(idle_timeout_ms=2_000)) as (client, stats):
        await client.send(get("/later"))
        _, promise = await later.next_deferred()
        await trio.sleep(10)
        assert stats.connections_open == 1
        promise.resolve(Response.text(200, "late but answered"))
        assert (await client.read_response())[2] == b"late but answered"
        with trio.fail_after(GUARD):  # idle from its answer on: reaped after the idle timeout
            assert await client.at_eof()
        assert stats.connections_open == 0


async def test_the_fast_step_is_entered_around_each_step_of_the_lane() -> None:
    """``fast_step`` (NodeRuntime.batch in a node) wraps every step of the lane task: the fast handler runs
    inside it, the connection's task (its first request) outside."""
    depth = [0]
    seen: list[int] = []

    @contextmanager
    def step() -> Iterator[None]:
        depth[0] += 1
        try:
            yield
        finally:
            depth[0] -= 1

    def fast(request: Request) -> Response | None:
        seen.append(depth[0])
        return Response.text(200, "fast") if request.path == "/fast" else None

    async with running(fast=fast, fast_step=step) as (port, stats):
        client = await Client.connect(port)
        assert json.loads((await client.request(get("/fast")))[2])["path"] == "/fast"  # its task's
        for _ in range(3):
            assert (await client.request(get("/fast")))[2] == b"fast"
        await client.send(get("/fast") + get("/fast"))
        assert [(await client.read_response())[2] for _ in range(2)] == [b"fast", b"fast"]
        assert seen == [1] * 5 and depth == [0] and stats.inline_requests_total == 5


async def test_a_lane_step_that_fails_as_it_ends_is_counted_and_the_server_serves_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An unexpected error as a step of the lane ends (in a node: NodeRuntime.batch carrying out the step's
    effects) is logged and counted; it ends neither the server nor a connection (it used to end the lane task
    and with it the whole server)."""
    fail = [False]

    @contextmanager
    def step() -> Iterator[None]:
        yield
        if fail[0]:
            fail[0] = False
            raise RuntimeError("a bug in the step's dispatch")

    def fast(request: Request) -> Response | None:
        return Response.text(200, f"fast {request.query}") if request.path == "/fast" else None

    async with running(fast=fast, fast_step=step) as (port, stats):
        first = await Client.connect(port)
        await _parked(first)
        fail[0] = True
        assert (await first.request(get("/fast?n=1")))[2] == b"fast n=1"  # sent before the step ended
        assert stats.lane_errors_total == 1 and not fail[0]
        other = await Client.connect(port)  # a new connection: its task, then the lane
        await _parked(other)
        assert (await other.request(get("/fast?n=2")))[2] == b"fast n=2"
        assert (await first.request(get("/fast?n=3")))[2] == b"fast n=3"
        assert stats.connections_open == 2 and stats.inline_requests_total == 3
    assert "a step failed as it ended" in caplog.text


async def wait_for(predicate: Callable[[], bool]) -> None:
    with trio.fail_after(GUARD):
        while not predicate():
            await trio.sleep(0.01)
