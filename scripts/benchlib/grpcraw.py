"""A lean gRPC load generator for ``scripts/bench``: raw HTTP/2 frames on trio, like the HTTP one.

    PYTHONPATH=scripts python -m benchlib.grpcraw --servers H:P,... --connections 48 --services 64 --seconds 8

grpcio's Python client spends 200-300 µs of CPU per call on this machine, more than our v1 HTTP load
generator (raw HTTP/1.1 bytes, about 40 µs) and most of the server's cost: on two shared cores, a
registrations/s figure taken with it measures the client. This generator speaks the same protocol as
cheaply as the HTTP one: each connection sends the client preface and SETTINGS, sets up as a Nacos client
does (``ServerCheckRequest``, ``ConnectionSetupRequest`` on the bi-stream, a ``HealthCheckRequest`` until
it passes), then runs a closed loop of ``InstanceRequest`` registrations (grpcload's workload: the
connection's instance in one of ``--services`` services, its weight flipped every pass), one call in
flight. Requests carry grpcio's headers (``:method``, ``:scheme``, ``:path``, ``:authority``, ``te``,
``content-type``, ``user-agent``, ``grpc-accept-encoding``), HPACK-encoded as gRPC clients do: the first
calls add them to the connection's dynamic table, later calls send the same index references (a block
encoded once both kinds of call are in the table, then reused); answers are decoded in full (frames,
HPACK with the ``hpack`` package, the Payload, its JSON); a response header block that left the decoder's
table as it was is not decoded again when the same bytes come back (gRPC servers repeat the same blocks
call after call); received DATA is acknowledged with WINDOW_UPDATE, PINGs are answered. The socket is
driven as the HTTP generator drives its own (``benchlib.httpraw.RawConn``: non-blocking sends and
receives, trio only to wait). Prints one JSON line like grpcload's.
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

import hpack
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchlib.httpraw import RawConn, open_conn
from cluster.grpc.http2 import (
    DATA,
    FLAG_ACK,
    FLAG_END_HEADERS,
    FLAG_END_STREAM,
    HEADERS,
    PING,
    PREFACE,
    SETTINGS,
    WINDOW_UPDATE,
    frame,
)
from cluster.grpc.wire import Payload, _varint, decode_payload, encode_payload, frame_message

GRPC_OFFSET = 1000
_HEAD = struct.Struct(">BHBBL")
_WINDOW_BYTES = 1 << 20


class RawConnection:
    """One HTTP/2 connection speaking Nacos gRPC, one call in flight (and an open bi-stream)."""

    def __init__(self, http_address: str) -> None:
        host, _, port = http_address.rpartition(":")
        self.host, self.port = host, int(port) + GRPC_OFFSET
        authority = f"{self.host}:{self.port}"
        common = [(":method", "POST"), (":scheme", "http")]
        tail = [(":authority", authority), ("te", "trailers"), ("content-type", "application/grpc"),
                ("user-agent", "distro-bench raw"), ("grpc-accept-encoding", "identity")]
        self.unary_headers = [*common, (":path", "/Request/request"), *tail]
        self.bi_headers = [*common, (":path", "/BiRequestStream/requestBiStream"), *tail]
        self.encoder = hpack.Encoder()
        self.unary_block: bytes | None = None  # cached once both header sets are in the dynamic table
        self.conn: RawConn | None = None
        self.decoder = hpack.Decoder()
        self.same_blocks: set[bytes] = set()  # response header blocks that leave the decoder's table as it is
        self.next_id = 1
        self.bi_id = 0
        self.buf = bytearray()
        self.recv_unacked = 0
        self._seq = 0

    async def open(self) -> None:
        self.conn = await open_conn(self.host, self.port)
        await self.conn.send_all(PREFACE + frame(SETTINGS, 0, 0, struct.pack(">HL", 4, _WINDOW_BYTES))
                                   + frame(WINDOW_UPDATE, 0, 0, struct.pack(">L", _WINDOW_BYTES)))

    async def _send(self, data: bytes) -> None:
        assert self.conn is not None
        await self.conn.send_all(data)

    def _new_stream(self) -> int:
        stream_id = self.next_id
        self.next_id += 2
        return stream_id

    async def call_payload(self, payload: Payload) -> Payload:
        """One unary call; its answer."""
        stream_id = self._new_stream()
        message = frame_message(encode_payload(payload))
        block = self.unary_block or self.encoder.encode(self.unary_headers)
        await self._send(frame(HEADERS, FLAG_END_HEADERS, stream_id, block)
                         + frame(DATA, FLAG_END_STREAM, stream_id, message))
        body = bytearray()
        while True:
            kind, flags, sid, data = await self._frame()
            if sid != stream_id:
                continue  # the bi-stream (probes, pushes) is not read in this workload
            if kind == DATA:
                body += data
            elif kind == HEADERS and flags & FLAG_END_STREAM:
                break
        return decode_payload(bytes(body[5:]))

    async def call_message(self, message: bytes) -> bytes:
        """One unary call of an already framed gRPC message, once set up; its answer's protobuf bytes.

        The register loop's path, as lean as the HTTP generator's: one send of HEADERS (the cached block)
        and DATA, then every whole frame in the buffer is handled in one pass (no copy of a frame that is
        not ours, acknowledgements sent after the pass) until our stream's trailers."""
        assert self.conn is not None and self.unary_block is not None
        stream_id = self._new_stream()
        block = self.unary_block
        size = len(message)
        await self.conn.send_all(b"".join((
            _HEAD.pack(0, len(block), HEADERS, FLAG_END_HEADERS, stream_id), block,
            _HEAD.pack(size >> 16, size & 0xFFFF, DATA, FLAG_END_STREAM, stream_id), message)))
        return await self.call_message_rest(stream_id)

    async def call_register(self, request_id: int, rest: bytes) -> bytes:
        """One registration call, once set up (the register loop's path): its request built in one piece
        (:func:`register_frames`) and sent with one ``send``; the answer read as :meth:`call_message` reads
        it, framed in place when a read brings whole frames with nothing left over (the usual case: the
        answer's three frames in one read), else through the buffer. Its answer's protobuf bytes."""
        conn = self.conn
        assert conn is not None and conn.sock is not None and self.unary_block is not None
        stream_id = self.next_id
        self.next_id += 2
        request = register_frames(stream_id, self.unary_block, request_id, rest)
        try:
            sent = conn.sock.send(request, socket.MSG_NOSIGNAL)
        except BlockingIOError:
            sent = 0
        if sent < len(request):
            await conn.send_all(request[sent:])
        if self.buf:
            return await self.call_message_rest(stream_id)
        while True:
            data = await conn.recv_some()
            n, pos, body = len(data), 0, b""
            same = self.same_blocks
            while n - pos >= 9:
                high, low, kind, flags, sid = _HEAD.unpack_from(data, pos)
                stop = pos + 9 + ((high << 16) | low)
                if stop > n or kind not in (DATA, HEADERS) or sid & 0x7FFFFFFF != stream_id:
                    break  # anything else (or a frame cut off): the general path, from this frame on
                if kind == DATA:
                    if (self.recv_unacked + stop - pos - 9) * 2 >= _WINDOW_BYTES:
                        break  # a WINDOW_UPDATE is due: the general path sends it
                    self.recv_unacked += stop - pos - 9
                    body = data[pos + 9 : stop] if not body else body + data[pos + 9 : stop]
                else:
                    block_in = data[pos + 9 : stop]
                    if block_in not in same:
                        self._decode(block_in)
                    if flags & FLAG_END_STREAM:
                        if stop != n:
                            self.buf += data[stop:]
                        return body[5:]
                pos = stop
            self.buf += data[pos:]
            return await self.call_message_rest(stream_id, body)

    async def call_message_rest(self, stream_id: int, body: bytes = b"") -> bytes:
        """The rest of :meth:`call_message` once its request is sent: reads until the stream's trailers
        (``body``: what its DATA brought so far, already counted)."""
        assert self.conn is not None
        buf, pos = self.buf, 0
        while True:
            acks: list[bytes] = []
            end_of_call = False
            n = len(buf)
            while n - pos >= 9:
                high, low, kind, flags, sid = _HEAD.unpack_from(buf, pos)
                stop = pos + 9 + ((high << 16) | low)
                if stop > n:
                    break
                sid &= 0x7FFFFFFF
                if kind == DATA:
                    self.recv_unacked += stop - pos - 9
                    if sid == stream_id:
                        body += buf[pos + 9 : stop]
                elif kind == HEADERS:
                    block_in = bytes(buf[pos + 9 : stop])
                    if block_in not in self.same_blocks:
                        self._decode(block_in)
                    if sid == stream_id and flags & FLAG_END_STREAM:
                        end_of_call = True
                elif kind == SETTINGS and not flags & FLAG_ACK:
                    acks.append(frame(SETTINGS, FLAG_ACK, 0))
                elif kind == PING and not flags & FLAG_ACK:
                    acks.append(frame(PING, FLAG_ACK, 0, bytes(buf[pos + 9 : stop])))
                if self.recv_unacked * 2 >= _WINDOW_BYTES:
                    acks.append(frame(WINDOW_UPDATE, 0, 0, struct.pack(">L", self.recv_unacked)))
                    self.recv_unacked = 0
                pos = stop
                if end_of_call:
                    break
            del buf[:pos]
            pos = 0
            if acks:
                await self.conn.send_all(b"".join(acks))
            if end_of_call:
                return body[5:]
            buf += await self.conn.recv_some()

    async def call(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        self._seq += 1
        answer = await self.call_payload(Payload(kind, json.dumps({"requestId": str(self._seq), **body}).encode()))
        result: dict[str, Any] = json.loads(answer.body)
        return result

    async def _frame(self) -> tuple[int, int, int, bytes]:
        """The next frame for us, answering SETTINGS, PING and acknowledging DATA on the way."""
        assert self.conn is not None
        while True:
            if len(self.buf) >= 9:
                high, low, kind, flags, sid = _HEAD.unpack_from(self.buf)
                length = (high << 16) | low
                if len(self.buf) >= 9 + length:
                    payload = bytes(self.buf[9 : 9 + length])
                    del self.buf[: 9 + length]
                    if kind == SETTINGS and not flags & FLAG_ACK:
                        await self._send(frame(SETTINGS, FLAG_ACK, 0))
                        continue
                    if kind == PING and not flags & FLAG_ACK:
                        await self._send(frame(PING, FLAG_ACK, 0, payload))
                        continue
                    if kind == HEADERS and payload not in self.same_blocks:
                        self._decode(payload)
                    if kind == DATA:
                        self.recv_unacked += length
                        if self.recv_unacked * 2 >= _WINDOW_BYTES:
                            await self._send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">L", self.recv_unacked)))
                            self.recv_unacked = 0
                    return kind, flags, sid & 0x7FFFFFFF, payload
            self.buf += await self.conn.recv_some()

    def _decode(self, block: bytes) -> None:
        """Decode a header block (keeps the decoder's table in step); remember it when it left the table
        unchanged (no entry added, no size change), so the same bytes need no decoding next time."""
        table = self.decoder.header_table
        before = (len(table.dynamic_entries), table.dynamic_entries[0] if table.dynamic_entries else None,
                  table.maxsize)
        self.decoder.decode(block)
        after = (len(table.dynamic_entries), table.dynamic_entries[0] if table.dynamic_entries else None,
                 table.maxsize)
        if before != after:
            self.same_blocks.clear()
        elif len(self.same_blocks) < 64:
            self.same_blocks.add(block)

    async def setup(self) -> None:
        check = await self.call("ServerCheckRequest", {})
        if not check.get("connectionId"):
            raise RuntimeError(f"server check failed: {check}")
        self.bi_id = self._new_stream()
        setup = frame_message(encode_payload(Payload("ConnectionSetupRequest", json.dumps(
            {"clientVersion": "bench-raw", "labels": {}}).encode())))
        await self._send(frame(HEADERS, FLAG_END_HEADERS, self.bi_id, self.encoder.encode(self.bi_headers))
                         + frame(DATA, 0, self.bi_id, setup))
        self.unary_block = self.encoder.encode(self.unary_headers)  # all indexed now: the same bytes every call
        await self.call("HealthCheckRequest", {})  # the first call with the cached block
        for _ in range(300):
            if (await self.call("HealthCheckRequest", {})).get("resultCode") == 200:
                return
            await trio.sleep(0.01)
        raise RuntimeError("the connection setup was never accepted")

    async def aclose(self) -> None:
        if self.conn is not None:
            self.conn.close()


def _register_body(service: str, ip: str, weight: float) -> dict[str, Any]:
    return {"namespace": "public", "groupName": "DEFAULT_GROUP", "serviceName": service, "type": "registerInstance",
            "instance": {"ip": ip, "port": 8080, "weight": weight, "healthy": True, "enabled": True,
                         "ephemeral": True, "clusterName": "DEFAULT", "metadata": {}}}


def register_message(request_id: int, rest: bytes) -> bytes:
    """The framed gRPC message of one registration: ``rest`` is the JSON body after its requestId (from
    :func:`_register_rest`), so a call costs a few concatenations, as the HTTP generator's f-string does;
    the bytes are those ``encode_payload`` gives (tests/bench/test_grpcraw.py)."""
    body = b'{"requestId":"%d",' % request_id + rest
    size = len(body)
    value = _VALUE_TAG + _varint(size) + body
    message = _REGISTER_META + _BODY_TAG + _varint(len(value)) + value
    return frame_message(message)


def register_frames(stream_id: int, block: bytes, request_id: int, rest: bytes) -> bytes:
    """A registration call's request as sent: HEADERS (``block``, the cached header block) and the DATA
    frame that ends the stream, carrying :func:`register_message`'s bytes, put together in one ``join``."""
    body = b'{"requestId":"%d",' % request_id + rest
    size = len(body)
    value_size = _varint(size)
    any_size = _varint(size + 1 + len(value_size))
    message_size = _REGISTER_META_SIZE + len(any_size) + len(value_size) + size
    data_size = message_size + 5
    return b"".join((
        _HEAD.pack(0, len(block), HEADERS, FLAG_END_HEADERS, stream_id), block,
        _HEAD.pack(data_size >> 16, data_size & 0xFFFF, DATA, FLAG_END_STREAM, stream_id),
        _MESSAGE_HEAD.pack(0, message_size), _REGISTER_META, _BODY_TAG, any_size, _VALUE_TAG, value_size, body))


def _register_rest(service: str, ip: str, weight: float) -> bytes:
    return json.dumps(_register_body(service, ip, weight), separators=(",", ":")).encode()[1:]


_REGISTER_META = encode_payload(Payload("InstanceRequest", b""))[:-2]  # the Metadata field (the type)
_BODY_TAG, _VALUE_TAG = b"\x1a", b"\x12"  # Payload.body (3) and Any.value (2), length-delimited
_REGISTER_META_SIZE = len(_REGISTER_META) + 2  # with the two tags
_MESSAGE_HEAD = struct.Struct(">BI")  # a gRPC message's flag byte and length
# Nacos's Response.isSuccess(): resultCode 200. (Ours also writes "success":true, as Nacos's Java server does;
# r-nacos writes only resultCode.)
_OK = b'"resultCode":200'


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_register(servers: list[str], connections: int, services: int, seconds: float) -> dict[str, Any]:
    """The closed loop; the figures as grpcload's ``register`` prints them."""
    conns = [RawConnection(servers[i % len(servers)]) for i in range(connections)]
    async with trio.open_nursery() as nursery:
        for conn in conns:
            nursery.start_soon(_open_and_set_up, conn)
    counts = {"ok": 0, "errors": 0}
    deadline = time.perf_counter() + seconds

    async def loop(index: int, conn: RawConnection) -> None:
        ip = f"10.{index // 250 % 250}.{index % 250}.1"
        rests = [_register_rest(f"grpc-bench-{n % services}", ip, 1.0 + (n // services) % 2)
                 for n in range(2 * services)]  # every body this connection sends, but its requestId
        n = 0
        while time.perf_counter() < deadline:
            conn._seq += 1
            answer = await conn.call_register(conn._seq, rests[n % len(rests)])
            ok = _OK in decode_payload(answer).body  # as the HTTP generator's body == b"ok"
            counts["ok" if ok else "errors"] += 1
            n += 1

    started, cpu0 = time.perf_counter(), _cpu_s()
    async with trio.open_nursery() as nursery:
        for index, conn in enumerate(conns):
            nursery.start_soon(loop, index, conn)
    elapsed, cpu = time.perf_counter() - started, _cpu_s() - cpu0
    for conn in conns:
        await conn.aclose()
    calls = counts["ok"] + counts["errors"]
    return {"connections": connections, "seconds": round(elapsed, 2), **counts, "per_s": round(counts["ok"] / elapsed, 1),
            "client_cpu_us_per_call": round(cpu / calls * 1e6, 1) if calls else None}


async def _open_and_set_up(conn: RawConnection) -> None:
    await conn.open()
    await conn.setup()


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run, print the JSON line."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", required=True)
    ap.add_argument("--connections", type=int, default=48)
    ap.add_argument("--services", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args(argv)
    result = trio.run(run_register, args.servers.split(","), args.connections, args.services, args.seconds)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
