"""Micro-benchmark: the hand-written Payload codec (cluster/grpc/wire.py) against the ``protobuf`` package.

    .venv/bin/python scripts/benchlib/grpc_codec.py        # needs ``protobuf`` (the bench extra has it)

Encodes and decodes the messages the front door handles most: a registration request (about 400 bytes)
and a push of a 100-instance service (about 30 kB), and prints microseconds per message for each codec.
docs/grpc.md records the figures and the choice.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cluster.grpc.wire import Payload, decode_payload, encode_payload


def _pb_classes() -> tuple[type, type, type] | None:
    try:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
        from google.protobuf.any_pb2 import Any as PbAny
    except ImportError:
        return None
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(PbAny.DESCRIPTOR.file.serialized_pb)
    proto = descriptor_pb2.FileDescriptorProto(name="bench_nacos.proto", syntax="proto3",
                                               dependency=["google/protobuf/any.proto"])
    meta = proto.message_type.add(name="Metadata")
    meta.field.add(name="type", number=3, type=9, label=1)
    meta.field.add(name="clientIp", number=8, type=9, label=1)
    entry = meta.nested_type.add(name="HeadersEntry")
    entry.field.add(name="key", number=1, type=9, label=1)
    entry.field.add(name="value", number=2, type=9, label=1)
    entry.options.map_entry = True
    meta.field.add(name="headers", number=7, type=11, label=3, type_name=".Metadata.HeadersEntry")
    payload = proto.message_type.add(name="Payload")
    payload.field.add(name="metadata", number=2, type=11, label=1, type_name=".Metadata")
    payload.field.add(name="body", number=3, type=11, label=1, type_name=".google.protobuf.Any")
    pool.Add(proto)
    classes = message_factory.GetMessages([proto], pool=pool)
    any_class = message_factory.GetMessageClass(pool.FindMessageTypeByName("google.protobuf.Any"))
    return classes["Payload"], classes["Metadata"], any_class


def _samples() -> list[tuple[str, Payload]]:
    register = {
        "headers": {}, "requestId": "12", "module": "naming", "namespace": "public", "serviceName": "orders",
        "groupName": "DEFAULT_GROUP", "type": "registerInstance",
        "instance": {"ip": "10.0.0.1", "port": 8080, "weight": 1.0, "healthy": True, "enabled": True,
                     "ephemeral": True, "clusterName": "DEFAULT", "metadata": {"version": "1.2.3", "zone": "a"}},
    }
    hosts = [{"instanceId": f"10.0.{i // 250}.{i % 250}#8080#DEFAULT#DEFAULT_GROUP@@orders", "ip": f"10.0.{i // 250}.{i % 250}",
              "port": 8080, "weight": 1.0, "healthy": True, "enabled": True, "ephemeral": True, "clusterName": "DEFAULT",
              "serviceName": "DEFAULT_GROUP@@orders", "metadata": {"version": "1.2.3"}} for i in range(100)]
    push = {"requestId": "5", "module": "naming", "serviceInfo": {"name": "orders", "groupName": "DEFAULT_GROUP",
                                                                   "hosts": hosts}}
    headers = {"accessToken": "x" * 120, "app": "orders"}
    return [
        ("registration (~400 B)", Payload("InstanceRequest", json.dumps(register).encode(), headers, "10.0.0.1")),
        ("push of 100 instances (~30 kB)", Payload("NotifySubscriberRequest", json.dumps(push).encode())),
    ]


def _time_us(fn: Callable[[], object], rounds: int) -> float:
    """Microseconds per call: the best of 7 runs (this machine is shared; the minimum is the stable figure)."""
    best = float("inf")
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(rounds):
            fn()
        best = min(best, (time.perf_counter() - start) / rounds * 1e6)
    return best


def _protobuf_us(classes: tuple[type, type, type], payload: Payload, raw: bytes, rounds: int) -> tuple[float, float]:
    pb_payload, pb_meta, pb_any = classes

    def pb_encode() -> bytes:
        msg = pb_payload(metadata=pb_meta(type=payload.type, clientIp=payload.client_ip, headers=payload.headers),
                         body=pb_any(value=payload.body))
        return bytes(msg.SerializeToString())

    def pb_decode() -> Payload:
        msg = pb_payload()
        msg.ParseFromString(raw)
        return Payload(msg.metadata.type, msg.body.value, dict(msg.metadata.headers), msg.metadata.clientIp)

    assert pb_decode() == payload
    return _time_us(pb_encode, rounds), _time_us(pb_decode, rounds)


def main() -> None:
    """Print the table."""
    classes = _pb_classes()
    rounds = 5_000
    print(f"{'message':32} {'codec':10} {'encode us':>10} {'decode us':>10}")
    for name, payload in _samples():
        raw = encode_payload(payload)
        enc = _time_us(lambda: encode_payload(payload), rounds)  # noqa: B023 (used within the iteration)
        dec = _time_us(lambda: decode_payload(raw), rounds)  # noqa: B023
        print(f"{name:32} {'by hand':10} {enc:10.2f} {dec:10.2f}")
        if classes is not None:
            pb_enc, pb_dec = _protobuf_us(classes, payload, raw, rounds)
            print(f"{name:32} {'protobuf':10} {pb_enc:10.2f} {pb_dec:10.2f}")
    if classes is None:
        print("(protobuf is not installed: only the hand-written codec was measured)")
    else:
        from google.protobuf.internal import api_implementation

        print(f"protobuf backend: {api_implementation.Type()}")


if __name__ == "__main__":
    main()
