"""cluster.node.peerlink: real sockets on 127.0.0.1, raw hostile clients, no fixed sleeps.

Waiting is done by polling a condition under a ``trio.fail_after`` deadline (:func:`eventually`).

Run as a script for a throughput measurement over one link::

    .venv/bin/python -m tests.cluster.test_peerlink [messages] [entries per message] [--retain]

``--retain`` keeps every received message (as a store would), which adds the cyclic garbage collector's
cost of scanning a growing heap. ``--mac`` measures instead, without sockets, the CPU time per frame of
the frame MAC against the codec's (the figures in docs/security.md)::

    .venv/bin/python -m tests.cluster.test_peerlink [frames] [entries per message] --mac
"""

from __future__ import annotations

import hmac
import secrets
import socket
import struct
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import msgpack
import pytest
import trio

from cluster.node import peerlink as peerlink_module
from cluster.node.peerauth import TAG_BYTES, FrameOpener, FrameSealer, SessionKeys, session_keys, transcript
from cluster.node.peerlink import (
    HANDSHAKE_FRAME_MAX,
    PROTOCOL_VERSION,
    PeerLinkConfig,
    PeerLinks,
    PeerLinkStats,
    _tune,
)
from cluster.tools.launcher import free_ports
from distro.codec import decode_message, encode_message
from distro.datum import META_ENTRY_ID, Entry
from distro.messages import (
    Digest,
    Forward,
    ForwardReply,
    Message,
    Ping,
    Repair,
    SnapshotChunk,
    SnapshotRequest,
    SyncBatch,
)
from distro.model import ServiceKey, ServiceMeta, make_instance, service_key
from distro.requests import (
    OK,
    Beat,
    CreateService,
    DeleteService,
    Deregister,
    Register,
    Result,
    UpdateInstance,
    UpdateService,
)
from distro.versions import Version

GUARD = 10.0  # seconds before a hung wait fails the test
SECRET = b"the cluster secret"
_LEN = struct.Struct(">I")

KEY = service_key("public", None, "orders")
INST = make_instance("10.0.0.7", 8080, cluster="east", weight=2.5, metadata={"zone": "a"})


def sample_items(n: int, *, offset: int = 0) -> tuple[Any, ...]:
    items = []
    for i in range(n):
        inst = make_instance(f"10.1.{(offset + i) // 250 % 250}.{(offset + i) % 250}", 8000 + i % 1000)
        items.append((KEY, inst.entry_id, Entry(Version(1_700_000_000_000 + i, i, "n1"), inst)))
    return tuple(items)


SAMPLES: list[Message] = [
    Ping(True, "10.0.0.1:8848"),
    Ping(False, ""),
    Forward(1, Register(KEY, INST)),
    Forward(2, Deregister(KEY, "east", "10.0.0.7", 8080)),
    Forward(3, UpdateInstance(KEY, "east", "10.0.0.7", 8080, {"weight": 3.0, "healthy": False}, True)),
    Forward(4, Beat(KEY, "east", "10.0.0.7", 8080, INST)),
    Forward(5, Beat(KEY, "east", "10.0.0.7", 8080)),
    Forward(6, CreateService(KEY, ServiceMeta(0.5, {"a": "b"}, "none"))),
    Forward(7, UpdateService(KEY, ServiceMeta())),
    Forward(8, DeleteService(KEY)),
    ForwardReply(1, OK),
    ForwardReply(5, Result(200, {"clientBeatInterval": 5000, "code": 10200, "lightBeatEnabled": True})),
    SyncBatch(sample_items(3)),
    SyncBatch(((KEY, META_ENTRY_ID, Entry(Version(9, 0, "n2"), None)),)),
    Digest(((KEY, 2**64 - 1),), None, "public##DEFAULT_GROUP@@zzz"),
    Repair(sample_items(2), (KEY,)),
    SnapshotRequest(),
    SnapshotChunk(True, 3, 0, 2, sample_items(4)),
    SnapshotChunk(False, 0, 0, 1, ()),
]


# ------------------------------------------------------------------------------------------------
# Harness
# ------------------------------------------------------------------------------------------------


class Node:
    """One PeerLinks with recording callbacks."""

    def __init__(
        self, node_id: str, *, secret: bytes = SECRET, peers: Sequence[str] = (), **config: Any
    ) -> None:
        self.node_id = node_id
        self.messages: list[tuple[str, Message]] = []
        self.frames: list[tuple[str, int]] = []  # (sender, messages) of each frame delivered, when recording
        self.connected: list[tuple[str, str]] = []
        self.failed: list[tuple[str, Message]] = []
        self.in_send = False
        self.received = 0
        self.record = True  # False: only count (the benchmark, so as not to measure the garbage collector)
        config.setdefault("reconnect_interval_ms", 50)
        config.setdefault("connect_timeout_ms", 1_000)
        config.setdefault("handshake_timeout_ms", 2_000)
        self.links = PeerLinks(
            PeerLinkConfig(node_id, f"{node_id}.http:8848", tuple(peers), secret, **config),
            on_messages=self._on_messages,
            on_connected=lambda peer, address: self.connected.append((peer, address)),
            on_send_failed=self._on_failed,
        )
        self.port = 0
        self.scope: trio.CancelScope | None = None

    def _on_messages(self, sender: str, messages: list[Message]) -> None:
        assert messages, "a frame carries at least one message"
        self.received += len(messages)
        if self.record:
            self.frames.append((sender, len(messages)))
            self.messages += ((sender, m) for m in messages)

    def _on_failed(self, node_id: str, message: Message) -> None:
        assert not self.in_send, "on_send_failed called from inside send()"
        self.failed.append((node_id, message))

    def send(self, node_id: str, message: Message) -> None:
        self.in_send = True
        try:
            self.links.send(node_id, message)
        finally:
            self.in_send = False

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def stats(self) -> PeerLinkStats:
        return self.links.statistics()

    def received_from(self, sender: str) -> list[Message]:
        return [m for s, m in self.messages if s == sender]

    async def start(self, nursery: trio.Nursery, port: int = 0) -> None:
        async def run(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
            with trio.CancelScope() as scope:
                self.scope = scope
                await self.links.serve("127.0.0.1", port, task_status=task_status)

        self.port = await nursery.start(run)

    def stop(self) -> None:
        assert self.scope is not None
        self.scope.cancel()


async def eventually(condition: Callable[[], bool], timeout: float = GUARD) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.002)


@asynccontextmanager
async def cluster(*nodes: Node) -> AsyncIterator[trio.Nursery]:
    """Start every node, make each dial every other, wait until all links are up."""
    async with trio.open_nursery() as nursery:
        for node in nodes:
            await node.start(nursery)
        for node in nodes:
            for other in nodes:
                if other is not node:
                    node.links.add_peer_address(other.address)
        for node in nodes:
            await eventually(lambda node=node: len(node.links.connected_peers()) == len(nodes) - 1)  # type: ignore[misc]
        yield nursery
        nursery.cancel_scope.cancel()


class RawPeer:
    """A hand-driven TCP client speaking the peer-link framing."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = bytearray()
        self.sealer: FrameSealer | None = None  # set by a completed handshake

    opened: list[RawPeer] = []  # closed after each test by the close_raw_peers fixture

    @classmethod
    async def connect(cls, port: int) -> RawPeer:
        peer = cls(await trio.open_tcp_stream("127.0.0.1", port))
        cls.opened.append(peer)
        return peer

    async def send_frame(self, obj: Any) -> None:
        """A handshake frame (no tag)."""
        payload = msgpack.packb(obj, use_bin_type=True)
        await self.stream.send_all(_LEN.pack(len(payload)) + payload)

    async def send_messages(self, *messages: Message) -> None:
        """One frame carrying ``messages``, with the right tag."""
        await self.send_sealed([encode_message(m) for m in messages])

    async def send_sealed(self, obj: Any) -> None:
        """A frame after the handshake, with the right tag: ``obj`` is its payload, packed."""
        assert self.sealer is not None
        payload = msgpack.packb(obj, use_bin_type=True)
        prefix, tag = self.sealer.seal(payload)
        await self.stream.send_all(prefix + payload + tag)

    async def read_frame(self) -> Any:
        with trio.fail_after(GUARD):
            while True:
                if len(self.buf) >= 4:
                    (length,) = _LEN.unpack_from(self.buf)
                    if len(self.buf) >= 4 + length:
                        payload = bytes(self.buf[4 : 4 + length])
                        del self.buf[: 4 + length]
                        return msgpack.unpackb(payload, raw=False)
                data = await self.stream.receive_some(65536)
                if not data:
                    raise EOFError
                self.buf += data

    async def handshake(self, node_id: str = "raw", secret: bytes = SECRET, address: str = "raw:1") -> str:
        """Dialer side of the handshake; returns the acceptor's node id (EOFError: refused)."""
        nonce_d = secrets.token_bytes(32)
        await self.send_frame(["hello", PROTOCOL_VERSION, node_id, address, nonce_d])
        tag, peer_id, peer_address, nonce_a = await self.read_frame()
        assert tag == "challenge"
        keys = dialer_keys(secret, (node_id, address), (peer_id, peer_address), nonce_d, nonce_a)
        await self.send_frame(["proof", [keys.dialer_proof]])
        tag, proof = await self.read_frame()
        assert tag == "welcome" and hmac.compare_digest(proof, keys.acceptor_proof)
        self.sealer = FrameSealer(keys.frame_key)
        return str(peer_id)

    async def closed_by_peer(self) -> bool:
        """Read until the other end closes; True when it did (within GUARD)."""
        with trio.fail_after(GUARD):
            try:
                while await self.stream.receive_some(65536):
                    pass
            except trio.BrokenResourceError:  # reset: closed with our data unread
                pass
        return True

    async def aclose(self) -> None:
        await self.stream.aclose()


def dialer_keys(
    secret: bytes, dialer: tuple[str, str], acceptor: tuple[str, str], nonce_d: bytes, nonce_a: bytes
) -> SessionKeys:
    return session_keys(secret, nonce_d, nonce_a, transcript(dialer, acceptor, nonce_d, nonce_a))


@pytest.fixture(autouse=True)
async def close_raw_peers() -> AsyncIterator[None]:
    yield
    while RawPeer.opened:
        await RawPeer.opened.pop().aclose()


# ------------------------------------------------------------------------------------------------
# Exchanging messages
# ------------------------------------------------------------------------------------------------


async def test_two_nodes_exchange_every_message_type() -> None:
    a, b = Node("a"), Node("b")
    async with cluster(a, b):
        assert a.connected == [("b", "b.http:8848")]
        assert b.connected == [("a", "a.http:8848")]
        assert a.links.connected_peers() == {"b": "b.http:8848"}
        for message in SAMPLES:
            a.send("b", message)
            b.send("a", message)
        await eventually(lambda: len(a.messages) == len(b.messages) == len(SAMPLES))
        assert b.messages == [("a", m) for m in SAMPLES]
        assert a.messages == [("b", m) for m in SAMPLES]
        assert a.failed == b.failed == []
        sa, sb = a.stats, b.stats
        assert sa.messages_sent == sb.messages_received == len(SAMPLES)
        # Queued in one loop iteration (no checkpoint between the sends): one frame, one MAC, one decode.
        assert sa.frames_sent == sb.frames_received == 1
        assert b.frames == [("a", len(SAMPLES))]
        assert sa.bytes_sent == sb.bytes_received
        expected_bytes = 4 + len(msgpack.packb([encode_message(m) for m in SAMPLES], use_bin_type=True)) + TAG_BYTES
        assert sa.bytes_sent == expected_bytes
        assert sa.handshake_failures == sb.handshake_failures == sa.bad_frames == 0
        assert sa.outbound_links == sa.inbound_links == 1
        assert sa.queue_depths == {"b": 0}


async def test_messages_queued_in_the_scheduler_round_after_the_first_share_its_frame() -> None:
    """The writer woken by a send lets one more scheduler round run before it packs: what is queued in the
    round that woke it and in the next goes in one frame (whichever of the writer and the sender runs first
    in that round)."""
    a, b = Node("a"), Node("b")
    async with cluster(a, b):
        for round_ in range(1, 21):
            a.send("b", SAMPLES[0])
            await trio.lowlevel.checkpoint()
            a.send("b", SAMPLES[1])
            await eventually(lambda expected=2 * round_: len(b.messages) == expected)
        assert b.frames == [("a", 2)] * 20
        assert [m for _, m in b.messages] == [SAMPLES[0], SAMPLES[1]] * 20


async def test_large_batches_are_cut_into_frames_of_an_eighth_mebibyte_and_the_reader_lets_others_run() -> None:
    """Messages queued together (snapshot chunks, say) go in frames of at most _FRAME_SOFT_BYTES each (unless
    one alone is bigger), not all in one: the receiver decodes a frame in one step, so two ~70 KB messages,
    together over the soft size, go in two frames. Between those frames its receive loop lets other tasks
    run (a checkpoint every _YIELD_BYTES), though every frame came in the same reads."""
    a, b = Node("a"), Node("b")
    batches = [SyncBatch(sample_items(700, offset=700 * i)) for i in range(8)]  # ~70 KB each packed
    seen: list[int] = []  # b's message count each time another task ran on b's side
    async with cluster(a, b), trio.open_nursery() as nursery:
        async def watch() -> None:
            while True:
                seen.append(len(b.messages))
                await trio.lowlevel.checkpoint()

        nursery.start_soon(watch)
        for message in batches:
            a.send("b", message)
        await eventually(lambda: len(b.messages) == len(batches))
        nursery.cancel_scope.cancel()
    assert [m for _, m in b.messages] == batches
    assert a.stats.frames_sent == b.stats.frames_received == len(b.frames) >= 2
    assert b.frames == [("a", 1)] * len(batches)
    assert any(0 < count < len(batches) for count in seen)


async def test_three_nodes_full_mesh() -> None:
    nodes = [Node("a"), Node("b"), Node("c")]
    async with cluster(*nodes):
        for node in nodes:
            for other in nodes:
                if other is not node:
                    node.send(other.node_id, Ping(True, f"from {node.node_id}"))
        await eventually(lambda: all(len(n.messages) == 2 for n in nodes))
        for node in nodes:
            others = {o.node_id for o in nodes if o is not node}
            assert {sender for sender, _ in node.messages} == others
            assert all(m == Ping(True, f"from {s}") for s, m in node.messages)
            assert node.links.connected_peers() == {o: f"{o}.http:8848" for o in others}
            assert node.stats.inbound_links == 2


async def test_a_sync_batch_sent_to_several_peers_is_encoded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The core sends the same SyncBatch object to every peer whose dirty set was the same
    (Replication.flush_due): the links encode it once for all of them; other messages, and equal but
    distinct batches, are encoded for each send."""
    encoded: list[type] = []
    real = peerlink_module.encode_message

    def counting(message: Message) -> Any:
        encoded.append(type(message))
        return real(message)

    monkeypatch.setattr(peerlink_module, "encode_message", counting)
    nodes = [Node("a"), Node("b"), Node("c")]
    async with cluster(*nodes):
        a = nodes[0]
        shared = SyncBatch(sample_items(3))
        ping = Ping(True, "hi")
        encoded.clear()
        for target in ("b", "c"):
            a.send(target, shared)
            a.send(target, ping)
        a.send("b", SyncBatch(sample_items(3)))  # equal, not the same object
        await eventually(lambda: len(nodes[1].messages) == 3 and len(nodes[2].messages) == 2)
        assert encoded == [SyncBatch, Ping, Ping, SyncBatch]
        assert [m for _, m in nodes[1].messages] == [shared, ping, shared]
        assert [m for _, m in nodes[2].messages] == [shared, ping]


async def test_shared_sync_batch_encodings_are_bounded_in_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SyncBatch encodings kept for the next peer are bounded in bytes as well as in number (they stay
    held until replaced): a batch larger than the bound is encoded for each peer, never kept."""
    encoded: list[int] = []
    real = peerlink_module.encode_message

    def counting(message: Message) -> Any:
        if isinstance(message, SyncBatch):
            encoded.append(len(message.items))
        return real(message)

    monkeypatch.setattr(peerlink_module, "encode_message", counting)
    bound = len(msgpack.packb(real(SyncBatch(sample_items(100))), use_bin_type=True)) * 3
    monkeypatch.setattr(peerlink_module, "_SHARED_BYTES", bound)
    nodes = [Node("a"), Node("b"), Node("c")]
    async with cluster(*nodes):
        links = nodes[0].links
        big = SyncBatch(sample_items(400))
        batches = [SyncBatch(sample_items(100, offset=1000 * n)) for n in range(5)]
        for message in (big, *batches):
            for target in ("b", "c"):
                nodes[0].send(target, message)
            assert links._shared_bytes <= bound
        await eventually(lambda: len(nodes[1].messages) == 6 and len(nodes[2].messages) == 6)
        assert encoded == [400, 400, 100, 100, 100, 100, 100]  # the big one twice, the others once
        assert links._shared_bytes <= bound and len(links._shared) <= 3


async def test_dials_the_configured_peer_addresses() -> None:
    """``peer_addresses`` from the config: b is configured with a's address and dials it at start."""
    a = Node("a")
    async with trio.open_nursery() as nursery:
        await a.start(nursery)
        b = Node("b", peers=[a.address])
        await b.start(nursery)
        await eventually(lambda: b.links.connected_peers() == {"a": "a.http:8848"})
        b.send("a", Ping(True, "hi"))
        await eventually(lambda: a.messages == [("b", Ping(True, "hi"))])
        assert a.links.connected_peers() == {}  # a has no outbound link to b yet
        nursery.cancel_scope.cancel()


# ------------------------------------------------------------------------------------------------
# Send failures
# ------------------------------------------------------------------------------------------------


async def test_send_without_a_link_is_reported_later_not_inside_send() -> None:
    a = Node("a")
    a.send("nobody", Ping(True, "x"))  # before serve: kept until serve runs
    async with trio.open_nursery() as nursery:
        await a.start(nursery)
        a.send("nobody", Ping(False, "y"))
        assert a.failed == [] or a.failed == [("nobody", Ping(True, "x"))]
        await eventually(lambda: len(a.failed) == 2)
        assert a.failed == [("nobody", Ping(True, "x")), ("nobody", Ping(False, "y"))]
        assert a.stats.send_failures == 2
        nursery.cancel_scope.cancel()


async def test_full_queue_reports_the_overflow() -> None:
    a, b = Node("a", send_queue_limit=5), Node("b")
    async with cluster(a, b):
        pings = [Ping(True, str(i)) for i in range(8)]
        for ping in pings:  # no checkpoint in between: the writer cannot drain meanwhile
            a.send("b", ping)
        await eventually(lambda: len(b.messages) == 5 and len(a.failed) == 3)
        assert b.received_from("a") == pings[:5]
        assert a.failed == [("b", p) for p in pings[5:]]


async def test_the_queue_is_bounded_in_bytes() -> None:
    # Messages are encoded when queued, so a peer's queue holds at most send_queue_bytes of them however
    # few they are: five batches of ~6 KB against a 20 KB bound, queued with no checkpoint in between.
    batches = [SyncBatch(sample_items(100, offset=100 * i)) for i in range(5)]
    size = len(msgpack.packb(encode_message(batches[0]), use_bin_type=True))
    bound = 3 * size + size // 2
    a, b = Node("a", send_queue_bytes=bound), Node("b")
    async with cluster(a, b):
        for batch in batches:
            a.send("b", batch)
        assert 3 * size - 100 <= a.stats.queue_bytes["b"] <= bound
        await eventually(lambda: len(b.messages) == 3 and len(a.failed) == 2)
        assert b.received_from("a") == batches[:3]
        assert a.failed == [("b", batch) for batch in batches[3:]]
        await eventually(lambda: a.stats.queue_bytes == {"b": 0})


async def test_oversized_and_unencodable_messages_are_dropped_and_the_link_stays_up() -> None:
    """A message this side cannot send is its own bug, not the peer's: the peer is not reported down.

    Only a forwarded client write is handed back as a failure, so that its client still gets an answer.
    """
    a, b = Node("a", max_frame_bytes=2048), Node("b")
    async with cluster(a, b):
        big = SyncBatch(sample_items(100))
        bad = Ping(True, "\ud800")  # a lone surrogate: msgpack cannot encode it
        bad_forward = Forward(
            7, Deregister(ServiceKey("public", "DEFAULT_GROUP", "\ud800"), "DEFAULT", "1.1.1.1", 80)
        )
        a.send("b", big)
        a.send("b", bad)
        a.send("b", bad_forward)
        a.send("b", Ping(True, "after"))
        # (the failure is reported from a PeerLinks task: wait for it too)
        await eventually(lambda: len(b.messages) == 1 and a.stats.unsendable == 3 and bool(a.failed))
        assert b.messages == [("a", Ping(True, "after"))]
        assert a.failed == [("b", bad_forward)]
        assert a.links.connected_peers() == {"b": "b.http:8848"}
        assert a.stats.outbound_connects == 1


async def test_peer_goes_away_queued_messages_are_reported_and_the_link_comes_back() -> None:
    a, b = Node("a", send_queue_limit=100_000), Node("b")
    async with cluster(a, b) as nursery:
        items = sample_items(10)
        batches = [SnapshotChunk(True, i, 0, 1, items) for i in range(20_000)]  # ~1 KB each, all distinct
        for batch in batches:
            a.send("b", batch)
        b.stop()  # b dies with most of that still queued at a
        await eventually(lambda: "b" not in a.links.connected_peers())
        await eventually(lambda: a.stats.messages_sent + len(a.failed) == len(batches))
        sent = a.stats.messages_sent
        assert a.failed, "the link broke with messages still queued: they must be reported"
        # Every message is either sent (send_all completed) or reported, in order, never both.
        assert [m for _, m in a.failed] == batches[sent:]
        assert all(target == "b" for target, _ in a.failed)
        assert len(b.messages) <= sent
        assert b.received_from("a") == batches[: len(b.messages)]
        # While b is away, sends fail.
        a.send("b", Ping(True, "while away"))
        await eventually(lambda: a.failed[-1] == ("b", Ping(True, "while away")))
        # b comes back on the same port (a fresh process, as after a restart); a redials it.
        b2 = Node("b")
        await b2.start(nursery, port=b.port)
        b2.links.add_peer_address(a.address)
        await eventually(lambda: a.connected.count(("b", "b.http:8848")) == 2)
        assert a.stats.reconnects >= 1
        a.send("b", Ping(True, "welcome back"))
        await eventually(lambda: b2.messages == [("a", Ping(True, "welcome back"))])
        await eventually(lambda: len(b2.links.connected_peers()) == 1)
        b2.send("a", Ping(True, "hello again"))
        await eventually(lambda: a.messages[-1:] == [("b", Ping(True, "hello again"))])


# ------------------------------------------------------------------------------------------------
# Authentication
# ------------------------------------------------------------------------------------------------


async def test_wrong_secret_fails_the_handshake_on_both_sides() -> None:
    a, b = Node("a", secret=b"one secret"), Node("b", secret=b"another secret")
    async with trio.open_nursery() as nursery:
        await a.start(nursery)
        await b.start(nursery)
        a.links.add_peer_address(b.address)
        b.links.add_peer_address(a.address)
        await eventually(lambda: a.stats.handshake_failures >= 4 and b.stats.handshake_failures >= 4)
        a.send("b", Ping(True, "secret stuff"))
        await eventually(lambda: len(a.failed) == 1)
        assert a.connected == b.connected == []
        assert a.messages == b.messages == []
        assert a.links.connected_peers() == b.links.connected_peers() == {}
        assert a.stats.inbound_links == b.stats.inbound_links == 0
        assert a.stats.reconnects >= 1  # it keeps trying
        nursery.cancel_scope.cancel()


async def test_a_rolling_secret_change_never_splits_the_cluster() -> None:
    """Nodes that accept a previous secret link with nodes on either secret; disjoint secrets never link."""
    old, new = b"the old cluster secret", b"the new cluster secret"
    a = Node("a", secret=old)  # not restarted yet
    b = Node("b", secret=new, previous_secrets=(old,))  # restarted with the new secret, still accepts the old
    c = Node("c", secret=new)  # the last step: the old secret is gone
    async with trio.open_nursery() as nursery:
        for node in (a, b, c):
            await node.start(nursery)
        for node in (a, b, c):
            for other in (a, b, c):
                if other is not node:
                    node.links.add_peer_address(other.address)
        await eventually(lambda: set(b.links.connected_peers()) == {"a", "c"})
        await eventually(
            lambda: set(a.links.connected_peers()) == {"b"} and set(c.links.connected_peers()) == {"b"}
        )
        for sender, target in (("a", "b"), ("b", "a"), ("b", "c"), ("c", "b")):
            {"a": a, "b": b, "c": c}[sender].send(target, Ping(True, f"{sender} to {target}"))
        await eventually(lambda: len(a.messages) == 1 and len(b.messages) == 2 and len(c.messages) == 1)
        assert a.messages == [("b", Ping(True, "b to a"))]
        assert sorted(b.messages) == [("a", Ping(True, "a to b")), ("c", Ping(True, "c to b"))]
        await eventually(lambda: a.stats.handshake_failures >= 2 and c.stats.handshake_failures >= 2)
        assert "c" not in a.links.connected_peers() and "a" not in c.links.connected_peers()
        nursery.cancel_scope.cancel()


async def test_proofs_made_only_with_unknown_secrets_are_refused() -> None:
    """A dialer proves each secret it holds; none of them being ours, or a malformed list, is refused."""
    a = Node("a", previous_secrets=(b"an older secret",))
    proof_lists: list[Any] = [
        lambda keys: [keys(b"some other secret").dialer_proof, keys(b"and another one").dialer_proof],
        lambda keys: [],
        lambda keys: [keys(SECRET).dialer_proof] * 5,  # more proofs than secrets a node may hold
        lambda keys: ["not bytes"],
        lambda keys: keys(SECRET).dialer_proof,  # not a list
    ]
    async with trio.open_nursery() as nursery:
        await a.start(nursery)
        for count, make in enumerate(proof_lists, 1):
            raw = await RawPeer.connect(a.port)
            nonce_d = secrets.token_bytes(32)
            await raw.send_frame(["hello", PROTOCOL_VERSION, "mallory", "m:1", nonce_d])
            _, peer_id, peer_address, nonce_a = await raw.read_frame()

            def keys(
                secret: bytes,
                nonce_d: bytes = nonce_d,
                acceptor: Any = (peer_id, peer_address),
                nonce_a: bytes = nonce_a,
            ) -> SessionKeys:
                return dialer_keys(secret, ("mallory", "m:1"), acceptor, nonce_d, nonce_a)

            await raw.send_frame(["proof", make(keys)])
            assert await raw.closed_by_peer()
            await raw.aclose()
            await eventually(lambda count=count: a.stats.handshake_failures == count)  # type: ignore[misc]
        assert a.stats.inbound_accepts == 0
        # The same dialer proving one secret a holds (its previous one, listed after a wrong one) gets in.
        raw = await RawPeer.connect(a.port)
        assert await raw.handshake(secret=b"an older secret") == "a"
        await raw.send_messages(Ping(True, "in"))
        await eventually(lambda: a.messages == [("raw", Ping(True, "in"))])
        nursery.cancel_scope.cancel()


async def test_a_peer_that_connects_in_is_dialed_back_at_once() -> None:
    """A restarted peer is dialed as soon as it links to us, not a whole reconnect interval later."""
    (port,) = free_ports(1, offsets=())  # a port nobody listens on yet: b will start there
    a = Node("a", peers=[f"127.0.0.1:{port}"], reconnect_interval_ms=600_000)
    async with trio.open_nursery() as nursery:
        await a.start(nursery)
        # its first dial is refused: it now waits out the 10-minute interval
        await eventually(lambda: a.stats.dialers_waiting == 1 and a.stats.reconnects == 0)
        assert a.links.connected_peers() == {}
        b = Node("b")
        await b.start(nursery, port=port)
        b.links.add_peer_address(a.address)
        await eventually(lambda: "b" in a.links.connected_peers())  # within GUARD, not 10 minutes
        a.send("b", Ping(True, "hello"))
        await eventually(lambda: b.messages == [("a", Ping(True, "hello"))])
        nursery.cancel_scope.cancel()


async def test_links_abort_on_unacknowledged_data_instead_of_backing_off_for_minutes() -> None:
    """TCP_USER_TIMEOUT is set from the config on peer sockets (keep-alives never fire on a busy link)."""
    if not hasattr(socket, "TCP_USER_TIMEOUT"):
        pytest.skip("no TCP_USER_TIMEOUT on this platform")
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, lambda stream: trio.sleep_forever(), listeners)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        _tune(stream, 1_234)
        assert stream.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 1_234
        assert stream.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        await stream.aclose()
        nursery.cancel_scope.cancel()
    assert PeerLinkConfig("a", "a:1", (), SECRET).tcp_user_timeout_ms == 5_000


async def test_a_raw_client_with_the_secret_is_accepted() -> None:
    """The test's own handshake client works: the rejection tests below are meaningful."""
    a = Node("a")
    async with trio.open_nursery() as nursery:
        await a.start(nursery)
        raw = await RawPeer.connect(a.port)
        assert await raw.handshake() == "a"
        await raw.send_messages(Ping(True, "raw here"))
        await eventually(lambda: a.messages == [("raw", Ping(True, "raw here"))])
        assert a.stats.inbound_accepts == 1
        assert a.links.connected_peers() == {}  # inbound only: a cannot send to it
        await raw.aclose()
        nursery.cancel_scope.cancel()


async def test_a_raw_client_with_a_wrong_secret_is_refused() -> None:
    a = Node("a")
    async with trio.open_nursery() as nursery:
        await a.start(nursery)
        raw = await RawPeer.connect(a.port)
        with pytest.raises(EOFError):  # a closes the connection instead of welcoming us
            await raw.handshake(secret=b"guess")
        await raw.aclose()
        await eventually(lambda: a.stats.handshake_failures == 1)
        # Hang up before proving anything: a was waiting for a proof.
        raw = await RawPeer.connect(a.port)
        await raw.send_frame(["hello", PROTOCOL_VERSION, "mallory", "m:1", secrets.token_bytes(32)])
        assert (await raw.read_frame())[0] == "challenge"
        await raw.aclose()
        await eventually(lambda: a.stats.handshake_failures == 2)
        assert a.messages == [] and a.stats.inbound_accepts == 0
        nursery.cancel_scope.cancel()


HOSTILE_OPENINGS = {
    "http request": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "oversized length": _LEN.pack(HANDSHAKE_FRAME_MAX + 1) + b"x" * 100,
    "huge length": b"\xff\xff\xff\xff",
    "undecodable msgpack": _LEN.pack(1) + b"\xc1",
    "not a hello": _LEN.pack(3) + msgpack.packb(["hi"]),
    "wrong version": _LEN.pack(len(p := msgpack.packb(["hello", 99, "x", "y", b"n" * 32], use_bin_type=True)))
    + p,
    "short nonce": _LEN.pack(len(q := msgpack.packb(["hello", 1, "x", "y", b"n"], use_bin_type=True))) + q,
    "truncated then eof": _LEN.pack(100) + b"abc",
}


@pytest.mark.parametrize("opening", list(HOSTILE_OPENINGS.values()), ids=list(HOSTILE_OPENINGS))
async def test_garbage_before_the_handshake_is_disconnected(opening: bytes) -> None:
    a, b = Node("a"), Node("b")
    async with cluster(a, b):
        raw = await RawPeer.connect(a.port)
        await raw.stream.send_all(opening)
        if opening.endswith(b"abc"):
            await raw.stream.send_eof()
        assert await raw.closed_by_peer()
        await eventually(lambda: a.stats.handshake_failures == 1)
        assert a.stats.inbound_accepts == 1  # only b
        b.send("a", Ping(True, "still serving"))
        await eventually(lambda: a.messages == [("b", Ping(True, "still serving"))])
        assert a.messages == [("b", Ping(True, "still serving"))]


async def test_a_silent_client_is_dropped_after_the_handshake_timeout() -> None:
    a = Node("a", handshake_timeout_ms=200)
    async with trio.open_nursery() as nursery:
        await a.start(nursery)
        raw = await RawPeer.connect(a.port)
        started = trio.current_time()
        assert await raw.closed_by_peer()
        assert trio.current_time() - started >= 0.15
        assert a.stats.handshake_failures == 1
        nursery.cancel_scope.cancel()


async def test_unauthenticated_connections_are_bounded() -> None:
    a = Node("a", max_pending_handshakes=2, handshake_timeout_ms=60_000)
    async with trio.open_nursery() as nursery:
        await a.start(nursery)
        silent = [await RawPeer.connect(a.port), await RawPeer.connect(a.port)]
        await eventually(lambda: a.stats.pending_handshakes == 2)
        third = await RawPeer.connect(a.port)
        started = trio.current_time()
        assert await third.closed_by_peer()
        assert trio.current_time() - started < GUARD / 2  # refused at once, not after the handshake timeout
        assert a.stats.handshake_failures == 1
        for raw in silent:  # they were waiting; once they go, a real peer gets in
            await raw.aclose()
        await eventually(lambda: a.stats.handshake_failures == 3 and a.stats.pending_handshakes == 0)
        b = Node("b", peers=[a.address])
        await b.start(nursery)
        await eventually(lambda: b.links.connected_peers() == {"a": "a.http:8848"})
        nursery.cancel_scope.cancel()


BAD_PAYLOADS = {  # sent by a peer that passed the handshake, each with the right tag
    "schema violation": msgpack.packb([["ping", "yes", 1]]),
    "unknown message": msgpack.packb([["nope"]]),
    "a bad message after good ones": msgpack.packb(
        [encode_message(Ping(True, "never delivered")), encode_message(Ping(False, "")), ["nope"]]
    ),
    "a version 2 frame (one bare message)": msgpack.packb(encode_message(Ping(True, "v2"))),
    "an empty frame": msgpack.packb([]),
    "not an array": msgpack.packb({"ping": True}),
    "undecodable msgpack": b"\xc1\xc1",
    "trailing bytes": b"\x91\xc0\xc0\xc0",
    "over max_frame_bytes": b"z" * 4097,
}


@pytest.mark.parametrize("payload", list(BAD_PAYLOADS.values()), ids=list(BAD_PAYLOADS))
async def test_a_bad_frame_after_the_handshake_closes_only_that_connection(payload: bytes) -> None:
    a, b = Node("a", max_frame_bytes=4096), Node("b")
    async with cluster(a, b):
        raw = await RawPeer.connect(a.port)
        await raw.handshake()
        await raw.send_messages(Ping(True, "fine so far"))
        assert raw.sealer is not None
        prefix, tag = raw.sealer.seal(payload)
        await raw.stream.send_all(prefix + payload + tag)
        assert await raw.closed_by_peer()
        await eventually(lambda: a.stats.bad_frames == 1)
        assert a.received_from("raw") == [Ping(True, "fine so far")]
        assert a.stats.handshake_failures == 0 and a.stats.mac_failures == 0
        b.send("a", Ping(True, "still serving"))
        await eventually(lambda: a.received_from("b") == [Ping(True, "still serving")])
        a.send("b", Ping(True, "both ways"))
        await eventually(lambda: b.messages == [("a", Ping(True, "both ways"))])
        assert a.stats.inbound_links == 1


async def test_a_second_connection_from_a_node_replaces_the_first() -> None:
    a = Node("a")
    async with trio.open_nursery() as nursery:
        await a.start(nursery)
        first = await RawPeer.connect(a.port)
        await first.handshake("x")
        second = await RawPeer.connect(a.port)
        await second.handshake("x")
        assert await first.closed_by_peer()
        await second.send_messages(Ping(True, "second"))
        await eventually(lambda: a.messages == [("x", Ping(True, "second"))])
        assert a.stats.inbound_links == 1 and a.stats.inbound_accepts == 2
        assert a.stats.bad_frames == 0
        nursery.cancel_scope.cancel()


async def test_self_dial_is_detected_and_rechecked_later() -> None:
    a = Node("a", reconnect_interval_ms=500)
    async with trio.open_nursery() as nursery:
        await a.start(nursery)
        a.links.add_peer_address(a.address)
        assert a.stats.dialers == 1
        await eventually(lambda: a.stats.self_dials == 1 and a.stats.dialers_waiting == 1)
        stats = a.stats
        assert stats.dialers == 1 and stats.self_relays == 0  # still dialed: checked again later
        assert stats.handshake_failures == 0 and stats.outbound_connects == 0
        assert stats.inbound_accepts == 0 and stats.inbound_links == 0
        assert a.connected == [] and a.links.connected_peers() == {}
        nursery.cancel_scope.cancel()


async def test_self_dial_from_the_config_at_start() -> None:
    """Our own address in ``peer_addresses`` (bound before serve, so the port is known)."""
    (port,) = free_ports(1, offsets=())
    a = Node("a", peers=[f"127.0.0.1:{port}"])
    async with trio.open_nursery() as nursery:
        await a.start(nursery, port=port)
        await eventually(lambda: a.stats.self_dials == 1 and a.stats.dialers_waiting == 1)
        assert a.stats.handshake_failures == 0 and a.connected == [] and a.stats.self_relays == 0
        nursery.cancel_scope.cancel()


async def test_another_node_with_our_id_is_refused() -> None:
    a1, a2 = Node("a"), Node("a")
    async with trio.open_nursery() as nursery:
        await a1.start(nursery)
        await a2.start(nursery)
        a1.links.add_peer_address(a2.address)
        await eventually(lambda: a1.stats.handshake_failures >= 2 and a2.stats.handshake_failures >= 2)
        assert a1.stats.self_dials == 0 and a1.stats.dialers == 1  # not mistaken for itself: keeps trying
        assert a1.connected == a2.connected == [] and a2.stats.inbound_accepts == 0
        nursery.cancel_scope.cancel()


async def test_two_addresses_of_one_node_make_one_link() -> None:
    a, b = Node("a"), Node("b")
    async with trio.open_nursery() as nursery:
        await a.start(nursery)
        await b.start(nursery)
        a.links.add_peer_address(b.address)
        a.links.add_peer_address(f"localhost:{b.port}")
        await eventually(lambda: a.links.connected_peers() == {"b": "b.http:8848"})
        await eventually(lambda: a.stats.reconnects >= 1)  # the other address got "bye" and waits
        assert a.connected == [("b", "b.http:8848")]
        assert a.stats.handshake_failures == b.stats.handshake_failures == 0
        a.send("b", Ping(True, "once"))
        await eventually(lambda: b.messages == [("a", Ping(True, "once"))])
        nursery.cancel_scope.cancel()


async def test_config_rejects_malformed_addresses() -> None:
    for bad in ["nohost", "host:", "host:http", ":80", "host:0", "host:70000"]:
        with pytest.raises(ValueError):
            Node("a", peers=[bad])
    Node("a", peers=["[::1]:7000", "db.example:7000"])


# ------------------------------------------------------------------------------------------------
# Misbehaving acceptors (our outbound side)
# ------------------------------------------------------------------------------------------------


async def raw_accept(stream: trio.SocketStream, node_id: str = "fake", address: str = "fake:1") -> RawPeer:
    """Acceptor side of the handshake on an accepted stream."""
    peer = RawPeer(stream)
    RawPeer.opened.append(peer)
    tag, version, dialer_id, dialer_address, nonce_d = await peer.read_frame()
    assert (tag, version) == ("hello", PROTOCOL_VERSION)
    me, dialer = (node_id, address), (dialer_id, dialer_address)
    nonce_a = secrets.token_bytes(32)
    await peer.send_frame(["challenge", node_id, address, nonce_a])
    tag, proofs = await peer.read_frame()
    keys = dialer_keys(SECRET, dialer, me, nonce_d, nonce_a)
    assert tag == "proof" and proofs == [keys.dialer_proof]
    await peer.send_frame(["welcome", keys.acceptor_proof])
    return peer


@asynccontextmanager
async def fake_acceptor(after_handshake: Callable[[RawPeer], Any]) -> AsyncIterator[str]:
    """A listener whose first connection is handshaken and handed to ``after_handshake``; later ones
    are closed at once. Yields its address."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    accepted = 0

    async def handle(stream: trio.SocketStream) -> None:
        nonlocal accepted
        accepted += 1
        if accepted > 1:
            await stream.aclose()
            return
        peer = await raw_accept(stream)
        await after_handshake(peer)
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handle, listeners)
        yield f"127.0.0.1:{listeners[0].socket.getsockname()[1]}"
        nursery.cancel_scope.cancel()


async def test_a_peer_that_stops_reading_is_cut_off_after_the_write_timeout() -> None:
    a = Node("a", write_timeout_ms=300, send_queue_limit=100_000)

    async def never_read(peer: RawPeer) -> None:
        pass

    async with fake_acceptor(never_read) as address, trio.open_nursery() as nursery:
        await a.start(nursery)
        a.links.add_peer_address(address)
        await eventually(lambda: a.connected == [("fake", "fake:1")])
        items = sample_items(10)
        chunks = [SnapshotChunk(True, i, 0, 1, items) for i in range(20_000)]
        for chunk in chunks:
            a.send("fake", chunk)
        started = trio.current_time()
        await eventually(lambda: a.stats.messages_sent + len(a.failed) == len(chunks))
        assert trio.current_time() - started >= 0.25  # it waited for the write timeout
        assert a.failed, "the kernel buffers cannot hold 20 MB: most of it must come back as failed"
        assert [m for _, m in a.failed] == chunks[a.stats.messages_sent :]
        assert "fake" not in a.links.connected_peers()
        await eventually(lambda: a.stats.handshake_failures >= 1)  # it redials; the fake refuses now
        nursery.cancel_scope.cancel()


async def test_a_peer_that_writes_on_our_outbound_connection_is_cut_off() -> None:
    a = Node("a")

    async def chatter(peer: RawPeer) -> None:
        await eventually(lambda: bool(a.connected))  # else it arrives with the welcome: a handshake failure
        await peer.send_frame(encode_message(Ping(True, "wrong direction")))

    async with fake_acceptor(chatter) as address, trio.open_nursery() as nursery:
        await a.start(nursery)
        a.links.add_peer_address(address)
        await eventually(lambda: a.connected == [("fake", "fake:1")])
        await eventually(lambda: a.stats.bad_frames == 1 and "fake" not in a.links.connected_peers())
        assert a.messages == []  # frames on an outbound connection are never delivered
        a.send("fake", Ping(True, "x"))
        await eventually(lambda: a.failed == [("fake", Ping(True, "x"))])
        nursery.cancel_scope.cancel()


# ------------------------------------------------------------------------------------------------
# Throughput (run this module as a script)
# ------------------------------------------------------------------------------------------------


async def _measure(count: int, entries: int, retain: bool = False) -> None:
    a, b = Node("a", send_queue_limit=count), Node("b")
    async with cluster(a, b):
        batches = [SyncBatch(sample_items(entries, offset=i)) for i in range(min(count, 1000))]
        b.record = retain
        started = time.perf_counter()
        for i in range(count):
            a.send("b", batches[i % len(batches)])
            if i % 1000 == 999:
                await trio.sleep(0)  # like a runtime: yield now and then
        await eventually(lambda: b.received == count, timeout=600)
        elapsed = time.perf_counter() - started
        stats = a.stats
        assert not a.failed
        print(
            f"{count} SyncBatch x {entries} entries over one link: {elapsed:.2f} s, "
            f"{count / elapsed:,.0f} messages/s, {count * entries / elapsed:,.0f} entries/s, "
            f"{stats.bytes_sent / elapsed / 1e6:.1f} MB/s ({stats.bytes_sent / count:.0f} bytes/message)"
        )


def _measure_mac(count: int, entries: int) -> None:
    """CPU time per frame of what a frame costs its two ends, without sockets: the codec and msgpack on
    both sides against the MAC (seal on one side, check on the other)."""
    messages = [SyncBatch(sample_items(entries, offset=i)) for i in range(min(count, 1000))]
    payloads = [msgpack.packb(encode_message(m), use_bin_type=True) for m in messages]
    key = secrets.token_bytes(32)
    sealer, opener = FrameSealer(key), FrameOpener(key)

    def cpu_us(work: Callable[[int], object]) -> float:
        started = time.process_time()
        for i in range(count):
            work(i)
        return (time.process_time() - started) / count * 1e6

    n = len(messages)
    encode = cpu_us(lambda i: msgpack.packb(encode_message(messages[i % n]), use_bin_type=True))
    decode = cpu_us(
        lambda i: decode_message(msgpack.unpackb(payloads[i % n], raw=False, strict_map_key=True))
    )
    tags = [sealer.seal(payloads[i % n])[1] for i in range(count)]
    sealer = FrameSealer(key)
    seal = cpu_us(lambda i: sealer.seal(payloads[i % n]))
    check = cpu_us(lambda i: opener.check(payloads[i % n], tags[i]))
    assert opener.seq == count
    codec = encode + decode
    mac = seal + check
    print(
        f"SyncBatch x {entries} entries ({sum(map(len, payloads)) / n:.0f}-byte payload), CPU per frame: "
        f"encode {encode:.2f} us + decode {decode:.2f} us; MAC seal {seal:.2f} us + check {check:.2f} us "
        f"= {mac:.2f} us, {100 * mac / codec:.1f} % of the codec's {codec:.2f} us"
    )


if __name__ == "__main__":
    if "--mac" in sys.argv:
        args = [a for a in sys.argv[1:] if not a.startswith("--")]
        _measure_mac(int(args[0]) if args else 100_000, int(args[1]) if len(args) > 1 else 10)
    else:
        trio.run(
            _measure,
            int(sys.argv[1]) if len(sys.argv) > 1 else 100_000,
            int(sys.argv[2]) if len(sys.argv) > 2 else 10,
            "--retain" in sys.argv,
        )
