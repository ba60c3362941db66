"""Peer links over TLS (``PeerLinkConfig.tls``): real sockets, certificates from scripts/make-certs.

* with a CA, both ends verify each other (mutual TLS): a peer whose certificate another CA signed is
  refused in both directions, as is a peer speaking plain TCP;
* what crosses the wire is encrypted (an on-path relay sees none of a frame's content);
* without a CA, links are encrypted and verify no certificate (the cluster secret still decides who links).
"""

from __future__ import annotations

import pytest
import trio

from cluster.node.tls import TlsFiles
from distro.messages import Ping
from tests.cluster.test_peerlink import PROTOCOL_VERSION, Node, RawPeer, cluster, eventually
from tests.cluster.test_peerlink_attacks import Proxy
from tests.tlscerts import make_certs

MARKER = "a marker nobody on the path should read"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TlsFiles]:
    ours = make_certs(tmp_path_factory.mktemp("ca"), "a", "b")
    theirs = make_certs(tmp_path_factory.mktemp("other-ca"), "x")
    return {**ours, **theirs}


async def test_tls_links_carry_frames_and_an_on_path_relay_reads_nothing(certs: dict[str, TlsFiles]) -> None:
    a, b = Node("a", tls=certs["a"]), Node("b", tls=certs["b"])
    async with trio.open_nursery() as nursery:
        await a.start(nursery)
        await b.start(nursery)
        proxy = Proxy(a.port)
        await proxy.serve(nursery)
        b.links.add_peer_address(f"127.0.0.1:{proxy.port}")
        await eventually(lambda: "a" in b.links.connected_peers())
        b.send("a", Ping(True, MARKER))
        await eventually(lambda: a.messages == [("b", Ping(True, MARKER))])
        seen = bytes(proxy.client_bytes)
        assert MARKER.encode() not in seen
        assert b"b.http:8848" not in seen and b"hello" not in seen  # the handshake is inside TLS too
        assert a.stats.handshake_failures == b.stats.handshake_failures == 0
        nursery.cancel_scope.cancel()


async def test_tls_nodes_form_a_full_mesh(certs: dict[str, TlsFiles]) -> None:
    a, b = Node("a", tls=certs["a"]), Node("b", tls=certs["b"])
    async with cluster(a, b):
        a.send("b", Ping(True, "to b"))
        b.send("a", Ping(True, "to a"))
        await eventually(
            lambda: a.messages == [("b", Ping(True, "to a"))] and b.messages == [("a", Ping(True, "to b"))]
        )


async def test_a_certificate_from_another_ca_is_refused_both_ways(certs: dict[str, TlsFiles]) -> None:
    """x knows the cluster secret but its certificate (and CA) are not the cluster's."""
    a, x = Node("a", tls=certs["a"]), Node("x", tls=certs["x"])
    async with trio.open_nursery() as nursery:
        await a.start(nursery)
        await x.start(nursery)
        x.links.add_peer_address(a.address)  # a refuses x's client certificate
        a.links.add_peer_address(x.address)  # a refuses x's server certificate
        await eventually(lambda: a.stats.handshake_failures >= 2 and x.stats.handshake_failures >= 2)
        assert a.connected == x.connected == [] and a.messages == x.messages == []
        assert a.stats.inbound_accepts == x.stats.inbound_accepts == 0
        nursery.cancel_scope.cancel()


async def test_plain_tcp_and_tls_do_not_mix(certs: dict[str, TlsFiles]) -> None:
    a, plain = Node("a", tls=certs["a"]), Node("plain")
    async with trio.open_nursery() as nursery:
        await a.start(nursery)
        await plain.start(nursery)
        plain.links.add_peer_address(a.address)
        a.links.add_peer_address(plain.address)
        await eventually(lambda: a.stats.handshake_failures >= 2 and plain.stats.handshake_failures >= 2)
        assert a.connected == plain.connected == []
        raw = await RawPeer.connect(a.port)  # a hello in clear text is not a TLS ClientHello
        await raw.send_frame(["hello", PROTOCOL_VERSION, "mallory", "m:1", b"n" * 32])
        assert await raw.closed_by_peer()
        nursery.cancel_scope.cancel()


async def test_without_a_ca_links_are_encrypted_and_verify_no_certificate(certs: dict[str, TlsFiles]) -> None:
    no_ca = {name: TlsFiles(files.cert_file, files.key_file) for name, files in certs.items()}
    a, x = Node("a", tls=no_ca["a"]), Node("x", tls=no_ca["x"])  # certificates from two different CAs
    async with trio.open_nursery() as nursery:
        await a.start(nursery)
        await x.start(nursery)
        proxy = Proxy(a.port)
        await proxy.serve(nursery)
        x.links.add_peer_address(f"127.0.0.1:{proxy.port}")
        await eventually(lambda: "a" in x.links.connected_peers())
        x.send("a", Ping(True, MARKER))
        await eventually(lambda: a.messages == [("x", Ping(True, MARKER))])
        assert MARKER.encode() not in bytes(proxy.client_bytes)
        nursery.cancel_scope.cancel()
