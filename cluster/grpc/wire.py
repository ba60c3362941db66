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
_SMALL_VARINTS = [bytes((n,)) for n in range(0x80)] + [bytes(((n & 0x7F) | 0x80, n >> 7)) for n in range(0x80, 0x4000)]


def _varint(value: int) -> bytes:
    if value < 0x4000:
        return _SMALL_VARINTS[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, data: bytes) -> bytes:
    """A length-delimited field: tag, length, bytes."""
    return _SMALL_VARINTS[(number << 3) | _WT_LEN] + _varint(len(data)) + data


_TYPE_ONLY: dict[str, bytes] = {}  # the Metadata field of a payload with a type and nothing else, by type
_TYPE_ONLY_ENTRIES = 64  # our own answer and request types (a few dozen); more are encoded each time


def encode_payload(payload: Payload) -> bytes:
    """The protobuf bytes of ``payload`` (empty fields are left out, as proto3 does)."""
    if not payload.headers and not payload.client_ip and payload.type:
        meta_field = _TYPE_ONLY.get(payload.type)
        if meta_field is None:
            meta_field = _field(2, _field(3, payload.type.encode()))
            if len(_TYPE_ONLY) < _TYPE_ONLY_ENTRIES and len(payload.type) <= 64:
                _TYPE_ONLY[payload.type] = meta_field
        body = payload.body
        if body:
            return b"".join((meta_field, _TAG_BODY, _varint(len(body) + 1 + len(_varint(len(body)))), _TAG_VALUE,
                             _varint(len(body)), body))
        return meta_field + _EMPTY_BODY
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


_TAG_BODY = _SMALL_VARINTS[(3 << 3) | _WT_LEN]  # Payload.body
_TAG_VALUE = _SMALL_VARINTS[(2 << 3) | _WT_LEN]  # Any.value
_EMPTY_BODY = _TAG_BODY + b"\x00"


def frame_message(data: bytes) -> bytes:
    """``data`` as one uncompressed gRPC message (flag byte and length prefix)."""
    return _PREFIX.pack(0, len(data)) + data


def encode_message(payload: Payload) -> bytes:
    """``frame_message(encode_payload(payload))``, put together in one piece for a payload with a type and
    a body and nothing else (every answer the server sends, and its pushes)."""
    body = payload.body
    if payload.headers or payload.client_ip or not payload.type or not body:
        return frame_message(encode_payload(payload))
    meta_field = _TYPE_ONLY.get(payload.type)
    if meta_field is None:
        return frame_message(encode_payload(payload))
    value_size = _varint(len(body))
    any_size = _varint(len(body) + 1 + len(value_size))
    total = len(meta_field) + 2 + len(any_size) + len(value_size) + len(body)
    return b"".join((_PREFIX.pack(0, total), meta_field, _TAG_BODY, any_size, _TAG_VALUE, value_size, body))


def whole_message(data: bytes, max_message_bytes: int) -> bytes | None:
    """The message of ``data`` when ``data`` is exactly one uncompressed gRPC message of at most
    ``max_message_bytes`` (what a call's one DATA frame usually holds), else None (a
    :class:`MessageReader` takes it)."""
    if len(data) >= 5 and data[0] == 0:
        length = _PREFIX.unpack_from(data)[1]
        if length + 5 == len(data) and length <= max_message_bytes:
            return data[5:]
    return None


# --------------------------------------------------------------------------------------------------
# decoding
# --------------------------------------------------------------------------------------------------
def _read_varint(data: bytes | memoryview, pos: int, end: int) -> tuple[int, int]:
    if pos < end and data[pos] < 0x80:  # one byte: tags and short lengths
        return data[pos], pos + 1
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


def _next_field(data: bytes | memoryview, pos: int, end: int) -> tuple[int, int, int, int]:
    """The field at ``pos``: ``(number, wire type, start, end)``; a varint's value is returned as ``start``."""
    tag = data[pos]
    if tag < 0x80:
        pos += 1
    else:
        tag, pos = _read_varint(data, pos, end)
    number, wire_type = tag >> 3, tag & 7
    if number == 0:
        raise WireError("field number 0")
    if wire_type == _WT_LEN:
        size = data[pos] if pos < end else 0x80
        if size < 0x80:
            pos += 1
        else:
            size, pos = _read_varint(data, pos, end)
    elif wire_type == _WT_VARINT:
        value, pos = _read_varint(data, pos, end)
        return number, wire_type, value, pos
    elif wire_type == _WT_I64:
        size = 8
    elif wire_type == _WT_I32:
        size = 4
    else:
        raise WireError(f"unsupported wire type {wire_type}")
    if pos + size > end:
        raise WireError("field runs past the end of its message")
    return number, wire_type, pos, pos + size


def _text(data: bytes | memoryview, start: int, end: int, what: str) -> str:
    try:
        return str(data[start:end], "utf-8")
    except UnicodeDecodeError:
        raise WireError(f"{what} is not UTF-8") from None


def _decode_header(data: bytes | memoryview, pos: int, end: int) -> tuple[str, str]:
    key = value = ""
    while pos < end:
        number, wire_type, a, pos = _next_field(data, pos, end)
        if wire_type == _WT_LEN:
            if number == 1:
                key = _text(data, a, pos, "a header name")
            elif number == 2:
                value = _text(data, a, pos, "a header value")
    return key, value


def _decode_metadata(data: bytes | memoryview, pos: int, end: int, payload: Payload) -> None:
    headers = payload.headers
    header_bytes = sum(len(k) + len(v) for k, v in headers.items()) if headers else 0
    while pos < end:
        if data[pos] == 0x1A and pos + 1 < end and data[pos + 1] < 0x80:  # type, shorter than 128 bytes
            a = pos + 2
            pos = a + data[pos + 1]
            if pos > end:
                raise WireError("field runs past the end of its message")
            payload.type = _text(data, a, pos, "Metadata.type")
            continue
        number, wire_type, a, pos = _next_field(data, pos, end)
        if wire_type != _WT_LEN:
            continue  # proto3: a field of another type is skipped like an unknown one
        if number == 3:
            payload.type = _text(data, a, pos, "Metadata.type")
        elif number == 7:
            key, value = _decode_header(data, a, pos)
            header_bytes += len(key) + len(value)
            headers[key] = value
            if len(headers) > MAX_HEADERS or header_bytes > MAX_HEADER_BYTES:
                raise WireError(f"too many headers: at most {MAX_HEADERS} and {MAX_HEADER_BYTES} bytes")
        elif number == 8:
            payload.client_ip = _text(data, a, pos, "Metadata.clientIp")


def _decode_any(data: bytes | memoryview, pos: int, end: int, payload: Payload) -> None:
    """``google.protobuf.Any``: its ``value`` (field 2) is the body; ``type_url`` and the rest are skipped."""
    while pos < end:
        number, wire_type, a, pos = _next_field(data, pos, end)
        if number == 2 and wire_type == _WT_LEN:
            payload.body = bytes(data[a:pos])


def _decode_usual(data: bytes | memoryview, end: int) -> Payload | None:
    """The Payload of ``data`` when it has the usual shape, else None: Metadata holding only its type
    (shorter than 128 bytes), then the body, an Any holding only its value, with lengths of one or two
    bytes, and nothing after. What the general path would make of it, with no field loop."""
    if end < 6 or data[0] != 0x12 or data[2] != 0x1A:
        return None
    meta_end = 2 + data[1]
    if data[1] >= 0x80 or data[3] + 4 != meta_end or meta_end + 2 > end or data[meta_end] != 0x1A:
        return None
    pos = meta_end + 1
    size = data[pos]
    if size >= 0x80:
        if pos + 1 >= end or data[pos + 1] >= 0x80:
            return None
        size = (size & 0x7F) | (data[pos + 1] << 7)
        pos += 1
    pos += 1
    if pos + size != end:
        return None
    if size == 0:
        return Payload(_text(data, 4, meta_end, "Metadata.type"))
    if pos + 2 > end or data[pos] != 0x12:
        return None
    value_size = data[pos + 1]
    start = pos + 2
    if value_size >= 0x80:
        if start >= end or data[start] >= 0x80:
            return None
        value_size = (value_size & 0x7F) | (data[start] << 7)
        start += 1
    if start + value_size != end:
        return None
    return Payload(_text(data, 4, meta_end, "Metadata.type"), bytes(data[start:end]))


def decode_payload(data: bytes | memoryview) -> Payload:
    """Parse a Payload; raises :class:`WireError` on anything malformed. The usual shape is read in line
    (:func:`_decode_usual`); anything else takes the general path, whose two fields every Payload has
    (one-byte tags, lengths of one or two bytes) are read in line too."""
    end = len(data)
    usual = _decode_usual(data, end) if end <= MAX_MESSAGE_BYTES else None
    return usual if usual is not None else _decode_general(data, end)


def _decode_general(data: bytes | memoryview, end: int) -> Payload:
    if end > MAX_MESSAGE_BYTES:
        raise WireError(f"message of {end} bytes: at most {MAX_MESSAGE_BYTES}")
    payload = Payload("")
    pos = 0
    try:
        while pos < end:
            tag = data[pos]
            if tag == 0x12 or tag == 0x1A:  # Metadata (2) or body (3), length-delimited
                size = data[pos + 1]
                if size < 0x80:
                    start = pos + 2
                elif data[pos + 2] < 0x80:
                    size = (size & 0x7F) | (data[pos + 2] << 7)
                    start = pos + 3
                else:
                    size, start = _read_varint(data, pos + 1, end)
                pos = start + size
                if pos > end:
                    raise WireError("field runs past the end of its message")
            else:
                number, wire_type, start, pos = _next_field(data, pos, end)
                if wire_type != _WT_LEN or number not in (2, 3):
                    continue
                tag = 0x12 if number == 2 else 0x1A
            if tag == 0x12:
                _decode_metadata(data, start, pos, payload)
            else:
                _decode_any(data, start, pos, payload)
    except IndexError:  # a tag or length cut off at the very end
        raise WireError("truncated message") from None
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
        if not self._buf:  # the usual case: one whole message
            whole = whole_message(data, self.max_message_bytes)
            if whole is not None:
                return [bytes(whole)]
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
    "encode_message",
    "encode_payload",
    "frame_message",
    "whole_message",
]
