"""Read-only HTTP GETs from this node to another member's public API, for the console's cluster-wide views.

Only the console's own small read endpoints are asked this way (a member's version and uptime, the last
beats that only a service's owner knows); replication never goes over HTTP. The caller's access token is
passed on as is (tokens are valid on every member that shares the token secret), each call has a short
timeout, and answers larger than :data:`MAX_ANSWER_BYTES` are refused, so a slow or hostile member costs
this node at most one bounded wait.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

import httpx

from cluster.http import Request

TIMEOUT_S = 1.0
MAX_ANSWER_BYTES = 256 * 1024


class PeerReadError(Exception):
    """A member did not answer a console read with a JSON object in time; ``str()`` says why."""


class _Getter(Protocol):
    def get(self, name: str) -> str | None: ...


def credentials(request: Request, params: _Getter) -> tuple[dict[str, str], dict[str, str]]:
    """The headers and parameters that carry the caller's token, to pass on to a member."""
    headers: dict[str, str] = {}
    extra: dict[str, str] = {}
    authorization = request.headers.get("authorization")
    if authorization:
        headers["Authorization"] = authorization
    token = params.get("accessToken")
    if token:
        extra["accessToken"] = token
    return headers, extra


async def get_json(
    address: str, path: str, params: Mapping[str, str], headers: Mapping[str, str], timeout_s: float = TIMEOUT_S
) -> dict[str, Any]:
    """GET ``http://<address><path>`` and return its JSON object, or raise :class:`PeerReadError`."""
    try:
        async with (
            httpx.AsyncClient(timeout=timeout_s, trust_env=False) as client,
            client.stream("GET", f"http://{address}{path}", params=dict(params), headers=dict(headers)) as r,
        ):
            body = bytearray()
            async for chunk in r.aiter_bytes():
                body += chunk
                if len(body) > MAX_ANSWER_BYTES:
                    raise PeerReadError(f"{address} answered more than {MAX_ANSWER_BYTES} bytes")
            status = r.status_code
    except httpx.HTTPError as exc:
        raise PeerReadError(f"{address} did not answer: {type(exc).__name__}") from None
    if status != 200:
        raise PeerReadError(f"{address} answered {status}: {bytes(body[:200]).decode('utf-8', 'replace')}")
    try:
        value = json.loads(body)
    except ValueError:
        raise PeerReadError(f"{address} answered something that is not JSON") from None
    if not isinstance(value, dict):
        raise PeerReadError(f"{address} answered JSON that is not an object")
    return value


__all__ = ["MAX_ANSWER_BYTES", "TIMEOUT_S", "PeerReadError", "credentials", "get_json"]
