"""TLS on the client HTTP port (cluster/http/tlssocket.py): real TLS clients (httpx, curl, openssl s_client)
against the server and against a node started with ``--http-tls``; certificates from scripts/make-certs."""

from __future__ import annotations

import shutil
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio
import trio.testing

from cluster.http import HttpLimits, HttpStats, Request, Response, serve_http
from cluster.node.memlink import MemoryNetwork
from cluster.node.settings import ConfigError, parse_settings
from cluster.node.tls import TlsFiles, server_context
from cluster.node.wiring import NodeServer
from tests.tlscerts import make_certs

GUARD = 30
NS = "/nacos/v1/ns"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_certs(tmp_path_factory.mktemp("certs"), "node")["node"]


async def echo(request: Request) -> Response:
    if request.path == "/big":
        return Response(200, b"x" * 3_000_000, "application/octet-stream")
    if request.path == "/parts":  # a body in pieces: joined for TLS, which has no scatter-gather write
        return Response(200, content_type="application/octet-stream", parts=(b"a" * 1_000_000, b"", b"b" * 2_000_000))
    return Response.json({"path": request.path, "params": request.params(), "body": request.body.decode()})


@asynccontextmanager
async def tls_server(certs: TlsFiles, limits: HttpLimits | None = None) -> AsyncIterator[tuple[int, HttpStats]]:
    stats = HttpStats()
    async with trio.open_nursery() as nursery:
        serve = partial(serve_http, echo, "127.0.0.1", 0, limits or HttpLimits(), stats=stats,
                        ssl_context=server_context(certs))
        port = await nursery.start(serve)
        yield port, stats
        nursery.cancel_scope.cancel()


async def test_httpx_over_tls_keep_alive_bodies_and_a_large_response(certs: TlsFiles) -> None:
    with trio.fail_after(GUARD):
        async with tls_server(certs) as (port, stats), httpx.AsyncClient(
            base_url=f"https://127.0.0.1:{port}", verify=ssl.create_default_context(cafile=certs.ca_file),
            trust_env=False,
        ) as client:
            for i in range(5):  # one connection, kept alive
                response = await client.get("/a", params={"i": str(i)})
                assert response.status_code == 200 and response.json()["params"] == {"i": str(i)}
                assert response.http_version == "HTTP/1.1"
            response = await client.post("/form", data={"name": "é" * 5000})  # a body over several records
            assert response.json()["params"] == {"name": "é" * 5000}
            big = await client.get("/big")  # more than the socket buffers hold: the partial-send path
            assert big.content == b"x" * 3_000_000
            parts = await client.get("/parts")
            assert parts.content == b"a" * 1_000_000 + b"b" * 2_000_000
            assert stats.connections_total == 1 and stats.requests_total == 8


def test_curl_and_openssl_speak_to_it(certs: TlsFiles) -> None:
    if shutil.which("curl") is None or shutil.which("openssl") is None:
        pytest.skip("needs curl and openssl")

    async def run() -> None:
        async with tls_server(certs) as (port, _):
            curl = await trio.run_process(
                ["curl", "-sS", "--cacert", certs.ca_file, f"https://127.0.0.1:{port}/c?x=1"], capture_stdout=True)
            assert b'"params":{"x":"1"}' in curl.stdout
            tls12 = await trio.run_process(
                ["curl", "-sS", "--tlsv1.2", "--tls-max", "1.2", "--cacert", certs.ca_file,
                 f"https://127.0.0.1:{port}/v12"], capture_stdout=True)
            assert b'"path":"/v12"' in tls12.stdout
            s_client = await trio.run_process(
                ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", certs.ca_file, "-quiet",
                 "-verify_return_error"],
                stdin=b"GET /s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", capture_stdout=True,
                capture_stderr=True)
            assert s_client.stdout.startswith(b"HTTP/1.1 200 OK"), s_client.stderr
            too_old = await trio.run_process(
                ["curl", "-sS", "--tlsv1.1", "--tls-max", "1.1", "--cacert", certs.ca_file,
                 f"https://127.0.0.1:{port}/old"], check=False, capture_stdout=True, capture_stderr=True)
            assert too_old.returncode != 0  # TLS 1.2 at least

    trio.run(run)


async def test_plain_http_and_junk_on_the_tls_port_are_closed_and_the_server_goes_on(certs: TlsFiles) -> None:
    with trio.fail_after(GUARD):
        async with tls_server(certs) as (port, _):
            for junk in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01\x00\x05hello", b"\x00" * 100):
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                await stream.send_all(junk)
                with pytest.raises((trio.BrokenResourceError, AssertionError)):
                    while True:  # an alert at most, then the end: never an HTTP answer
                        data = await stream.receive_some(4096)
                        assert data and not data.startswith(b"HTTP/")
                await stream.aclose()
            async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=certs.ca_file)) as client:
                assert (await client.get(f"https://127.0.0.1:{port}/after")).status_code == 200


async def test_a_client_that_never_finishes_its_handshake_is_closed(
    certs: TlsFiles, autojump_clock: trio.testing.MockClock
) -> None:
    limits = HttpLimits(idle_timeout_ms=5_000, request_timeout_ms=2_000)
    with trio.fail_after(GUARD):
        async with tls_server(certs, limits) as (port, stats):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await stream.send_all(b"\x16\x03\x01")  # the start of a ClientHello, then nothing
            start = trio.current_time()
            assert await stream.receive_some(4096) == b""  # closed by the server ...
            assert 2.0 <= trio.current_time() - start < 3.0  # ... after the first-byte timeout
            await trio.testing.wait_all_tasks_blocked()
            assert stats.connections_open == 0


async def test_a_node_with_http_tls_serves_the_api_over_tls(certs: TlsFiles) -> None:
    argv = ["--node-id", "t1", "--host", "127.0.0.1", "--port", "19848", "--http-tls",
            "--tls-cert-file", certs.cert_file, "--tls-key-file", certs.key_file, "--tls-ca-file", certs.ca_file]
    settings = replace(parse_settings(argv), port=0)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            network = MemoryNetwork()
            await nursery.start(network.run)
            server = NodeServer(settings, transport=network.transport)
            port = await nursery.start(server.run)
            verify = ssl.create_default_context(cafile=certs.ca_file)
            async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{port}", verify=verify) as client:
                await trio.sleep(0)
                while (await client.get("/readyz")).status_code != 200:
                    await trio.sleep(0.05)
                response = await client.post(f"{NS}/instance", params={"serviceName": "s", "ip": "10.0.0.1",
                                                                        "port": "80"})
                assert (response.status_code, response.text) == (200, "ok")
                hosts = (await client.get(f"{NS}/instance/list", params={"serviceName": "s"})).json()["hosts"]
                assert [h["ip"] for h in hosts] == ["10.0.0.1"]
            with pytest.raises(httpx.HTTPError):  # and plain HTTP is not served there
                async with httpx.AsyncClient() as plain:
                    await plain.get(f"http://127.0.0.1:{port}/healthz")
            nursery.cancel_scope.cancel()


def test_http_tls_needs_the_certificate(certs: TlsFiles, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--http-tls needs --tls-cert-file and --tls-key-file"):
        parse_settings(["--http-tls"])
    assert not parse_settings(["--tls-cert-file", certs.cert_file, "--tls-key-file", certs.key_file]).http_tls
    assert parse_settings(["--http-tls", "--tls-cert-file", certs.cert_file, "--tls-key-file", certs.key_file]).http_tls


async def test_a_waiting_handler_learns_that_its_tls_client_went_away(certs: TlsFiles) -> None:
    gone: list[str] = []

    async def long_poll(request: Request) -> Response:
        with trio.move_on_after(GUARD):
            await request.client_gone()
            gone.append(request.path)
        return Response.text(200, "late")

    context = ssl.create_default_context(cafile=certs.ca_file)
    context.check_hostname = False
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            serve = partial(serve_http, long_poll, "127.0.0.1", 0, ssl_context=server_context(certs))
            port = await nursery.start(serve)
            for path in ("/closed", "/aborted"):
                stream = trio.SSLStream(await trio.open_tcp_stream("127.0.0.1", port), context)
                await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                await trio.testing.wait_all_tasks_blocked()
                if path == "/closed":
                    await stream.aclose()  # close_notify, then FIN
                else:
                    await stream.transport_stream.aclose()  # no close_notify
                while path not in gone:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    assert gone == ["/closed", "/aborted"]
