"""The server-side HTTP/2 framer (cluster/grpc/http2.py) without sockets: header decoding, flow control."""

from __future__ import annotations

import struct

import hpack
import pytest

from cluster.grpc.http2 import (
    DATA,
    FLAG_END_HEADERS,
    FLAG_END_STREAM,
    HEADERS,
    PREFACE,
    SETTINGS,
    WINDOW_UPDATE,
    H2ProtocolError,
    H2Server,
    frame,
)


class Recorder:
    def __init__(self) -> None:
        self.requests: list[tuple[int, list[tuple[str, str]]]] = []
        self.data: list[tuple[int, bytes]] = []
        self.ended: list[int] = []
        self.calls = 0  # headers and the DATA that ends the stream, taken together (H2Server._call)

    def on_request(self, stream_id: int, headers: list[tuple[str, str]]) -> None:
        self.requests.append((stream_id, list(headers)))

    def on_data(self, stream_id: int, data: bytes) -> None:
        self.data.append((stream_id, data))

    def on_end(self, stream_id: int) -> None:
        self.ended.append(stream_id)

    def on_call(self, stream_id: int, headers: list[tuple[str, str]], data: bytes) -> None:
        self.calls += 1
        self.on_request(stream_id, headers)
        if data:
            self.on_data(stream_id, data)
        self.on_end(stream_id)

    def on_reset(self, stream_id: int) -> None:
        pass

    def on_goaway(self) -> None:
        pass

    def on_window(self) -> None:
        pass


def server(window: int = 65_535) -> tuple[H2Server, Recorder, bytearray]:
    out = bytearray()
    events = Recorder()
    h2 = H2Server(events, out, max_concurrent_streams=8, stream_window_bytes=window,
                  connection_window_bytes=1 << 20, max_header_list_bytes=16 * 1024)
    h2.receive(PREFACE + frame(SETTINGS, 0, 0))
    return h2, events, out


def test_repeated_indexed_blocks_decode_as_the_table_says_at_each_call() -> None:
    h2, events, _ = server()
    encoder = hpack.Encoder()
    first = [(":method", "POST"), (":path", "/a"), ("x-tag", "one")]
    h2.receive(frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 1, encoder.encode(first)))
    indexed = encoder.encode(first)  # index references only, now that the table holds them
    assert all(byte & 0x80 for byte in indexed)
    h2.receive(frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 3, indexed))
    h2.receive(frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 5, indexed))
    # a literal with indexing shifts the table: the same index bytes now mean other headers
    h2.receive(frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 7, encoder.encode([("x-new", "two")])))
    h2.receive(frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 9, indexed))
    decoded = dict((sid, dict(headers)) for sid, headers in events.requests)
    assert decoded[3] == decoded[5] == dict(first)
    assert decoded[9] == dict(_replay(first, [("x-new", "two")], indexed))
    assert decoded[9] != dict(first)  # the kept decoding was dropped when the table changed


def _replay(first: list[tuple[str, str]], second: list[tuple[str, str]], block: bytes) -> list[tuple[str, str]]:
    """What an independent decoder makes of ``block`` after the same history (the expected headers)."""
    encoder, decoder = hpack.Encoder(), hpack.Decoder()
    decoder.decode(encoder.encode(first))
    decoder.decode(encoder.encode(first))
    decoder.decode(encoder.encode(second))
    return [(str(k), str(v)) for k, v in decoder.decode(block)]


def test_data_is_acknowledged_in_bulk_and_a_window_overrun_is_an_error() -> None:
    h2, events, out = server(window=1000)
    h2.receive(frame(HEADERS, FLAG_END_HEADERS, 1, hpack.Encoder().encode([(":path", "/a")])))
    out.clear()
    h2.receive(frame(DATA, 0, 1, b"x" * 400))
    assert WINDOW_UPDATE not in _frame_types(out)  # under half the stream window: nothing yet
    h2.receive(frame(DATA, 0, 1, b"x" * 200))
    assert _frame_types(out).count(WINDOW_UPDATE) == 1  # one update for the stream, for 600 bytes
    assert struct.unpack(">L", out[-4:])[0] == 600
    assert b"".join(d for _, d in events.data) == b"x" * 600
    with pytest.raises(H2ProtocolError):
        h2.receive(frame(DATA, 0, 1, b"x" * 1001))


def _frame_types(out: bytearray) -> list[int]:
    kinds, pos = [], 0
    while pos + 9 <= len(out):
        length = int.from_bytes(out[pos : pos + 3], "big")
        kinds.append(out[pos + 3])
        pos += 9 + length
    return kinds


def _frames(out: bytearray) -> list[tuple[int, int, int, bytes]]:
    frames, pos = [], 0
    while pos + 9 <= len(out):
        length = int.from_bytes(out[pos : pos + 3], "big")
        kind, flags = out[pos + 3], out[pos + 4]
        stream_id = int.from_bytes(out[pos + 5 : pos + 9], "big")
        frames.append((kind, flags, stream_id, bytes(out[pos + 9 : pos + 9 + length])))
        pos += 9 + length
    return frames


def test_a_unary_answer_goes_out_in_one_piece_and_ends_the_stream() -> None:
    h2, _, out = server()
    h2.receive(frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 1, hpack.Encoder().encode([(":path", "/a")])))
    out.clear()
    assert h2.send_unary(1, b"\x88", b"answer", b"\x00trailer")
    assert _frames(out) == [
        (HEADERS, FLAG_END_HEADERS, 1, b"\x20\x88"),  # the first block of a connection shrinks the table to 0
        (DATA, 0, 1, b"answer"),
        (HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 1, b"\x00trailer"),
    ]
    assert 1 not in h2.streams  # both sides ended: forgotten
    assert h2.send_window == 65_535 - len(b"answer")
    assert not h2.send_unary(1, b"\x88", b"again", b"")  # a stream that is gone takes nothing


def test_a_unary_answer_before_the_client_ended_leaves_the_stream_half_closed() -> None:
    h2, events, _ = server()
    h2.receive(frame(HEADERS, FLAG_END_HEADERS, 1, hpack.Encoder().encode([(":path", "/a")])))
    assert h2.send_unary(1, b"\x88", b"answer", b"")
    assert h2.streams[1].local_closed
    h2.receive(frame(DATA, FLAG_END_STREAM, 1, b"late"))  # acknowledged and dropped
    assert 1 not in h2.streams and events.data == []


def test_a_unary_answer_larger_than_a_window_or_frame_is_left_to_the_general_path() -> None:
    h2, _, out = server()
    h2.receive(frame(SETTINGS, 0, 0, struct.pack(">HL", 0x4, 10)))  # the client's stream window: 10 bytes
    h2.receive(frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 1, hpack.Encoder().encode([(":path", "/a")])))
    out.clear()
    assert not h2.send_unary(1, b"\x88", b"x" * 11, b"")
    assert out == bytearray() and 1 in h2.streams  # nothing sent, nothing changed
    assert h2.send_unary(1, b"\x88", b"x" * 10, b"")
    big, _, _ = server()
    big.receive(frame(WINDOW_UPDATE, 0, 0, struct.pack(">L", 1 << 20)))
    big.receive(frame(SETTINGS, 0, 0, struct.pack(">HL", 0x4, 1 << 20)))
    big.receive(frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 1, hpack.Encoder().encode([(":path", "/a")])))
    assert not big.send_unary(1, b"\x88", b"x" * (16_384 + 1), b"")  # over one frame (the client's maximum)


def _outcome(chunks: list[bytes]) -> tuple[object, ...]:
    """Feed ``chunks`` to a fresh framer (four streams at most): what it reported, sent and holds, or the
    error it raised."""
    out = bytearray()
    events = Recorder()
    h2 = H2Server(events, out, max_concurrent_streams=4, stream_window_bytes=1000,
                  connection_window_bytes=65_535, max_header_list_bytes=16 * 1024)
    h2.receive(PREFACE + frame(SETTINGS, 0, 0))
    error = None
    try:
        for chunk in chunks:
            h2.receive(chunk)
    except H2ProtocolError as exc:
        error = (exc.code, str(exc))
    streams = {sid: (s.recv_used, s.remote_closed, s.local_closed, s.send_window) for sid, s in h2.streams.items()}
    held = None if error else h2.buffered  # (after an error the connection ends: what it holds is moot)
    return (events.requests, events.data, events.ended, bytes(out), streams, h2.last_stream_id, held,
            error), events.calls


def test_headers_and_the_data_that_ends_the_stream_read_together_are_one_call_with_the_same_effects() -> None:
    encoder = hpack.Encoder()
    block = encoder.encode([(":method", "POST"), (":path", "/Request/request")])
    again = encoder.encode([(":method", "POST"), (":path", "/Request/request")])  # index references only

    def call(sid: int, data: bytes, blk: bytes = again, data_flags: int = FLAG_END_STREAM) -> list[bytes]:
        return [frame(HEADERS, FLAG_END_HEADERS, sid, blk), frame(DATA, data_flags, sid, data)]

    cases = {
        "calls": call(1, b"a" * 300, block) + call(3, b"b" * 500) + call(5, b""),
        "many calls, each window's update": [f for sid in range(1, 400, 2) for f in call(sid, b"m" * 700, block if sid == 1 else again)],
        "data over the stream window": call(1, b"x" * 1001, block),
        "more streams than allowed (refused)": [frame(HEADERS, FLAG_END_HEADERS, sid, block if sid == 1 else again)
                                                for sid in (1, 3, 5, 7)] + call(9, b"late"),
        "a stream id that does not grow": call(3, b"x", block) + call(1, b"y"),
        "an even stream id": call(2, b"x", block),
        "padded data": call(1, b"\x02ab\x00\x00", block, FLAG_END_STREAM | 0x8),
        "data that does not end the stream": [*call(1, b"x", block, 0), frame(DATA, FLAG_END_STREAM, 1, b"y")],
    }
    for name, frames in cases.items():
        apart, together = _outcome(frames), _outcome([b"".join(frames)])
        assert together[0] == apart[0], name  # the same events, bytes out, stream states, or error
        assert apart[1] == 0
        cut = _outcome([b"".join(frames)[:50], b"".join(frames)[50:]])  # a call cut across two reads
        assert cut[0] == apart[0], name
    assert _outcome([b"".join(cases["calls"])])[1] == 3  # taken as calls, not frame by frame
