"""TLS on the gRPC port (``--grpc-tls``): the front door of tests/grpc/test_server.py behind ``trio.SSLStream`` with
the context of cluster.node.tls.grpc_server_context (ALPN h2), on real sockets, certificates from scripts/make-certs.

A client that verifies the node against the CA and negotiates h2 is served as over plaintext; plaintext HTTP/2,
junk and a handshake that stops half way are closed, counted in /metrics, and never hold a connection slot past
``tls_handshake_timeout_ms``."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from cluster.grpc.connection import GrpcLimits
from cluster.node.settings import ConfigError, parse_settings
from cluster.node.tls import TlsFiles, grpc_server_context
from tests.grpc.h2client import GrpcTestClient
from tests.grpc.test_server import Node, one_node, register_body
from tests.polling import wait_for
from tests.tlscerts import make_certs

GUARD_S = 30


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_certs(tmp_path_factory.mktemp("certs"), "node")["node"]


@asynccontextmanager
async def tls_client(node: Node, ca_file: str) -> AsyncIterator[GrpcTestClient]:
    c = await GrpcTestClient.connect_tls(node.port, ca_file)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(c.pump)
        yield c
        await c.aclose()
        nursery.cancel_scope.cancel()


async def closed_without_h2(stream: trio.SocketStream) -> bytes:
    """Everything the server sends until it closes (a TLS alert at most): never an HTTP/2 SETTINGS frame."""
    received = b""
    try:
        while data := await stream.receive_some(65536):
            received += data
    except trio.BrokenResourceError:  # a reset is a close too
        pass
    await stream.aclose()
    return received


def tls_failures(node: Node) -> dict[str, float]:
    """distro_grpc_tls_handshake_failures_total by reason, read from the server's /metrics text."""
    out = {}
    for line in node.server.render_metrics().splitlines():
        if line.startswith("distro_grpc_tls_handshake_failures_total{"):
            labels, value = line.split(" ")
            out[labels.split('"')[1]] = float(value)
    return out


async def test_a_verifying_h2_client_is_served_over_tls(certs: TlsFiles) -> None:
    with trio.fail_after(GUARD_S):
        async with one_node(ssl_context=grpc_server_context(certs)) as node, tls_client(node, certs.ca_file) as c:
            assert isinstance(c.stream, trio.SSLStream)
            assert c.stream.selected_alpn_protocol() == "h2"
            assert c.stream.version() in ("TLSv1.2", "TLSv1.3")
            check = await c.call("ServerCheckRequest", {"module": "internal"})
            assert check["_type"] == "ServerCheckResponse" and check["connectionId"] in node.server.connections
            await c.setup()
            assert (await c.call("InstanceRequest", register_body()))["success"]
            assert node.ips() == ["10.0.0.1"]
            sub = await c.call("SubscribeServiceRequest", {"serviceName": "orders", "subscribe": True, "clusters": ""})
            assert [h["ip"] for h in sub["serviceInfo"]["hosts"]] == ["10.0.0.1"]
        assert tls_failures(node) == {"error": 0, "timeout": 0}


async def test_plaintext_h2_and_junk_are_closed_and_the_port_goes_on_serving(certs: TlsFiles) -> None:
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + an empty SETTINGS
    with trio.fail_after(GUARD_S):
        async with one_node(ssl_context=grpc_server_context(certs)) as node:
            plain = await GrpcTestClient.connect(node.port)  # a gRPC "insecure" channel: prior-knowledge h2
            async with trio.open_nursery() as nursery:
                nursery.start_soon(plain.pump)
                await plain.flush()
                await plain.closed.wait()  # closed by the server, with no h2 frame: no call ever answered
                nursery.cancel_scope.cancel()
            assert plain.messages == {} and plain.trailers == {}
            for junk in (preface, b"\x00" * 100, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"):
                stream = await trio.open_tcp_stream("127.0.0.1", node.port)
                await stream.send_all(junk)
                received = await closed_without_h2(stream)
                assert received[:1] in (b"", b"\x15")  # nothing, or a TLS alert record
            assert tls_failures(node) == {"error": 4, "timeout": 0}
            assert node.server.connections == {} and node.server.stats.accepted == 0
            async with tls_client(node, certs.ca_file) as c:  # the port still serves TLS clients
                await c.setup()
                assert node.server.stats.accepted == 1


async def test_a_client_that_trusts_another_ca_is_refused_by_its_own_side(certs: TlsFiles, tmp_path) -> None:  # type: ignore[no-untyped-def]
    other = make_certs(tmp_path / "other", "node")["node"]
    with trio.fail_after(GUARD_S):
        async with one_node(ssl_context=grpc_server_context(certs)) as node:
            with pytest.raises(trio.BrokenResourceError) as caught:
                await GrpcTestClient.connect_tls(node.port, other.ca_file)
            assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
            # the client gives up: the server's handshake ends
            await wait_for(lambda: tls_failures(node)["error"] == 1, 5, "the failed handshake counted")


async def test_a_stalled_handshake_holds_its_slot_only_until_the_bound(
    certs: TlsFiles, autojump_clock: trio.testing.MockClock
) -> None:
    limits = GrpcLimits(tls_handshake_timeout_ms=3_000)
    with trio.fail_after(GUARD_S):
        async with one_node(ssl_context=grpc_server_context(certs), limits=limits, max_connections=2) as node:
            start = trio.current_time()
            stalled = []
            for _ in range(2):  # the start of a ClientHello, then nothing: both slots taken
                stream = await trio.open_tcp_stream("127.0.0.1", node.port)
                await stream.send_all(b"\x16\x03\x01")
                stalled.append(stream)
            await trio.testing.wait_all_tasks_blocked()
            await wait_for(lambda: node.server._handshaking == 2, 1, "both handshakes started")
            third = await trio.open_tcp_stream("127.0.0.1", node.port)  # over the bound: closed at once
            assert await closed_without_h2(third) == b""
            assert node.server.stats.rejected == 1
            for stream in stalled:
                assert await closed_without_h2(stream) == b""  # closed by the server ...
            assert 3.0 <= trio.current_time() - start < 4.0  # ... at the handshake bound
            assert tls_failures(node) == {"error": 0, "timeout": 2} and node.server._handshaking == 0
            async with tls_client(node, certs.ca_file) as c:  # the slots are free again
                await c.setup()
                assert len(node.server.connections) == 1


def test_grpc_tls_needs_the_certificate_and_the_grpc_port(certs: TlsFiles) -> None:
    files = ["--tls-cert-file", certs.cert_file, "--tls-key-file", certs.key_file]
    with pytest.raises(ConfigError, match="--grpc-tls needs --tls-cert-file and --tls-key-file"):
        parse_settings(["--grpc-tls"])
    with pytest.raises(ConfigError, match="--grpc-tls needs the gRPC port"):
        parse_settings(["--grpc-tls", "--grpc", "false", *files])
    assert not parse_settings(files).grpc_tls
    settings = parse_settings(["--grpc-tls", *files])
    assert settings.grpc_tls and not settings.http_tls


async def test_a_handshake_that_ends_during_a_drain_is_closed(certs: TlsFiles) -> None:
    with trio.fail_after(GUARD_S):
        async with one_node(ssl_context=grpc_server_context(certs)) as node:
            raw = await trio.open_tcp_stream("127.0.0.1", node.port)  # accepted: the server awaits its hello
            await wait_for(lambda: node.server._handshaking == 1, 5, "the handshake started")
            await node.server.drain(60)  # nobody to wait for yet
            context = ssl.create_default_context(cafile=certs.ca_file)
            context.set_alpn_protocols(["h2"])
            tls = trio.SSLStream(raw, context, server_hostname="127.0.0.1")
            await tls.do_handshake()
            received = b""
            try:
                while data := await tls.receive_some(65536):
                    received += data
            except trio.BrokenResourceError:  # closed without close_notify
                pass
            await trio.aclose_forcefully(tls)
            assert received == b""  # not even a SETTINGS frame: closed, not served; it must go to another node
            assert node.server.connections == {} and node.server.stats.accepted == 0

