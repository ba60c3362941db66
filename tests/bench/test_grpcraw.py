"""The lean gRPC load generator (scripts/benchlib/grpcraw.py) sends what a Nacos client sends: its
pre-built registration messages are the bytes the Payload encoder gives for the same JSON body; it and
grpcload read success as Nacos does (``resultCode`` 200), from us and from r-nacos alike."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from cluster.grpc.responses import error_response, response
from cluster.grpc.wire import Payload, decode_payload, encode_payload, frame_message

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from benchlib.grpcraw import _OK, _register_body, _register_rest, register_frames, register_message

from cluster.grpc.http2 import DATA, FLAG_END_HEADERS, FLAG_END_STREAM, HEADERS, frame


def test_prebuilt_registrations_are_the_encoders_bytes() -> None:
    for request_id in (1, 99, 123_456_789):
        for weight in (1.0, 2.0):
            body = {"requestId": str(request_id), **_register_body("grpc-bench-7", "10.0.3.1", weight)}
            raw = json.dumps(body, separators=(",", ":")).encode()
            message = register_message(request_id, _register_rest("grpc-bench-7", "10.0.3.1", weight))
            assert message == frame_message(encode_payload(Payload("InstanceRequest", raw)))
            assert json.loads(decode_payload(message[5:]).body) == body


def test_a_registration_call_is_its_headers_and_the_data_frame_of_its_message() -> None:
    block = b"\x83\x86\xc4\xc3\xc2\xc1\xc0\xbf"
    rest = _register_rest("grpc-bench-7", "10.0.3.1", 2.0)
    for stream_id, request_id in ((1, 7), (0x7FFFFFFF, 123_456_789)):
        assert register_frames(stream_id, block, request_id, rest) == (
            frame(HEADERS, FLAG_END_HEADERS, stream_id, block)
            + frame(DATA, FLAG_END_STREAM, stream_id, register_message(request_id, rest)))


# r-nacos 0.8.8's answers (serde's field order of its InstanceResponse and ErrorResponse): no "success" field
RNACOS_OK = b'{"resultCode":200,"errorCode":0,"message":"","requestId":"7","type":"registerInstance"}'
RNACOS_UNREGISTERED = b'{"resultCode":500,"errorCode":301,"message":"Connection is unregistered.","requestId":""}'


def test_both_generators_count_result_code_200_as_success_from_us_and_from_rnacos() -> None:
    ours_ok = response("InstanceResponse", "7", type="registerInstance").body
    ours_failed = error_response("InstanceResponse", "7", 400, "bad instance").body
    for body in (ours_ok, RNACOS_OK):
        assert _OK in body
    for body in (ours_failed, RNACOS_UNREGISTERED):
        assert _OK not in body
    pytest.importorskip("grpc")  # grpcload is grpcio's client (the bench extra)
    from benchlib.grpcload import succeeded

    assert [succeeded(json.loads(b)) for b in (ours_ok, RNACOS_OK, ours_failed, RNACOS_UNREGISTERED)] == [
        True, True, False, False]


def test_the_push_probe_takes_the_push_that_carries_its_change() -> None:
    pytest.importorskip("grpc")
    import asyncio
    from types import SimpleNamespace

    from benchlib.grpcload import _push_of

    def push(seq: str) -> Payload:
        host = {"ip": "10.99.0.1", "port": 80, "metadata": {"seq": seq}}
        return Payload("NotifySubscriberRequest", json.dumps({"serviceInfo": {"hosts": [host]}}).encode())

    async def probe() -> tuple[float | None, float | None]:
        conn = SimpleNamespace(pushes=asyncio.Queue())
        for arrived, payload in ((1.0, Payload("ClientDetectionRequest", b"{}")), (2.0, push("0")), (3.0, push("1"))):
            conn.pushes.put_nowait((arrived, payload))
        found = await _push_of(conn, "1", 5.0)  # type: ignore[arg-type]
        return found, await _push_of(conn, "2", 0.01)  # type: ignore[arg-type]

    assert asyncio.run(probe()) == (3.0, None)
