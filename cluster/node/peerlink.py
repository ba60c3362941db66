"""Long-lived, mutually authenticated peer links carrying MAC'd msgpack frames between nodes.

Topology
--------
Each node dials every configured peer address; the connection it dials (*outbound*) carries its frames
*to* that peer, and frames *from* a peer arrive on the connection the peer dialed (*inbound*). So a pair
of nodes has two TCP connections, each used one way: no tie-breaking, and a link is up for sending
exactly while its outbound connection is.

Handshake (protocol version 3)
------------------------------
The dialer proves knowledge of the cluster secret first; the acceptor proves nothing, and sends nothing
that depends on the secret, until the dialer's proof checks out (so whoever connects gets no value to
test guessed secrets against)::

    dialer   -> ["hello", 3, dialer_id, dialer_address, nonce_d]
    acceptor -> ["challenge", acceptor_id, acceptor_address, nonce_a]
    dialer   -> ["proof", [dialer_proof(S) for each secret S the dialer holds, current first]]
                (or ["bye"]: ourselves, or a node already linked through another address; see below)
    acceptor -> ["welcome", acceptor_proof(S)]        S: the first of its own secrets a proof matched

Nonces are 32 random bytes. The proofs and the connection's frame key come from the secret, both nonces,
both ids and both addresses (HKDF-SHA256: :mod:`cluster.node.peerauth`); both sides compare with
``hmac.compare_digest``. A wrong proof closes the connection without a word. Any failure closes the
connection and counts in ``handshake_failures``. Handshake frames are bounded to
:data:`HANDSHAKE_FRAME_MAX` bytes and the whole exchange (TLS included) to ``handshake_timeout_ms``.

*Rotation*: a node may accept previous secrets besides its current one (``previous_secrets``). The dialer
sends one proof per secret it holds (at most :data:`MAX_SECRETS`); the acceptor takes the first of its
own secrets that one of them matches, and the dialer checks the welcome against each of its own. So any
two nodes with a secret in common link, and a rolling restart changes the secret with no split
(docs/security.md).

* *Self*: a challenge carrying our own node id and a nonce our own acceptor issued (and still waits on)
  is our own acceptor: the dialer says "bye". When the acceptor's connection comes from the very socket
  the dialer dialed from, the address is this node (``self_dials``): it is checked again after a backoff
  (the reconnect interval, doubling up to ``self_recheck_max_ms``; woken early like any waiting dialer),
  never given up for good. When it comes from elsewhere, something relays our dial back to us (an
  impostor on a down peer's port): ``self_relays``, a warning, and the address is dialed again after the
  normal reconnect interval. A challenge with our id and a nonce we did not issue is another node
  configured with our id: once it proves the secret, an error, logged and counted, and retried.
* *Duplicate address*: if the acceptor names a node that another address's dialer already links to (or
  is completing a handshake with), the dialer answers ``["bye"]`` and retries that address
  ``10 * reconnect_interval_ms`` later, so one node never gets two outbound links.
* A second authenticated inbound connection from a node id replaces (closes) the first.
* A dialer waits ``reconnect_interval_ms`` between attempts, but an authenticated inbound connection from a
  peer we have no outbound link to wakes every waiting dialer at once: a restarted peer is dialed back
  immediately (its snapshot answers depend on that link), not up to an interval later.

TLS (optional)
--------------
With ``tls`` set, both ends run TLS (stdlib ``ssl`` through ``trio.SSLStream``, contexts from
:mod:`cluster.node.tls`) before the handshake above; with a CA file they verify each other's certificate
against it (mutual TLS). The handshake and frame MACs run inside TLS unchanged.

Frames
------
4-byte big-endian payload length + payload + 16-byte tag, where the payload is a msgpack array of one or
more messages, each ``distro.codec.encode_message(m)`` (protocol version 3; version 2 carried one message
per frame), and the tag is a truncated HMAC-SHA256 of the frame's sequence number and payload under the
connection's frame key (:mod:`cluster.node.peerauth`). The writer puts everything queued for a peer when
it wakes, after letting one more scheduler round run (all that the node's tasks queued in the loop iteration
that woke it and the next, up to about 1 MiB and at most ``max_frame_bytes`` per frame) into one frame: one MAC, one ``send_all``, and on the reader's side one
MAC check and one msgpack decode, whatever the number of messages; under load a frame carries several
forwarded writes, their replies and sync batches (``messages_sent / frames_sent``). The reader decodes a
whole frame before handing any of it over, so a frame is delivered entirely or not at all, in order.

A frame whose tag is wrong (injected, altered, replayed, reordered) closes the connection before its
payload is decoded (``mac_failures`` and ``bad_frames``); a frame over ``max_frame_bytes``, undecodable
msgpack, a payload that is not a non-empty array, a :class:`~distro.codec.ProtocolError` in any of its
messages, or any byte on an outbound connection after the handshake closes that connection too
(``bad_frames``, a warning).

Sending
-------
:meth:`PeerLinks.send` never blocks and never calls back into the caller: it appends to the peer's
bounded queue, which a writer task drains, packing everything queued (up to ~1 MiB) into one frame and
one ``send_all``. A message that cannot be delivered (no authenticated outbound link, full queue, link
lost with it queued or in flight, unencodable, larger than ``max_frame_bytes`` less the 5 bytes of a
frame's array header) is reported through
``on_send_failed`` **later, from a PeerLinks task** (in order, never from inside ``send()``), so the
runtime may call ``send()`` while it is running the core. Failures noted before :meth:`serve` runs are
delivered once it does. A message whose ``send_all`` completed counts as sent (``messages_sent``) even
if the peer dies before reading it: every message ends up in exactly one of ``messages_sent`` and
``send_failures``.

Received messages go to ``on_messages(peer_id, messages)`` one frame at a time, so the receiver may
drain what they caused once per frame rather than once per message. The receive loop lets other tasks run
(a checkpoint) after every ``_YIELD_BYTES`` of frames it handled, not only between reads: one read holds up
to ``_RECV_MAX`` bytes, several snapshot chunks, and a starting node's probes waited for all of them. A
snapshot chunk of 2,500 instances is a frame of ~120 KiB (~16 ms of decoding and merging): at 128 KiB the
loop took two of them a step, at 64 KiB one. Callbacks run synchronously in PeerLinks' tasks; an exception from one propagates out of :meth:`serve`.
Timeouts use trio's clock (``trio.current_time()``).
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import secrets
import socket
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack
import trio

from cluster.node.listeners import open_listeners
from cluster.node.peerauth import (
    NONCE_BYTES,
    PROTOCOL_VERSION,
    TAG_BYTES,
    FrameOpener,
    FrameSealer,
    SessionKeys,
    session_keys,
    transcript,
)
from cluster.node.tls import TlsFiles, client_context, server_context
from cluster.node.tls import handshake as tls_handshake
from distro.codec import DecodeCache, ProtocolError, decode_message, encode_message
from distro.errors import LinkClosed
from distro.messages import Forward, Message, SyncBatch

__all__ = [
    "HANDSHAKE_FRAME_MAX",
    "MAX_PREVIOUS_SECRETS",
    "PROTOCOL_VERSION",
    "LinkClosed",
    "LinkState",
    "PeerLinkConfig",
    "PeerLinkStats",
    "PeerLinks",
]

log = logging.getLogger("distro.peerlink")

HANDSHAKE_FRAME_MAX = 4096
"""Largest frame accepted before the handshake completes."""
MAX_SECRETS = 4  # secrets a node holds: the current one and those still accepted (one proof each)
MAX_PREVIOUS_SECRETS = MAX_SECRETS - 1
MAX_ID_CHARS = 256
_LEN = struct.Struct(">I")
_RECV_SIZE = 65536
_RECV_MAX = 1 << 20  # one receive_some allocates its whole size: stay moderate even for big frames
_YIELD_BYTES = 64 * 1024  # the receive loop lets other tasks run after handling about this much (a snapshot chunk)
_FRAME_SOFT_BYTES = 128 * 1024  # the writer starts a new frame past this (a frame is decoded in one step)
_BATCH_BYTES = 1 << 20  # the writer packs up to about this much into one send_all
_ARRAY_HEADER_MAX = 5  # bytes of the msgpack array header a frame's payload starts with (array 32)
_LISTEN_BACKLOG = 128
_SHARED_ENCODINGS = 8  # SyncBatch encodings kept for the next peer (Replication.flush_due shares batches)
_SHARED_BYTES = 4 * 1024 * 1024  # ... and at most this many bytes of them (a bigger one is not kept)
_DUPLICATE_RETRY_FACTOR = 10  # a duplicate address is retried this many reconnect intervals later


# The largest frame a peer link sends or accepts; settings size the core's batches to fit it.
PEER_MAX_FRAME_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class PeerLinkConfig:
    """Settings of one node's peer links (times in milliseconds of trio's clock)."""

    node_id: str
    advertise_address: str  # this node's HTTP address host:port, announced to peers
    peer_addresses: tuple[str, ...]  # peers' peer-link addresses host:port (our own is detected, skipped)
    secret: bytes  # cluster secret; both ends prove knowledge of it
    previous_secrets: tuple[bytes, ...] = ()  # also accepted while a new secret is rolled out
    max_frame_bytes: int = PEER_MAX_FRAME_BYTES
    send_queue_limit: int = 10_000  # messages queued per peer; beyond: reported as failed
    send_queue_bytes: int = 64 * 1024 * 1024  # encoded bytes queued per peer; beyond: reported as failed
    connect_timeout_ms: int = 2_000
    handshake_timeout_ms: int = 3_000  # TLS (when on) and the peer handshake together
    reconnect_interval_ms: int = 500
    self_recheck_max_ms: int = 30_000  # an address found to be ourselves is rechecked, backing off to this
    write_timeout_ms: int = 10_000  # one send_all blocked this long (checked every quarter of it): close the link
    tcp_user_timeout_ms: int = 5_000  # data unacknowledged this long aborts the connection (TCP_USER_TIMEOUT)
    max_pending_handshakes: int = 64  # unauthenticated inbound connections at once; beyond: closed at once
    tls: TlsFiles | None = None  # TLS on both ends of every link (mutual, verified against tls.ca_file)


@dataclass
class PeerLinkStats:
    """Counters for /metrics (a snapshot: :meth:`PeerLinks.statistics` returns a fresh copy)."""

    frames_sent: int = 0
    frames_received: int = 0
    messages_sent: int = 0  # a frame carries one or more messages (everything queued when the writer woke)
    messages_received: int = 0
    bytes_sent: int = 0  # frame bytes, length prefixes and tags included; handshakes not counted
    bytes_received: int = 0
    handshake_failures: int = 0  # either side, any reason (bad secret, TLS, garbage, timeout, id conflict)
    bad_frames: int = 0  # authenticated connections closed for a malformed, oversized or forged frame
    mac_failures: int = 0  # of those, frames whose tag was wrong (injected, altered, replayed, reordered)
    reconnects: int = 0  # dial attempts after the first, per address
    send_failures: int = 0  # messages reported through on_send_failed
    unsendable: int = 0  # messages this side could not encode or that exceeded the frame limit: dropped
    queue_depths: dict[str, int] = field(default_factory=dict)  # node id -> messages queued
    queue_bytes: dict[str, int] = field(default_factory=dict)  # node id -> encoded bytes queued
    outbound_connects: int = 0  # outbound handshakes completed (on_connected calls)
    inbound_accepts: int = 0  # inbound handshakes completed
    outbound_links: int = 0  # currently up
    inbound_links: int = 0
    self_dials: int = 0  # times an address was found to be this node (rechecked later, with backoff)
    self_relays: int = 0  # times our own dial came back to us from elsewhere (a relay): not taken as self
    dialers: int = 0  # addresses currently being dialed
    dialers_waiting: int = 0  # of those, waiting out the reconnect interval (woken when a peer connects in)
    pending_handshakes: int = 0  # inbound connections not yet authenticated


@dataclass(frozen=True, slots=True)
class LinkState:
    """This node's links with one peer: can it send (outbound up), can it hear (inbound up), what waits."""

    outbound: bool
    inbound: bool
    queued: int


class _Eof(LinkClosed):
    def __init__(self) -> None:
        super().__init__("connection closed by peer")


class _BadTag(LinkClosed):
    def __init__(self, seq: int) -> None:
        super().__init__(f"frame {seq} failed its MAC check (forged, altered, replayed or reordered)")


_Session = tuple[tuple[str, str], SessionKeys]
"""A completed handshake: the peer's (node id, advertised address) and the connection's keys."""


class _Outbound:
    """One authenticated outbound connection and its queue."""

    __slots__ = ("address", "closed", "dial_address", "inflight", "node_id", "queue", "queued_bytes", "write_started",
                 "writer")

    def __init__(self, node_id: str, address: str, dial_address: str) -> None:
        self.node_id = node_id
        self.address = address
        self.dial_address = dial_address
        self.queue: deque[tuple[Message, bytes]] = deque()  # each message with its msgpack encoding
        self.queued_bytes = 0  # encoded bytes in queue (bounded by send_queue_bytes)
        self.inflight: list[Message] = []
        self.writer: trio.lowlevel.Task | None = None  # the writer task, while parked on an empty queue
        self.write_started: float | None = None  # trio time the send_all in progress began
        self.closed = False


class _Inbound:
    __slots__ = ("address", "scope")

    def __init__(self, address: str, scope: trio.CancelScope) -> None:
        self.address = address
        self.scope = scope


class _FrameReader:
    """Length-prefixed frames from a stream, with a buffer that survives the handshake."""

    __slots__ = ("buffer", "stream")

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def fill(self, at_least: int = 1) -> None:
        data = await self.stream.receive_some(min(max(_RECV_SIZE, at_least), _RECV_MAX))
        if not data:
            raise _Eof()
        self.buffer += data

    async def read(self, max_bytes: int) -> bytes:
        """One handshake frame (no tag: the handshake authenticates itself)."""
        buf = self.buffer
        while len(buf) < 4:
            await self.fill()
        (length,) = _LEN.unpack_from(buf)
        if length > max_bytes:
            raise LinkClosed(f"frame of {length} bytes exceeds {max_bytes}")
        while len(buf) < 4 + length:
            await self.fill(4 + length - len(buf))
        frame = bytes(buf[4 : 4 + length])
        del buf[: 4 + length]
        return frame


class _Connection:
    """One TCP connection: the stream frames go over (TLS or the socket itself) and the socket below."""

    __slots__ = ("sock", "stream")

    def __init__(self, sock: trio.SocketStream) -> None:
        self.sock = sock
        self.stream: trio.abc.Stream = sock

    def remote(self) -> str:
        return _address_text(self.sock, "getpeername")

    def local(self) -> str:
        return _address_text(self.sock, "getsockname")

    async def start_tls(
        self, context: Any, timeout_s: float, *, server_side: bool, server_hostname: str | None = None
    ) -> None:
        """Wrap the socket in TLS and run the TLS handshake within ``timeout_s``."""
        stream = trio.SSLStream(self.sock, context, server_side=server_side, server_hostname=server_hostname)
        self.stream = stream
        await tls_handshake(stream, timeout_s)

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


def _array_header(count: int) -> bytes:
    """The msgpack array header for ``count`` elements (what ``msgpack.packb`` writes before a list's)."""
    if count < 16:
        return bytes((0x90 | count,))
    if count < 1 << 16:
        return b"\xdc" + count.to_bytes(2, "big")
    return b"\xdd" + count.to_bytes(4, "big")


def _frame(obj: Any) -> bytes:
    payload: bytes = msgpack.packb(obj, use_bin_type=True)
    return _LEN.pack(len(payload)) + payload


def _unpack(payload: bytes | bytearray | memoryview) -> Any:
    try:
        return msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several types on garbage
        raise LinkClosed(f"undecodable frame ({type(exc).__name__})") from None


def _seal_frame(sealer: FrameSealer, packed: list[bytes]) -> tuple[bytes, bytes, bytes]:
    """``(length prefix, payload, tag)`` of the next frame, carrying the packed messages ``packed``."""
    payload = _array_header(len(packed)) + b"".join(packed)
    prefix, tag = sealer.seal(payload)
    return prefix, payload, tag


def _decode_frame(payload: bytearray, cache: DecodeCache | None = None) -> list[Message]:
    """The messages of an authenticated frame's payload, all or none (LinkClosed on anything malformed).

    ``cache``: the service keys and cluster names earlier frames' messages validated (see DecodeCache)."""
    try:
        objs = msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several types on garbage
        raise LinkClosed(f"undecodable frame ({type(exc).__name__})") from None
    if type(objs) is not list or not objs:
        raise LinkClosed("malformed frame: not a non-empty array of messages")
    try:
        return [decode_message(obj, cache) for obj in objs]
    except ProtocolError as exc:
        raise LinkClosed(f"malformed message: {exc}") from None


def _is_id(value: Any) -> bool:
    return type(value) is str and 0 < len(value) <= MAX_ID_CHARS


def _is_address(value: Any) -> bool:
    return type(value) is str and len(value) <= MAX_ID_CHARS


def _is_nonce(value: Any) -> bool:
    return type(value) is bytes and len(value) == NONCE_BYTES


def _is_proofs(value: Any) -> bool:
    return (
        type(value) is list
        and 0 < len(value) <= MAX_SECRETS
        and all(type(proof) is bytes and len(proof) <= 64 for proof in value)
    )


def _split_address(address: str) -> tuple[str, int]:
    host, sep, port_text = address.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"peer address must be host:port, got {address!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


def _address_text(sock: trio.SocketStream, which: str) -> str:
    """``host:port`` of one end of a socket (IPv4-mapped IPv6 written as IPv4), "?" when unknown."""
    try:
        host, port = getattr(sock.socket, which)()[:2]
    except OSError:
        return "?"
    if isinstance(host, str) and host.startswith("::ffff:") and "." in host:
        host = host[len("::ffff:") :]
    return f"{host}:{port}"


def _tune(stream: trio.SocketStream, user_timeout_ms: int) -> None:
    """TCP_NODELAY (trio sets it already; made explicit), keep-alives, and TCP_USER_TIMEOUT, so that
    half-dead links end.

    Keep-alives only probe idle connections, and a link carrying pings every 500 ms is never idle: without
    TCP_USER_TIMEOUT a connection whose peer vanished (a partition, a cable) lives on through exponential
    retransmission backoff, for minutes, and when the path comes back the first retransmission may be tens of
    seconds away (measured with scripts/chaos: 23 s to converge after a 30 s partition). With it, data left
    unacknowledged for ``user_timeout_ms`` aborts the connection and the dialer connects anew.
    """
    try:
        stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, True)
        for name, value in (
            ("TCP_KEEPIDLE", 10),
            ("TCP_KEEPINTVL", 5),
            ("TCP_KEEPCNT", 3),
            ("TCP_USER_TIMEOUT", user_timeout_ms),
        ):
            option = getattr(socket, name, None)
            if option is not None:
                stream.setsockopt(socket.IPPROTO_TCP, option, value)
    except OSError:
        pass


_CLOSED_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)


class PeerLinks:
    """Dials every peer address, accepts peers' connections, authenticates both ways, carries frames."""

    def __init__(
        self,
        config: PeerLinkConfig,
        *,
        on_messages: Callable[[str, list[Message]], None],
        on_connected: Callable[[str, str], None],
        on_send_failed: Callable[[str, Message], None],
    ) -> None:
        if not _is_id(config.node_id):
            raise ValueError(f"node id must be 1..{MAX_ID_CHARS} characters")
        if not _is_address(config.advertise_address):
            raise ValueError(f"advertise address must be at most {MAX_ID_CHARS} characters")
        for address in config.peer_addresses:
            _split_address(address)
        if len(config.previous_secrets) > MAX_PREVIOUS_SECRETS:
            raise ValueError(f"at most {MAX_PREVIOUS_SECRETS} previous cluster secrets")
        self.config = config
        # The current secret first: a dialer proves each, an acceptor takes the first of its own that matches.
        self._secrets = (config.secret, *config.previous_secrets)
        tls = config.tls
        self._tls_server = None if tls is None else server_context(tls, require_client_cert=bool(tls.ca_file))
        self._tls_client = None if tls is None else client_context(tls)
        self._on_messages = on_messages
        self._on_connected = on_connected
        self._on_send_failed = on_send_failed
        self._stats = PeerLinkStats()
        # Keys and cluster names validated once for every authenticated peer's frames (bounded in bytes).
        self._decode_cache = DecodeCache()
        # The encodings of the last few SyncBatch messages, by identity: the core sends the same batch to every
        # peer whose dirty set was the same (Replication.flush_due), encoded once here for all of them.
        # At most _SHARED_ENCODINGS of them and _SHARED_BYTES in all: they (and the batches, with their entries)
        # stay held until replaced, also once the cluster is quiet.
        self._shared: dict[int, tuple[Message, bytes]] = {}
        self._shared_bytes = 0
        self._outbound: dict[str, _Outbound] = {}
        self._inbound: dict[str, _Inbound] = {}
        self._failures: deque[tuple[str, Message]] = deque()
        self._failure_wakeup: trio.Event | None = None
        self._dialer_nonces: set[bytes] = set()
        # Nonces our acceptor issued and still waits on -> where that connection comes from (self-dials).
        self._acceptor_nonces: dict[bytes, str] = {}
        self._dialing: set[str] = set()
        # Dialers waiting out their reconnect interval, woken early when any peer connects to us: a peer
        # that just (re)started is worth dialing at once, not up to reconnect_interval_ms later.
        self._dial_wakeups: dict[str, trio.Event] = {}
        self._dial_claims: dict[str, str] = {}  # node id -> the address whose dialer links to it
        self._nursery: trio.Nursery | None = None
        self._pending_handshakes = 0

    # ============================================================================================
    # Public API
    # ============================================================================================
    def send(self, node_id: str, message: Message) -> None:
        """Queue ``message`` for ``node_id``; never blocks, never calls back synchronously.

        Without an authenticated outbound link to that node, or with its queue full (``send_queue_limit``
        messages or ``send_queue_bytes`` encoded bytes), the message is reported through ``on_send_failed``
        shortly after, from a PeerLinks task. The message is encoded here, so the queue's bound is in bytes;
        one that cannot be encoded or would not fit in a frame is dropped (:meth:`_drop_unsendable`).
        """
        link = self._outbound.get(node_id)
        if link is None or link.closed or len(link.queue) >= self.config.send_queue_limit:
            self._fail(node_id, message)
            return
        packed = self._encode(node_id, message)
        if packed is None:
            return
        if link.queued_bytes + len(packed) > self.config.send_queue_bytes:
            self._fail(node_id, message)
            return
        link.queue.append((message, packed))
        link.queued_bytes += len(packed)
        writer = link.writer
        if writer is not None:
            link.writer = None
            trio.lowlevel.reschedule(writer)

    def connected_peers(self) -> dict[str, str]:
        """Node id -> advertised address of every peer with an authenticated outbound link."""
        return {node_id: link.address for node_id, link in self._outbound.items() if not link.closed}

    def link_states(self) -> dict[str, LinkState]:
        """Node id -> the state of this node's links with that peer (for the console's cluster page)."""
        ids = {node_id for node_id, link in self._outbound.items() if not link.closed} | set(self._inbound)
        states = {}
        for node_id in sorted(ids):
            link = self._outbound.get(node_id)
            up = link is not None and not link.closed
            states[node_id] = LinkState(up, node_id in self._inbound, len(link.queue) if link is not None and up else 0)
        return states

    def statistics(self) -> PeerLinkStats:
        """A snapshot of the counters, with current queue depths and link counts."""
        return dataclasses.replace(
            self._stats,
            queue_depths={node_id: len(link.queue) for node_id, link in self._outbound.items()},
            queue_bytes={node_id: link.queued_bytes for node_id, link in self._outbound.items()},
            outbound_links=len(self._outbound),
            inbound_links=len(self._inbound),
            dialers=len(self._dialing),
            dialers_waiting=len(self._dial_wakeups),
            pending_handshakes=self._pending_handshakes,
        )

    def add_peer_address(self, address: str) -> None:
        """Dial ``address`` too (no-op if already dialed); only while :meth:`serve` runs."""
        _split_address(address)
        if self._nursery is None:
            raise RuntimeError("add_peer_address needs serve() running")
        if address not in self._dialing:
            self._dialing.add(address)
            self._nursery.start_soon(self._dial_forever, address)

    async def serve(
        self, host: str, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen for peers on host:port (0 = any free port; ``task_status.started(actual_port)``) and run
        the dialers. Runs until cancelled; cancelling closes every connection."""
        listeners = [
            trio.SocketListener(trio.socket.from_stdlib_socket(sock))
            for sock in await open_listeners(host, port, backlog=_LISTEN_BACKLOG, what="the peer-link port")
        ]
        actual_port: int = listeners[0].socket.getsockname()[1]
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._deliver_failures)
                for listener in listeners:
                    nursery.start_soon(self._accept_loop, listener, nursery)
                for address in self.config.peer_addresses:
                    self.add_peer_address(address)
                log.info(
                    "peer link listening on port %d%s, dialing %d addresses",
                    actual_port,
                    " (TLS)" if self.config.tls else "",
                    len(self._dialing),
                )
                task_status.started(actual_port)
        finally:
            self._nursery = None
            for listener in listeners:
                listener.socket.close()

    # ============================================================================================
    # Failures (delivered from a task of ours, never from inside send())
    # ============================================================================================
    def _drop_unsendable(self, node_id: str, message: Message) -> None:
        """A message this side cannot put on the wire (a bug upstream, not the peer's fault).

        The link stays up and the peer is not reported down: only a forwarded client write is handed back
        as a failure, so that its client still gets an answer (the core then applies it locally).
        """
        self._stats.unsendable += 1
        if isinstance(message, Forward):
            self._fail(node_id, message)

    def _fail(self, node_id: str, message: Message) -> None:
        self._stats.send_failures += 1
        self._failures.append((node_id, message))
        wakeup = self._failure_wakeup
        if wakeup is not None:
            self._failure_wakeup = None
            wakeup.set()

    async def _deliver_failures(self) -> None:
        failures = self._failures
        while True:
            if not failures:
                wakeup = self._failure_wakeup = trio.Event()
                await wakeup.wait()
            for _ in range(len(failures)):  # those present now; later ones after a checkpoint
                node_id, message = failures.popleft()
                self._on_send_failed(node_id, message)
            await trio.lowlevel.checkpoint()

    # ============================================================================================
    # Accepting: frames from peers
    # ============================================================================================
    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:  # out of descriptors and the like: back off a little
                log.error("peer link accept failed: %s", exc)
                await trio.sleep(0.1)
                continue
            nursery.start_soon(self._serve_inbound, stream)

    async def _serve_inbound(self, sock: trio.SocketStream) -> None:
        _tune(sock, self.config.tcp_user_timeout_ms)
        conn = _Connection(sock)
        try:
            if self._pending_handshakes >= self.config.max_pending_handshakes:
                self._stats.handshake_failures += 1
                log.warning("too many peer handshakes at once: refusing %s", conn.remote())
                return
            self._pending_handshakes += 1
            try:
                timeout_s = self.config.handshake_timeout_ms / 1000
                with trio.fail_after(timeout_s):
                    if self._tls_server is not None:
                        await conn.start_tls(self._tls_server, timeout_s, server_side=True)
                    reader = _FrameReader(conn.stream)
                    session = await self._handshake_acceptor(conn, reader)
            except (LinkClosed, trio.TooSlowError, *_CLOSED_ERRORS) as exc:
                self._stats.handshake_failures += 1
                log.warning(
                    "peer handshake from %s failed: %s", conn.remote(), str(exc) or type(exc).__name__
                )
                return
            finally:
                self._pending_handshakes -= 1
            if session is None:  # our own dialer, or a polite duplicate: nothing to log
                return
            peer, keys = session
            await self._read_frames(peer, conn, reader, FrameOpener(keys.frame_key))
        finally:
            await conn.aclose()

    def _acceptor_keys(
        self, proofs: list[bytes], transcript_bytes: bytes, nonces: tuple[bytes, bytes]
    ) -> SessionKeys | None:
        """The keys of the first of our secrets that one of the dialer's proofs was made with, or None."""
        for secret in self._secrets:
            keys = session_keys(secret, nonces[0], nonces[1], transcript_bytes)
            if any(hmac.compare_digest(proof, keys.dialer_proof) for proof in proofs):
                return keys
        return None

    async def _handshake_acceptor(self, conn: _Connection, reader: _FrameReader) -> _Session | None:
        """The dialer's (node id, address) and the connection's keys; None when the dialer said "bye".

        Nothing sent before the dialer's proof checks out depends on the secret."""
        cfg = self.config
        hello = _unpack(await reader.read(HANDSHAKE_FRAME_MAX))
        if not (type(hello) is list and len(hello) >= 2 and hello[0] == "hello"):
            raise LinkClosed("expected hello")
        if type(hello[1]) is not int or hello[1] != PROTOCOL_VERSION:
            raise LinkClosed(
                f"unsupported protocol version {str(hello[1])[:20]} (this node speaks {PROTOCOL_VERSION})"
            )
        if len(hello) != 5:
            raise LinkClosed("malformed hello")
        _, _, dialer_id, dialer_address, nonce_d = hello
        if not (_is_id(dialer_id) and _is_address(dialer_address) and _is_nonce(nonce_d)):
            raise LinkClosed("malformed hello")
        dialer = (dialer_id, dialer_address)
        me = (cfg.node_id, cfg.advertise_address)
        nonce_a = secrets.token_bytes(NONCE_BYTES)
        self._acceptor_nonces[nonce_a] = conn.remote()
        try:
            await conn.stream.send_all(_frame(["challenge", cfg.node_id, cfg.advertise_address, nonce_a]))
            reply = _unpack(await reader.read(HANDSHAKE_FRAME_MAX))
        finally:
            del self._acceptor_nonces[nonce_a]
        if reply == ["bye"]:
            log.debug(
                "peer %s at %s said bye (ourselves, or linked through another address)",
                dialer_id,
                conn.remote(),
            )
            return None
        if not (type(reply) is list and len(reply) == 2 and reply[0] == "proof" and _is_proofs(reply[1])):
            raise LinkClosed("expected proof")
        keys = self._acceptor_keys(reply[1], transcript(dialer, me, nonce_d, nonce_a), (nonce_d, nonce_a))
        if keys is None:
            raise LinkClosed("dialer failed to prove the cluster secret")
        if dialer_id == cfg.node_id:
            log.error(
                "node %s at %s uses our node id: check the cluster configuration", dialer_id, conn.remote()
            )
            raise LinkClosed("another node uses our node id")
        await conn.stream.send_all(_frame(["welcome", keys.acceptor_proof]))
        return dialer, keys

    async def _read_frames(
        self, peer: tuple[str, str], conn: _Connection, reader: _FrameReader, opener: FrameOpener
    ) -> None:
        peer_id, peer_address = peer
        stats = self._stats
        with trio.CancelScope() as scope:
            old = self._inbound.get(peer_id)
            if old is not None:
                log.info("peer %s connected again: closing its previous inbound connection", peer_id)
                old.scope.cancel()
            me = self._inbound[peer_id] = _Inbound(peer_address, scope)
            stats.inbound_accepts += 1
            if peer_id not in self._outbound:
                for wakeup in self._dial_wakeups.values():
                    wakeup.set()
            log.info("peer %s (%s) connected from %s", peer_id, peer_address, conn.remote())
            try:
                await self._deliver_frames(peer_id, reader, opener)
            except _Eof:
                log.info("peer %s closed its connection", peer_id)
            except LinkClosed as exc:
                stats.bad_frames += 1
                if isinstance(exc, _BadTag):
                    stats.mac_failures += 1
                log.warning("closing connection from peer %s (%s): %s", peer_id, conn.remote(), exc)
            except _CLOSED_ERRORS as exc:
                log.info("connection from peer %s lost: %s", peer_id, exc)
            finally:
                if self._inbound.get(peer_id) is me:
                    del self._inbound[peer_id]

    async def _deliver_frames(self, peer_id: str, reader: _FrameReader, opener: FrameOpener) -> None:
        """Check, decode and hand over every frame until the connection ends (the hot loop)."""
        stats = self._stats
        max_frame = self.config.max_frame_bytes
        on_messages = self._on_messages
        check = opener.check
        cache = self._decode_cache
        buf = reader.buffer
        handled = 0  # bytes of frames handled since the last checkpoint
        while True:
            pos = 0
            size = len(buf)
            need = 4
            while size - pos >= 4:
                if handled >= _YIELD_BYTES:
                    handled = 0
                    await trio.lowlevel.checkpoint()
                (length,) = _LEN.unpack_from(buf, pos)
                if length > max_frame:
                    raise LinkClosed(f"frame of {length} bytes exceeds {max_frame}")
                body_end = pos + 4 + length
                end = body_end + TAG_BYTES
                if end > size:
                    need = end - pos
                    break
                payload = buf[pos + 4 : body_end]
                if not check(payload, buf[body_end:end]):
                    raise _BadTag(opener.seq)
                messages = _decode_frame(payload, cache)
                stats.frames_received += 1
                stats.messages_received += len(messages)
                stats.bytes_received += end - pos
                handled += end - pos
                pos = end
                on_messages(peer_id, messages)
            if pos:
                del buf[:pos]
            handled = 0  # the read below is a checkpoint too
            await reader.fill(need - len(buf))

    # ============================================================================================
    # Dialing: frames to peers
    # ============================================================================================
    async def _dial_forever(self, address: str) -> None:
        interval = self.config.reconnect_interval_ms / 1000
        self_delay = 0.0  # backoff of the recheck of an address that was ourselves
        delay = 0.0
        wake_early = True
        try:
            while True:
                if delay:
                    await self._wait_to_redial(address, delay, wake_early)
                delay = interval
                wake_early = True
                outcome = await self._dial_once(address)
                if outcome == "self":
                    self._stats.self_dials += 1
                    self_delay = min(max(2 * self_delay, interval), self.config.self_recheck_max_ms / 1000)
                    delay = self_delay
                    (log.info if self._stats.self_dials == 1 else log.debug)(
                        "peer address %s is this node: checking again in %.1f s", address, delay
                    )
                elif outcome == "relay":
                    self._stats.self_relays += 1
                    log.warning(
                        "peer address %s relayed our own connection back to us (an impostor on a peer's port?): "
                        "not taken as ourselves, dialing it again",
                        address,
                    )
                elif outcome == "duplicate":
                    delay = interval * _DUPLICATE_RETRY_FACTOR
                    wake_early = False  # that node is linked through another address already
        finally:
            self._dialing.discard(address)

    async def _wait_to_redial(self, address: str, delay: float, wake_early: bool) -> None:
        wakeup = trio.Event()
        if wake_early:
            self._dial_wakeups[address] = wakeup
        try:
            with trio.move_on_after(delay):
                await wakeup.wait()
        finally:
            self._dial_wakeups.pop(address, None)
        self._stats.reconnects += 1

    async def _dial_once(self, address: str) -> str:
        """Connect, handshake and run the link until it ends: "self", "relay", "duplicate" or "done"."""
        cfg = self.config
        host, port = _split_address(address)
        sock: trio.SocketStream | None = None
        with trio.move_on_after(cfg.connect_timeout_ms / 1000):
            try:
                sock = await trio.open_tcp_stream(host, port)
            except OSError as exc:
                log.debug("cannot connect to peer %s: %s", address, exc)
        if sock is None:
            return "done"
        _tune(sock, cfg.tcp_user_timeout_ms)
        conn = _Connection(sock)
        try:
            try:
                timeout_s = cfg.handshake_timeout_ms / 1000
                with trio.fail_after(timeout_s):
                    if self._tls_client is not None:
                        await conn.start_tls(
                            self._tls_client, timeout_s, server_side=False, server_hostname=host
                        )
                    outcome = await self._handshake_dialer(conn, address)
            except (LinkClosed, trio.TooSlowError, *_CLOSED_ERRORS) as exc:
                self._stats.handshake_failures += 1
                log.warning("peer handshake with %s failed: %s", address, str(exc) or type(exc).__name__)
                return "done"
            if isinstance(outcome, str):
                return outcome
            peer, keys = outcome
            try:
                await self._run_outbound(address, peer, conn, FrameSealer(keys.frame_key))
            finally:
                self._release_claim(peer[0], address)
            return "done"
        finally:
            await conn.aclose()

    def _release_claim(self, node_id: str, address: str) -> None:
        if self._dial_claims.get(node_id) == address:
            del self._dial_claims[node_id]

    async def _handshake_dialer(self, conn: _Connection, address: str) -> _Session | str:
        """The peer's (node id, advertise address) and the connection's keys, or "self" / "relay" /
        "duplicate".

        Before proving itself, the dialer claims the peer's node id for its address (released by the
        caller when the link ends, or here when the handshake fails), so that two addresses of one node
        never both complete a handshake: the second says "bye" instead.
        """
        cfg = self.config
        stream = conn.stream
        reader = _FrameReader(stream)
        me = (cfg.node_id, cfg.advertise_address)
        nonce_d = secrets.token_bytes(NONCE_BYTES)
        self._dialer_nonces.add(nonce_d)
        claimed: str | None = None
        try:
            await stream.send_all(
                _frame(["hello", PROTOCOL_VERSION, cfg.node_id, cfg.advertise_address, nonce_d])
            )
            challenge = _unpack(await reader.read(HANDSHAKE_FRAME_MAX))
            if not (type(challenge) is list and len(challenge) == 4 and challenge[0] == "challenge"):
                raise LinkClosed("expected challenge")
            _, peer_id, peer_address, nonce_a = challenge
            if not (_is_id(peer_id) and _is_address(peer_address) and _is_nonce(nonce_a)):
                raise LinkClosed("malformed challenge")
            if peer_id == cfg.node_id and nonce_a in self._acceptor_nonces:
                # Our own acceptor answered: from the very socket we dialed from, or through a relay.
                came_from = self._acceptor_nonces[nonce_a]
                await stream.send_all(_frame(["bye"]))
                return "self" if came_from == conn.local() else "relay"
            if peer_id != cfg.node_id:
                holder = self._dial_claims.get(peer_id)
                if holder is not None and holder != address:
                    log.warning(
                        "peer address %s is node %s, already linked through %s: retrying later",
                        address,
                        peer_id,
                        holder,
                    )
                    await stream.send_all(_frame(["bye"]))
                    return "duplicate"
                self._dial_claims[peer_id] = address
                claimed = peer_id
            peer = (peer_id, peer_address)
            t = transcript(me, peer, nonce_d, nonce_a)
            candidates = [session_keys(secret, nonce_d, nonce_a, t) for secret in self._secrets]
            await stream.send_all(_frame(["proof", [keys.dialer_proof for keys in candidates]]))
            welcome = _unpack(await reader.read(HANDSHAKE_FRAME_MAX))
            if not (
                type(welcome) is list
                and len(welcome) == 2
                and welcome[0] == "welcome"
                and type(welcome[1]) is bytes
            ):
                raise LinkClosed("expected welcome")
            keys = next((k for k in candidates if hmac.compare_digest(welcome[1], k.acceptor_proof)), None)
            if keys is None:
                raise LinkClosed("peer failed to prove the cluster secret")
            if peer_id == cfg.node_id:
                log.error(
                    "the node at %s uses our node id %s: check the cluster configuration",
                    conn.remote(),
                    peer_id,
                )
                raise LinkClosed("another node uses our node id")
            if reader.buffer:
                raise LinkClosed("unexpected data after welcome")
            claimed = None  # the caller releases it when the link ends
            return peer, keys
        finally:
            self._dialer_nonces.discard(nonce_d)
            if claimed is not None:
                self._release_claim(claimed, address)

    async def _run_outbound(
        self, dial_address: str, peer: tuple[str, str], conn: _Connection, sealer: FrameSealer
    ) -> None:
        peer_id, peer_address = peer
        old = self._outbound.get(peer_id)
        assert old is None or old.closed, "one dial claim per node id"
        link = _Outbound(peer_id, peer_address, dial_address)
        self._outbound[peer_id] = link
        self._stats.outbound_connects += 1
        log.info("linked to peer %s (%s) at %s", peer_id, peer_address, dial_address)
        try:
            self._on_connected(peer_id, peer_address)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_outbound, link, conn.stream, nursery.cancel_scope)
                nursery.start_soon(self._watch_writes, link, nursery.cancel_scope)
                await self._write_frames(link, conn.stream, sealer, nursery.cancel_scope)
        finally:
            link.closed = True
            if self._outbound.get(peer_id) is link:
                del self._outbound[peer_id]
            for message in link.inflight:
                self._fail(peer_id, message)
            link.inflight = []
            while link.queue:
                self._fail(peer_id, link.queue.popleft()[0])
            link.queued_bytes = 0

    async def _watch_outbound(
        self, link: _Outbound, stream: trio.abc.Stream, scope: trio.CancelScope
    ) -> None:
        """The peer never writes on our outbound connection: any byte, or its end, closes the link."""
        try:
            data = await stream.receive_some(HANDSHAKE_FRAME_MAX)
        except _CLOSED_ERRORS as exc:
            log.info("link to peer %s lost: %s", link.node_id, exc)
        else:
            if data:
                self._stats.bad_frames += 1
                log.warning("peer %s wrote on our outbound connection: closing it", link.node_id)
            else:
                log.info("peer %s closed our link", link.node_id)
        scope.cancel()

    def _encode(self, node_id: str, message: Message) -> bytes | None:
        """The message's msgpack encoding, or None when it cannot go on the wire (dropped, counted, logged)."""
        shared = type(message) is SyncBatch
        if shared:
            hit = self._shared.get(id(message))
            if hit is not None and hit[0] is message:
                return hit[1]
        try:
            packed: bytes = msgpack.packb(encode_message(message), use_bin_type=True)
        except Exception as exc:  # a message the codec or msgpack cannot carry: a bug upstream
            log.error("cannot encode %s for peer %s: %r", type(message).__name__, node_id, exc)
            self._drop_unsendable(node_id, message)
            return None
        room = self.config.max_frame_bytes - _ARRAY_HEADER_MAX
        if len(packed) > room:
            log.error("%s for peer %s is %d bytes, over the %d-byte frame limit: dropped",
                      type(message).__name__, node_id, len(packed), room)
            self._drop_unsendable(node_id, message)
            return None
        if shared and len(packed) <= _SHARED_BYTES:
            if len(self._shared) >= _SHARED_ENCODINGS or self._shared_bytes + len(packed) > _SHARED_BYTES:
                self._shared.clear()
                self._shared_bytes = 0
            self._shared[id(message)] = (message, packed)
            self._shared_bytes += len(packed)
        return packed

    def _pack_batch(self, link: _Outbound, sealer: FrameSealer) -> tuple[list[Message], int, bytes]:
        """Take up to ~1 MiB of queued messages off the queue: ``(messages, frames, sealed frames)``.

        Each frame carries as many messages as fit in ``max_frame_bytes`` and ``_FRAME_SOFT_BYTES`` (normally
        one frame holds them all; a message bigger than that goes alone, and every queued message fits in a
        frame alone, :meth:`send` made sure): the receiver decodes a frame in one step, and four snapshot chunks
        in one frame held it for 4 x 20 ms. A chunk of 2,500 instances is ~120 KiB: one a frame (a frame was
        cut only once it had reached the soft size, so two chunks shared one and a starting node decoded
        both in one step, 37-43 ms of CPU in the 1M restart on a busy machine)."""
        room = self.config.max_frame_bytes - _ARRAY_HEADER_MAX
        queue = link.queue
        batch: list[Message] = []
        chunks: list[bytes] = []
        frame: list[bytes] = []  # the packed messages of the frame being filled
        frame_bytes = 0
        frames = 0
        size = 0
        while queue and size < _BATCH_BYTES:
            message, packed = queue.popleft()
            link.queued_bytes -= len(packed)
            if frame and frame_bytes + len(packed) > min(room, _FRAME_SOFT_BYTES):
                chunks += _seal_frame(sealer, frame)
                frames += 1
                frame = []
                frame_bytes = 0
            frame.append(packed)
            frame_bytes += len(packed)
            batch.append(message)
            size += len(packed)
        if frame:
            chunks += _seal_frame(sealer, frame)
            frames += 1
        return batch, frames, b"".join(chunks)

    async def _watch_writes(self, link: _Outbound, scope: trio.CancelScope) -> None:
        """Close the link when one ``send_all`` has been blocked for ``write_timeout_ms`` (the peer stopped
        reading): checked every quarter of it, so that a write costs no cancel scope of its own."""
        timeout_s = self.config.write_timeout_ms / 1000
        while True:
            await trio.sleep(timeout_s / 4)
            started = link.write_started
            if started is not None and trio.current_time() - started >= timeout_s:
                log.warning("peer %s has not read for %.1f s: closing the link", link.node_id, timeout_s)
                scope.cancel()
                return

    async def _write_frames(
        self, link: _Outbound, stream: trio.abc.Stream, sealer: FrameSealer, scope: trio.CancelScope
    ) -> None:
        stats = self._stats

        def abort(_: object) -> trio.lowlevel.Abort:
            link.writer = None
            return trio.lowlevel.Abort.SUCCEEDED

        try:
            while True:
                if not link.queue:  # park until send() queues something (no Event per wait)
                    link.writer = trio.lowlevel.current_task()
                    await trio.lowlevel.wait_task_rescheduled(abort)
                    # One more scheduler round before packing: what the tasks that run in it queue (those
                    # woken by the same readiness check as the sender: other HTTP connections' writes, the
                    # other peer link's frame) goes in this frame too. At 48 connections x depth 1 that cut
                    # frames per registration by a fifth (docs/benchmarks.md, "Bulk registrations").
                    await trio.lowlevel.checkpoint()
                    continue
                batch, frames, data = self._pack_batch(link, sealer)
                if not batch:
                    continue
                link.inflight = batch
                link.write_started = trio.current_time()
                await stream.send_all(data)
                link.write_started = None
                link.inflight = []
                stats.frames_sent += frames
                stats.messages_sent += len(batch)
                stats.bytes_sent += len(data)
        except _CLOSED_ERRORS as exc:
            log.info("link to peer %s lost: %s", link.node_id, exc)
        scope.cancel()
