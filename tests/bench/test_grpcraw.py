"""The lean gRPC load generator (scripts/benchlib/grpcraw.py) sends what a Nacos client sends: its
pre-built registration messages are the bytes the Payload encoder gives for the same JSON body."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cluster.grpc.wire import Payload, decode_payload, encode_payload, frame_message

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from benchlib.grpcraw import _register_body, _register_rest, register_message


def test_prebuilt_registrations_are_the_encoders_bytes() -> None:
    for request_id in (1, 99, 123_456_789):
        for weight in (1.0, 2.0):
            body = {"requestId": str(request_id), **_register_body("grpc-bench-7", "10.0.3.1", weight)}
            raw = json.dumps(body, separators=(",", ":")).encode()
            message = register_message(request_id, _register_rest("grpc-bench-7", "10.0.3.1", weight))
            assert message == frame_message(encode_payload(Payload("InstanceRequest", raw)))
            assert json.loads(decode_payload(message[5:]).body) == body
