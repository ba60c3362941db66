"""The bytes of the Nacos gRPC protocol: the one protobuf message, ``Payload``, and gRPC message framing.

Nacos's ``nacos_grpc_service.proto`` has exactly one message on the wire::

    message Metadata { string type = 3; map<string, string> headers = 7; string clientIp = 8; }
    message Payload  { Metadata metadata = 2; google.protobuf.Any body = 3; }
    // google.protobuf.Any { string type_url = 1; bytes value = 2; }

It is small enough to encode and decode by hand (docs/grpc.md has the measurement against the
``protobuf`` package and the reasons). Decoding follows proto3: unknown fields are skipped by wire type, a
repeated scalar keeps its last value, a repeated message field is merged. Everything is bounded: a message
past ``max_message_bytes`` or with more than ``MAX_HEADERS`` headers is refused with :class:`WireError`.

A gRPC message on an HTTP/2 stream is 1 flag byte (1: compressed) + a 4-byte big-endian length + the
bytes. :class:`MessageReader` reassembles them from DATA frames.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

MAX_MESSAGE_BYTES = 10 * 1024 * 1024  # the Java client's inbound limit; ours for both directions
MAX_HEADERS = 64
MAX_HEADER_BYTES = 16 * 1024  # all header keys and values of one Payload together

_WT_VARINT, _WT_I64, _WT_LEN, _WT_I32 = 0, 1, 2, 5
_PREFIX = struct.Struct(">BI")


class WireError(ValueError):
    """Bytes that are not a valid (or an acceptable) Payload or gRPC message."""


@dataclass(slots=True)
class Payload:
    """One Nacos message: its type (a Java class's simple name), headers, the client's IP and a JSON body."""

    type: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    client_ip: str = ""


# --------------------------------------------------------------------------------------------------
# encoding
# --------------------------------------------------------------------------------------------------
def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, data: bytes) -> bytes:
    """A length-delimited field: tag, length, bytes."""
    return _varint((number << 3) | _WT_LEN) + _varint(len(data)) + data


def encode_payload(payload: Payload) -> bytes:
    """The protobuf bytes of ``payload`` (empty fields are left out, as proto3 does)."""
    meta = bytearray()
    if payload.type:
        meta += _field(3, payload.type.encode())
    for key, value in payload.headers.items():
        meta += _field(7, _field(1, key.encode()) + _field(2, value.encode()))
    if payload.client_ip:
        meta += _field(8, payload.client_ip.encode())
    out = bytearray(_field(2, bytes(meta)))
    if payload.body:
        out += _field(3, _field(2, payload.body))
    else:
        out += _field(3, b"")
    return bytes(out)


def frame_message(data: bytes) -> bytes:
    """``data`` as one uncompressed gRPC message (flag byte and length prefix)."""
    return _PREFIX.pack(0, len(data)) + data


# --------------------------------------------------------------------------------------------------
# decoding
# --------------------------------------------------------------------------------------------------
def _read_varint(data: bytes | memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise WireError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 64:
            raise WireError("varint longer than 10 bytes")


def _fields(data: bytes | memoryview, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """``(number, wire type, start, end)`` of every field in ``data[start:end]``; varints give (value, 0)."""
    out: list[tuple[int, int, int, int]] = []
    pos = start
    while pos < end:
        tag, pos = _read_varint(data, pos, end)
        number, wire_type = tag >> 3, tag & 7
        if number == 0:
            raise WireError("field number 0")
        if wire_type == _WT_VARINT:
            value, pos = _read_varint(data, pos, end)
            out.append((number, wire_type, value, 0))
            continue
        if wire_type == _WT_LEN:
            length, pos = _read_varint(data, pos, end)
            size = length
        elif wire_type == _WT_I64:
            size = 8
        elif wire_type == _WT_I32:
            size = 4
        else:
            raise WireError(f"unsupported wire type {wire_type}")
        if pos + size > end:
            raise WireError("field runs past the end of its message")
        out.append((number, wire_type, pos, pos + size))
        pos += size
    return out


def _text(data: bytes | memoryview, start: int, end: int, what: str) -> str:
    try:
        return bytes(data[start:end]).decode("utf-8")
    except UnicodeDecodeError:
        raise WireError(f"{what} is not UTF-8") from None


def _decode_metadata(data: bytes | memoryview, start: int, end: int, payload: Payload) -> None:
    header_bytes = sum(len(k) + len(v) for k, v in payload.headers.items())
    for number, wire_type, a, b in _fields(data, start, end):
        if wire_type != _WT_LEN:
            continue  # proto3: a field of another type is skipped like an unknown one
        if number == 3:
            payload.type = _text(data, a, b, "Metadata.type")
        elif number == 8:
            payload.client_ip = _text(data, a, b, "Metadata.clientIp")
        elif number == 7:
            key = value = ""
            for entry_number, entry_type, c, d in _fields(data, a, b):
                if entry_type != _WT_LEN:
                    continue
                if entry_number == 1:
                    key = _text(data, c, d, "a header name")
                elif entry_number == 2:
                    value = _text(data, c, d, "a header value")
            header_bytes += len(key) + len(value)
            payload.headers[key] = value
            if len(payload.headers) > MAX_HEADERS or header_bytes > MAX_HEADER_BYTES:
                raise WireError(f"too many headers: at most {MAX_HEADERS} and {MAX_HEADER_BYTES} bytes")


def decode_payload(data: bytes | memoryview) -> Payload:
    """Parse a Payload; raises :class:`WireError` on anything malformed."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise WireError(f"message of {len(data)} bytes: at most {MAX_MESSAGE_BYTES}")
    payload = Payload("")
    for number, wire_type, start, end in _fields(data, 0, len(data)):
        if wire_type != _WT_LEN:
            continue
        if number == 2:
            _decode_metadata(data, start, end, payload)
        elif number == 3:
            for any_number, any_type, a, b in _fields(data, start, end):
                if any_number == 2 and any_type == _WT_LEN:
                    payload.body = bytes(data[a:b])
    return payload


class MessageReader:
    """Reassembles length-prefixed gRPC messages from a stream's DATA frames, bounded in bytes."""

    def __init__(self, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.max_message_bytes = max_message_bytes
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes held (a message not yet complete)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return the messages they complete. Raises :class:`WireError` when a message is
        compressed (nobody may send one: we announce no ``grpc-accept-encoding``) or too large."""
        self._buf += data
        messages: list[bytes] = []
        while len(self._buf) >= 5:
            flag, length = _PREFIX.unpack_from(self._buf)
            if flag not in (0, 1):
                raise WireError(f"bad gRPC message flag {flag}")
            if flag == 1:
                raise WireError("compressed gRPC messages are not accepted")
            if length > self.max_message_bytes:
                raise WireError(f"gRPC message of {length} bytes: at most {self.max_message_bytes}")
            if len(self._buf) < 5 + length:
                break
            messages.append(bytes(self._buf[5 : 5 + length]))
            del self._buf[: 5 + length]
        return messages


__all__ = [
    "MAX_HEADERS",
    "MAX_MESSAGE_BYTES",
    "MessageReader",
    "Payload",
    "WireError",
    "decode_payload",
    "encode_payload",
    "frame_message",
]
