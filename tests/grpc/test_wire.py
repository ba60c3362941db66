"""The hand-written Payload codec and gRPC framing: byte-exact against protobuf's encoding, proto3 decoding
rules, and every malformed input refused with WireError (never another exception)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster.grpc.wire import (
    MAX_HEADERS,
    MessageReader,
    Payload,
    WireError,
    decode_payload,
    encode_message,
    encode_payload,
    frame_message,
    whole_message,
)

# protobuf 7.36.2's SerializeToString() of Payload(metadata=Metadata(type="InstanceRequest",
# clientIp="10.0.0.1", headers={"app": "y"}), body=Any(value=b'{"a":1}')), map entries in insertion order.
PROTOBUF_BYTES = bytes.fromhex(
    "12251a0f496e7374616e6365526571756573743a080a03617070120179420831302e302e302e311a0912077b2261223a317d"
)


def test_matches_protobuf_bytes() -> None:
    payload = Payload("InstanceRequest", b'{"a":1}', {"app": "y"}, "10.0.0.1")
    assert encode_payload(payload) == PROTOBUF_BYTES
    assert decode_payload(PROTOBUF_BYTES) == payload


def test_empty_fields_are_left_out_and_round_trip() -> None:
    assert decode_payload(encode_payload(Payload("X"))) == Payload("X")
    assert decode_payload(b"") == Payload("")


def test_unknown_fields_of_every_wire_type_are_skipped() -> None:
    extra = bytes([0x08, 0x96, 0x01])  # field 1 varint 150
    extra += bytes([0x11]) + b"\x00" * 8  # field 2 fixed64 (not a message here)
    extra += bytes([0x25]) + b"\x00" * 4  # field 4 fixed32
    extra += bytes([0x2A, 0x02]) + b"hi"  # field 5 bytes
    payload = Payload("HealthCheckRequest", b"{}")
    assert decode_payload(extra + encode_payload(payload)) == payload


def test_repeated_metadata_is_merged_and_last_scalar_wins() -> None:
    first = encode_payload(Payload("A", b"", {"k1": "v1"}))
    second = encode_payload(Payload("B", b"{}", {"k2": "v2"}))
    merged = decode_payload(first + second)
    assert merged.type == "B" and merged.headers == {"k1": "v1", "k2": "v2"} and merged.body == b"{}"


@pytest.mark.parametrize(
    "data",
    [
        b"\x12",  # tag without length
        b"\x12\x05ab",  # length past the end
        b"\x12\x80",  # truncated varint
        b"\x12" + b"\xff" * 11,  # varint over 10 bytes
        b"\x00\x01",  # field number 0
        b"\x13",  # wire type 3 (groups)
        b"\x12\x03\x1a\x01\xff",  # type not UTF-8
        b"\x12\x04\x1a\x05abc",  # inner length past the inner end
    ],
)
def test_malformed_payloads_raise_wire_error(data: bytes) -> None:
    with pytest.raises(WireError):
        decode_payload(data)


def test_too_many_headers_are_refused() -> None:
    headers = {f"h{i}": "v" for i in range(MAX_HEADERS + 1)}
    with pytest.raises(WireError, match="too many headers"):
        decode_payload(encode_payload(Payload("X", b"", headers)))


@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_wire_error(data: bytes) -> None:
    with contextlib.suppress(WireError):
        decode_payload(data)


@given(
    st.text(max_size=40),
    st.binary(max_size=300),
    st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=5),
    st.text(max_size=20),
)
def test_round_trip(kind: str, body: bytes, headers: dict[str, str], ip: str) -> None:
    payload = Payload(kind, body, headers, ip)
    assert decode_payload(encode_payload(payload)) == payload


@given(st.text(max_size=70), st.binary(max_size=20_000), st.booleans())
def test_an_encoded_message_is_the_framed_payload(kind: str, body: bytes, with_ip: bool) -> None:
    for payload in (Payload(kind, body), Payload(kind, body, client_ip="10.0.0.1" if with_ip else "")):
        for _ in range(2):  # the first time and from the kept Metadata field
            assert encode_message(payload) == frame_message(encode_payload(payload))


def test_a_whole_message_is_only_one_uncompressed_message_within_the_bound() -> None:
    message = frame_message(b"abc")
    assert whole_message(message, 3) == b"abc"
    assert whole_message(message, 2) is None  # over the bound: the reader refuses it
    assert whole_message(message + b"\x00", 10) is None and whole_message(message[:-1], 10) is None
    assert whole_message(b"\x01" + message[1:], 10) is None  # compressed: the reader refuses it
    assert whole_message(b"", 10) is None and whole_message(frame_message(b""), 10) == b""


def _usual_or_general(data: bytes) -> tuple[object, object]:
    from cluster.grpc import wire

    try:
        general: object = wire._decode_general(data, len(data))
    except WireError as exc:
        general = str(exc)
    try:
        usual: object = wire._decode_usual(data, len(data))
    except WireError as exc:
        usual = str(exc)
    return usual, general


@given(st.text(max_size=140), st.binary(max_size=20_000))
def test_the_usual_shape_decodes_in_line_as_in_general(kind: str, body: bytes) -> None:
    data = encode_payload(Payload(kind, body))
    usual, general = _usual_or_general(data)
    assert general == Payload(kind, body)
    assert usual in (None, general)
    if 0 < len(kind.encode()) < 128 and len(body) < 16_000:  # the usual shape: type only, lengths of 1-2 bytes
        assert usual == general


@given(st.binary(max_size=300))
def test_any_bytes_decode_in_line_as_in_general_or_take_the_general_path(data: bytes) -> None:
    usual, general = _usual_or_general(data)
    assert usual is None or usual == general


def test_reader_reassembles_messages_split_anywhere() -> None:
    messages = [b"", b"x" * 10, b"y" * 70_000]
    stream = b"".join(frame_message(m) for m in messages)
    for step in (1, 3, 4096, len(stream)):
        reader = MessageReader()
        got: list[bytes] = []
        for start in range(0, len(stream), step):
            got.extend(reader.feed(stream[start : start + step]))
        assert got == messages and reader.buffered == 0


def test_reader_takes_one_whole_message_at_once_and_still_refuses_one_too_large() -> None:
    reader = MessageReader(4)
    assert reader.feed(frame_message(b"abcd")) == [b"abcd"] and reader.buffered == 0
    assert reader.feed(bytearray(frame_message(b""))) == [b""]
    with pytest.raises(WireError, match="at most 3"):
        MessageReader(3).feed(frame_message(b"abcd"))  # a whole message, but over the bound
    with pytest.raises(WireError, match="compressed"):
        MessageReader().feed(b"\x01\x00\x00\x00\x01x")


def test_reader_refuses_oversized_compressed_and_bad_flags_before_buffering() -> None:
    with pytest.raises(WireError, match="at most 100"):
        MessageReader(100).feed(b"\x00\x00\x00\x00\x65")  # announces 101 bytes
    with pytest.raises(WireError, match="compressed"):
        MessageReader().feed(b"\x01\x00\x00\x00\x00")
    with pytest.raises(WireError, match="flag"):
        MessageReader().feed(b"\x07\x00\x00\x00\x00")


def test_lengths_of_one_two_and_three_bytes_decode_in_line_as_in_general() -> None:
    for size in (0, 1, 127, 128, 129, 16_383, 16_384, 16_385, 300_000):
        payload = Payload("InstanceRequest", b"x" * size, {"accessToken": "t"}, "10.0.0.1")
        raw = encode_payload(payload)
        assert decode_payload(raw) == payload
        assert decode_payload(memoryview(raw)) == payload
        with pytest.raises(WireError):
            decode_payload(raw[:-1])
