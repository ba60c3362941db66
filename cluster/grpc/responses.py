"""Nacos gRPC responses and server requests, as Payloads with Nacos's JSON bodies.

Every response body has ``resultCode`` (200 or 500), ``errorCode`` (0 on success), ``message`` (never
null: nacos-sdk-python 3.x rejects a null), ``requestId`` and ``success``; the rest is per type. Fields whose
value would be null are left out, as Jackson does in Nacos. The service-info shape itself is rendered by
:meth:`cluster.api.render.ListRenderer.service_info`, the one list renderer.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring
from typing import Any

from cluster.grpc.wire import Payload

SUCCESS = 200
FAILURE = 500


def _json(obj: dict[str, Any]) -> bytes:
    return json.dumps({k: v for k, v in obj.items() if v is not None}, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8", "surrogatepass"
    )


_OK_HEAD = b'{"resultCode":200,"errorCode":0,"message":"","requestId":'


def _string(text: str) -> bytes:
    return encode_basestring(text).encode("utf-8", "surrogatepass")


def response(kind: str, request_id: str, **fields: Any) -> Payload:
    """A successful response of type ``kind`` with extra ``fields``. When every extra field is a string
    (``InstanceResponse``, ``HealthCheckResponse``: the answers sent most), the body is put together from
    fixed bytes, byte for byte what ``json.dumps`` gives (tests/grpc/test_requests.py compares them)."""
    if all(type(value) is str for value in fields.values()):
        parts = [_OK_HEAD, _string(request_id), b',"success":true']
        for name, value in fields.items():
            parts += (b',"', name.encode(), b'":', _string(value))
        parts.append(b"}")
        return Payload(kind, b"".join(parts))
    body = {"resultCode": SUCCESS, "errorCode": 0, "message": "", "requestId": request_id, "success": True}
    body.update(fields)
    return Payload(kind, _json(body))


_TYPED_TAILS: dict[str, bytes] = {}  # the bytes after the requestId of an answer with a "type", by that type


def typed_response(kind: str, request_id: str, type_text: str) -> Payload:
    """``response(kind, request_id, type=type_text)`` (the write calls' answers: ``InstanceResponse``,
    ``BatchInstanceResponse``), the same bytes, with the part after the requestId kept per ``type_text``."""
    tail = _TYPED_TAILS.get(type_text)
    if tail is None:
        tail = b',"success":true,"type":' + _string(type_text) + b"}"
        if len(_TYPED_TAILS) < 16:
            _TYPED_TAILS[type_text] = tail
    return Payload(kind, b"".join((_OK_HEAD, _string(request_id), tail)))


def error_response(kind: str, request_id: str, code: int, message: str) -> Payload:
    """A failed response: ``resultCode`` 500 with Nacos's ``errorCode`` and a message."""
    body = {"resultCode": FAILURE, "errorCode": code, "message": message, "requestId": request_id, "success": False}
    return Payload(kind, _json(body))


def server_request(kind: str, request_id: str, **fields: Any) -> Payload:
    """A request the server sends on the bi-stream (a push, a detection probe, a reset)."""
    body: dict[str, Any] = {"headers": {}, "requestId": request_id, "module": "internal"}
    body.update(fields)
    return Payload(kind, _json(body))


def notify_subscriber(request_id: str, namespace: str, group: str, service: str, service_info: bytes) -> Payload:
    """``NotifySubscriberRequest`` with an already rendered service-info JSON object."""
    head = _json(
        {
            "headers": {},
            "requestId": request_id,
            "module": "naming",
            "namespace": namespace,
            "serviceName": service,
            "groupName": group,
        }
    )
    return Payload("NotifySubscriberRequest", head[:-1] + b',"serviceInfo":' + service_info + b"}")


def with_service_info(payload: Payload, service_info: bytes) -> Payload:
    """``payload`` (a JSON object body) with ``"serviceInfo": <service_info>`` added."""
    return Payload(payload.type, payload.body[:-1] + b',"serviceInfo":' + service_info + b"}")


__all__ = ["error_response", "notify_subscriber", "response", "server_request", "typed_response", "with_service_info"]
