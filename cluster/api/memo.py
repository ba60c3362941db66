"""Answers the v1 API gives again and again, encoded once.

A heartbeating cluster answers the same request over and over: a light beat, accepted, with one of a
few JSON bodies (one per beat interval). Encoding that body was 4.4% of a node's busy time in the
heartbeat ramp (``scripts/bench --only ramp --profile``), so the encoded answers are kept here, bounded.
(Validated service keys are kept by :mod:`cluster.api.keycache`.)
"""

from __future__ import annotations

from cluster.http import Response
from distro.requests import CODE_OK, Result

__all__ = ["BeatAnswers"]


class BeatAnswers:
    """The HTTP answer to a beat the core accepted (``10200``), one per beat interval, encoded once.

    Every other result (an error, ``20404``) is encoded each time. The cached responses are shared: nothing
    may modify a response a handler returned (the server only reads it).
    """

    MAX_ENTRIES = 64  # beat intervals come from the configuration and instance metadata: a few

    __slots__ = ("_answers",)

    def __init__(self) -> None:
        self._answers: dict[int, Response] = {}

    def response(self, result: Result) -> Response:
        """The response for ``result``."""
        body = result.body
        if (
            result.status == 200
            and type(body) is dict
            and len(body) == 3
            and body.get("code") == CODE_OK
            and body.get("lightBeatEnabled") is True
        ):
            interval = body.get("clientBeatInterval")
            if type(interval) is int:
                cached = self._answers.get(interval)
                if cached is None:
                    if len(self._answers) >= self.MAX_ENTRIES:
                        self._answers.clear()
                    cached = self._answers[interval] = Response.json(body, 200)
                return cached
        if isinstance(body, str):
            return Response.text(result.status, body)
        return Response.json(body, result.status)
