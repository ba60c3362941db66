"""Hostile inputs for the gRPC front door, generated from one seed (deterministic, no Hypothesis).

Each generator yields bytes or payloads that a broken or malicious client could send. The fuzz test
(tests/grpc/test_fuzz.py) throws them at a real node and checks that it keeps serving.
"""

from __future__ import annotations

import json
import random
import struct
from collections.abc import Iterator
from typing import Any

from cluster.grpc.wire import Payload, encode_payload

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
REQUEST_TYPES = [
    "InstanceRequest", "BatchInstanceRequest", "ServiceQueryRequest", "SubscribeServiceRequest",
    "ServiceListRequest", "PersistentInstanceRequest", "HealthCheckRequest", "ServerCheckRequest",
    "ConnectionSetupRequest", "NotifySubscriberResponse", "ConfigQueryRequest", "", "X" * 300, "\u00e9\u4e2d",
]


def _value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.3:
        return rng.choice([None, True, False, 0, -1, 2**63, 1e308, float("nan"), "", "x" * rng.randint(1, 5000),
                           "10.0.0.1", "999.1.1.1", "\ud800", "DEFAULT", "a@@b", "@@", "##", 65536, -5, 3.5])
    if roll < 0.6:
        return {rng.choice(["ip", "port", "weight", "metadata", "clusterName", "healthy", "x"]): _value(rng, depth + 1)
                for _ in range(rng.randint(0, 6))}
    return [_value(rng, depth + 1) for _ in range(rng.randint(0, 5))]


def json_body(rng: random.Random) -> bytes:
    """A request body: mostly plausible JSON with wrong values, sometimes not JSON at all."""
    roll = rng.random()
    if roll < 0.1:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 200)))
    if roll < 0.15:
        return b"[" * rng.randint(1000, 200_000)
    if roll < 0.2:
        return b'{"serviceName": "' + b"\xff\xfe" * rng.randint(1, 100) + b'"}'
    body: dict[str, Any] = {
        "requestId": _value(rng), "module": _value(rng), "namespace": rng.choice(["public", "", None, "bad ns", "x" * 200]),
        "serviceName": rng.choice(["fuzz", "", None, "a" * 300, "g@@s", "@@", "ok-svc", 5]),
        "groupName": rng.choice(["DEFAULT_GROUP", "", None, "g@", "x" * 300]),
        "type": rng.choice(["registerInstance", "deregisterInstance", "batchRegisterInstance", "nope", None, 7]),
        "instance": _value(rng) if rng.random() < 0.3 else {
            "ip": rng.choice(["10.0.0.1", "", "1.2.3", "::1", "x" * 300, None]),
            "port": rng.choice([80, -1, 70000, "80", None, 1.5, True]),
            "weight": rng.choice([1, 0, -1, 1e9, "w", None]),
            "metadata": rng.choice([{}, {"k": "v"}, {"k": {"n": 1}}, {"k": "v" * 10_000}, [1], None]),
            "ephemeral": rng.choice([True, False, None, "yes"]),
            "clusterName": rng.choice(["DEFAULT", "", "bad cluster", None]),
        },
        "instances": rng.choice([None, [], [_value(rng) for _ in range(3)], {"a": 1}, "x"]),
        "pageNo": _value(rng), "pageSize": _value(rng), "clusters": _value(rng), "cluster": _value(rng),
        "subscribe": _value(rng), "healthyOnly": _value(rng), "healthOnly": _value(rng),
    }
    for name in rng.sample(list(body), rng.randint(0, len(body))):
        del body[name]
    return json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")


def payloads(seed: int, count: int) -> Iterator[Payload]:
    """Payloads with plausible types and hostile bodies and headers."""
    rng = random.Random(seed)
    for _ in range(count):
        headers = {} if rng.random() < 0.7 else {rng.choice(["accessToken", "app", "x" * 100]): "v" * rng.randint(0, 3000)}
        yield Payload(rng.choice(REQUEST_TYPES), json_body(rng), headers, rng.choice(["", "1.2.3.4", "x" * 100]))


def grpc_messages(seed: int, count: int) -> Iterator[bytes]:
    """DATA payloads of a gRPC stream: bad length prefixes, bad protobuf, compressed flags."""
    rng = random.Random(seed)
    for _ in range(count):
        roll = rng.random()
        if roll < 0.3:
            raw = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64)))
            yield struct.pack(">BI", 0, len(raw)) + raw
        elif roll < 0.5:
            yield struct.pack(">BI", rng.choice([0, 1, 2, 255]), rng.choice([0, 5, 2**31, 2**32 - 1])) + b"abc"
        elif roll < 0.7:
            good = encode_payload(Payload("InstanceRequest", b"{}"))
            cut = rng.randint(0, len(good))
            yield struct.pack(">BI", 0, len(good)) + good[:cut]
        else:
            raw = bytearray(encode_payload(next(payloads(rng.getrandbits(32), 1))))
            for _ in range(rng.randint(1, 4)):
                if raw:
                    raw[rng.randrange(len(raw))] = rng.getrandbits(8)
            yield struct.pack(">BI", 0, len(raw)) + bytes(raw)


def h2_garbage(seed: int, count: int) -> Iterator[bytes]:
    """Whole connections' worth of bytes: no preface, a preface then random frames, or bad frames."""
    rng = random.Random(seed)
    for _ in range(count):
        roll = rng.random()
        if roll < 0.2:
            yield bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))
        elif roll < 0.3:
            yield b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        else:
            frames = bytearray(H2_PREFACE)
            for _ in range(rng.randint(1, 8)):
                length = rng.choice([0, 1, 8, 100, 16_384, 16_385, 2**24 - 1])
                body_len = min(length, rng.randint(0, 200))
                frames += struct.pack(">I", length)[1:]
                frames += bytes((rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 200]), rng.getrandbits(8)))
                frames += struct.pack(">I", rng.choice([0, 1, 2, 3, 2**31 - 1, rng.getrandbits(32)]))
                frames += bytes(rng.getrandbits(8) for _ in range(body_len))
            yield bytes(frames)
