"""The peer-link findings of issue 14, each reproduced by an attacker on real sockets.

* an on-path attacker (a TCP proxy between two nodes) injects, replays or reorders frames after the
  handshake: every such frame is refused, closes the connection and counts in ``mac_failures``;
* an impostor on a down peer's port relays a survivor's dial back to the survivor's own port: the survivor
  keeps dialing that address and links to the real peer when it returns;
* anyone who can connect gets nothing from an acceptor that depends on the cluster secret before proving
  knowledge of it (no offline guessing oracle).

The clock-poisoning finding is reproduced on the pure core: tests/distro/test_clock_bounds.py.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgpack
import trio

from cluster.node.peerlink import PROTOCOL_VERSION
from cluster.tools.launcher import free_ports
from distro.codec import encode_message
from distro.messages import Ping, SyncBatch
from tests.cluster.test_peerlink import _LEN, SECRET, Node, RawPeer, eventually, sample_items


def plain_frame(message: object) -> bytes:
    """A frame as an attacker without the per-connection key can make it: length + msgpack."""
    payload = msgpack.packb([encode_message(message)], use_bin_type=True)  # type: ignore[arg-type]
    return _LEN.pack(len(payload)) + payload


class Proxy:
    """A transparent TCP relay from a listening port to ``target``; it can write into the client-to-server
    direction of its connections (between the relayed chunks) and records what the client sent."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.connections = 0
        self.closed = 0
        self.upstream: list[tuple[trio.SocketStream, trio.Lock]] = []
        self.client_bytes = bytearray()  # everything relayed client -> server, all connections

    async def serve(self, nursery: trio.Nursery, port: int = 0) -> None:
        listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        nursery.start_soon(trio.serve_listeners, self._relay, listeners)

    async def _relay(self, client: trio.SocketStream) -> None:
        self.connections += 1
        try:
            server = await trio.open_tcp_stream("127.0.0.1", self.target_port)
        except OSError:
            await client.aclose()
            self.closed += 1
            return
        lock = trio.Lock()
        self.upstream.append((server, lock))

        async def pipe(source: trio.SocketStream, sink: trio.SocketStream, record: bool) -> None:
            try:
                while data := await source.receive_some(65536):
                    if record:
                        self.client_bytes += data
                    async with lock if record else _nothing():
                        await sink.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            nursery.cancel_scope.cancel()

        async with client, server, trio.open_nursery() as nursery:
            nursery.start_soon(pipe, client, server, True)
            nursery.start_soon(pipe, server, client, False)
        self.closed += 1

    async def inject(self, data: bytes) -> None:
        """Write ``data`` into the latest connection, towards the server (the acceptor)."""
        server, lock = self.upstream[-1]
        async with lock:
            await server.send_all(data)


@asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield


async def _linked_through_proxy(nursery: trio.Nursery, a: Node, b: Node) -> Proxy:
    """b dials a through a proxy; returns once b's link to a is up."""
    await a.start(nursery)
    await b.start(nursery)
    proxy = Proxy(a.port)
    await proxy.serve(nursery)
    b.links.add_peer_address(f"127.0.0.1:{proxy.port}")
    await eventually(lambda: "a" in b.links.connected_peers() and a.stats.inbound_links == 1)
    return proxy


# ------------------------------------------------------------------------------------------------
# (a) frames after the handshake are authenticated
# ------------------------------------------------------------------------------------------------


async def test_an_injected_frame_is_refused_and_closes_the_link() -> None:
    a, b = Node("a"), Node("b")
    injected = SyncBatch(sample_items(1))
    async with trio.open_nursery() as nursery:
        proxy = await _linked_through_proxy(nursery, a, b)
        b.send("a", Ping(True, "genuine"))
        await eventually(lambda: a.messages == [("b", Ping(True, "genuine"))])
        await proxy.inject(plain_frame(injected))
        b.send("a", Ping(True, "after"))  # a reads the start of this where the injected frame's tag should be
        # Either the frame is taken (the finding) or the link is cut: wait for one of the two.
        await eventually(lambda: len(a.messages) > 1 or a.stats.bad_frames > 0)
        assert ("b", injected) not in a.messages
        assert a.messages == [("b", Ping(True, "genuine"))]
        assert a.stats.mac_failures == 1 and a.stats.bad_frames == 1
        # b redials (through the proxy) and the link works again.
        await eventually(lambda: a.stats.inbound_accepts == 2 and "a" in b.links.connected_peers())
        b.send("a", Ping(True, "again"))
        await eventually(lambda: a.messages[-1] == ("b", Ping(True, "again")))
        assert ("b", injected) not in a.messages
        nursery.cancel_scope.cancel()


async def test_a_replayed_frame_is_refused() -> None:
    a, b = Node("a"), Node("b")
    async with trio.open_nursery() as nursery:
        proxy = await _linked_through_proxy(nursery, a, b)
        mark = len(proxy.client_bytes)
        b.send("a", Ping(True, "once"))
        await eventually(lambda: a.messages == [("b", Ping(True, "once"))])
        frame = bytes(proxy.client_bytes[mark:])  # exactly that one frame, as it crossed the wire
        await proxy.inject(frame)
        await eventually(lambda: len(a.messages) > 1 or a.stats.bad_frames > 0)
        assert a.messages == [("b", Ping(True, "once"))]
        assert a.stats.mac_failures == 1
        nursery.cancel_scope.cancel()


async def test_a_frame_of_many_messages_is_authenticated_whole() -> None:
    """A frame carrying a batch (everything queued in one loop iteration) has one tag: replaying it, or
    altering one message inside it, is refused and delivers none of it."""
    a, b = Node("a"), Node("b")
    batch = [Ping(True, f"batched {i}") for i in range(5)]
    async with trio.open_nursery() as nursery:
        proxy = await _linked_through_proxy(nursery, a, b)
        mark = len(proxy.client_bytes)
        for message in batch:  # no checkpoint in between: one frame
            b.send("a", message)
        await eventually(lambda: len(a.messages) == len(batch))
        assert a.frames == [("b", len(batch))]
        frame = bytes(proxy.client_bytes[mark:])
        await proxy.inject(frame)  # replayed whole
        await eventually(lambda: len(a.messages) > len(batch) or a.stats.bad_frames > 0)
        assert [m for _, m in a.messages] == batch
        assert a.stats.mac_failures == 1
        # b redials; the same batch altered in one message (same length) is refused too.
        await eventually(lambda: a.stats.inbound_accepts == 2 and "a" in b.links.connected_peers())
        mark = len(proxy.client_bytes)
        for message in batch:
            b.send("a", message)
        await eventually(lambda: len(a.messages) == 2 * len(batch))
        frame = bytes(proxy.client_bytes[mark:])
        assert frame.count(b"batched 3") == 1
        forged = frame.replace(b"batched 3", b"batched 9")
        await proxy.inject(forged)
        await eventually(lambda: a.stats.bad_frames > 1)
        assert a.stats.mac_failures == 2
        assert Ping(True, "batched 9") not in [m for _, m in a.messages]
        nursery.cancel_scope.cancel()


async def test_reordered_frames_are_refused() -> None:
    a, b = Node("a"), Node("b")
    async with trio.open_nursery() as nursery:
        proxy = await _linked_through_proxy(nursery, a, b)
        marks = []
        for text in ("first", "second"):
            marks.append(len(proxy.client_bytes))
            b.send("a", Ping(True, text))
            await eventually(lambda text=text: a.messages[-1:] == [("b", Ping(True, text))])  # type: ignore[misc]
        first = bytes(proxy.client_bytes[marks[0] : marks[1]])
        await proxy.inject(first)  # an old frame where the third is due
        await eventually(lambda: len(a.messages) > 2 or a.stats.bad_frames > 0)
        assert [m for _, m in a.messages] == [Ping(True, "first"), Ping(True, "second")]
        assert a.stats.mac_failures == 1
        nursery.cancel_scope.cancel()


# ------------------------------------------------------------------------------------------------
# (c) "this address is me" is never permanent, and a relay cannot fake it
# ------------------------------------------------------------------------------------------------


async def test_a_relay_to_our_own_port_does_not_stop_us_dialing_the_real_peer() -> None:
    """While b is down, an impostor on b's port relays our dial to our own port. Once b is back (and even
    if b never dials us), we link to it."""
    (b_port,) = free_ports(1, offsets=())
    s = Node("s", reconnect_interval_ms=50)
    async with trio.open_nursery() as nursery:
        await s.start(nursery)
        async with trio.open_nursery() as impostor_nursery:
            impostor = Proxy(s.port)
            await impostor.serve(impostor_nursery, port=b_port)
            s.links.add_peer_address(f"127.0.0.1:{b_port}")
            # One dial went round through the relay and came back to s (not merely timed out under load).
            await eventually(lambda: s.stats.self_dials + s.stats.self_relays >= 1)
            # The finding: s took it for itself and stopped dialing that address for good.
            await eventually(lambda: impostor.closed >= 2 or s.stats.dialers == 0)
            impostor_nursery.cancel_scope.cancel()
        assert s.stats.dialers == 1
        assert s.stats.self_dials == 0  # a relayed connection is never taken for ourselves
        assert s.stats.self_relays >= 1
        b = Node("b")
        await b.start(nursery, port=b_port)  # b does not dial s: s must come by itself
        await eventually(lambda: "b" in s.links.connected_peers())
        s.send("b", Ping(True, "found you"))
        await eventually(lambda: b.messages == [("s", Ping(True, "found you"))])
        nursery.cancel_scope.cancel()


async def test_our_own_address_is_rechecked_with_backoff() -> None:
    a = Node("a", reconnect_interval_ms=10)  # rechecked after 10, 20, 40, ... ms (up to self_recheck_max_ms)
    async with trio.open_nursery() as nursery:
        await a.start(nursery)
        a.links.add_peer_address(a.address)
        await eventually(lambda: a.stats.self_dials >= 1)
        await eventually(lambda: a.stats.self_dials >= 3 or a.stats.dialers == 0)
        stats = a.stats
        assert stats.dialers == 1  # the finding: 0, the address was never dialed again
        assert stats.self_dials >= 3 and stats.self_relays == 0
        assert stats.handshake_failures == 0 and stats.outbound_connects == 0 and stats.inbound_accepts == 0
        nursery.cancel_scope.cancel()


# ------------------------------------------------------------------------------------------------
# (d) no guessing oracle for whoever connects
# ------------------------------------------------------------------------------------------------


async def test_the_acceptor_reveals_nothing_secret_dependent_before_the_dialer_proves_itself() -> None:
    """The answer to a hello holds only public values (tag, id, address) and a fresh nonce: nothing an
    attacker could test guessed secrets against offline. A wrong proof gets the connection closed with no
    frame at all."""
    a = Node("a")
    async with trio.open_nursery() as nursery:
        await a.start(nursery)
        raw = await RawPeer.connect(a.port)
        nonce_d = secrets.token_bytes(32)
        await raw.send_frame(["hello", PROTOCOL_VERSION, "mallory", "m:1", nonce_d])
        challenge = await raw.read_frame()
        assert challenge[:3] == ["challenge", "a", "a.http:8848"]
        assert [type(x) for x in challenge[3:]] == [bytes]  # the acceptor's nonce, nothing else
        assert len(challenge[3]) == 32 and challenge[3] != nonce_d
        await raw.send_frame(["proof", [secrets.token_bytes(32)]])
        try:
            reply = await raw.read_frame()
        except EOFError:
            reply = None
        assert reply is None  # closed without a word: no MAC made with the secret
        await eventually(lambda: a.stats.handshake_failures == 1)
        assert a.stats.inbound_accepts == 0
        nursery.cancel_scope.cancel()


async def test_the_acceptor_answers_the_same_whatever_secret_it_holds() -> None:
    """Two acceptors with different secrets answer a hello with frames of the same shape and size."""
    shapes = []
    for secret in (SECRET, b"some completely different secret"):
        node = Node("a", secret=secret)
        async with trio.open_nursery() as nursery:
            await node.start(nursery)
            raw = await RawPeer.connect(node.port)
            await raw.send_frame(["hello", PROTOCOL_VERSION, "mallory", "m:1", secrets.token_bytes(32)])
            challenge = await raw.read_frame()
            shapes.append([(type(x), len(x)) for x in challenge])
            nursery.cancel_scope.cancel()
    assert shapes[0] == shapes[1]
