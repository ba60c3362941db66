"""Every error the SDK raises on purpose, in one tree:

    NamingError               a server refused the request (4xx, or a body other than ``ok``): ``status``, ``message``
     ├── NamingUnavailable    no server answered (a connection error, a timeout or a 5xx from each one) and no
     │                        cached copy helps; ``status`` 503, ``failures`` says what each server did
     └── NoInstanceError      ``select_one_healthy_instance`` found no healthy, enabled instance; ``status`` 404

Bad arguments raise ``ValueError`` (an empty server list, an unknown push mode), as usual in Python. The
load-balancing transports raise httpx's ``ConnectError`` when no instance of the service can be reached, as any
httpx transport does for a host it cannot reach, so an ``except httpx.HTTPError`` around the call catches it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import httpx


class NamingError(Exception):
    """A server answered with an error (4xx, or a body other than ``ok``); the root of the SDK's errors."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ServerFailure:
    """What one server did with a request that then went to the next server: an exception or a 5xx answer."""

    url: str
    error: Exception | None = None
    response: httpx.Response | None = None

    @property
    def reason(self) -> str:
        """A short account: ``connection refused``, ``timed out (ReadTimeout)``, ``HTTP 503 <body>``..."""
        if self.response is not None:
            return f"HTTP {self.response.status_code} {self.response.text[:100]}".rstrip()
        error = self.error
        name = type(error).__name__
        text = str(error) or name
        if isinstance(error, httpx.ConnectError) and "refused" in text.lower():
            return "connection refused"
        if isinstance(error, httpx.TimeoutException):
            return f"timed out ({name})"
        return f"{name}: {text}"

    def __str__(self) -> str:
        return f"{self.url}: {self.reason}"


class NamingUnavailable(NamingError):
    """No server answered (connection errors, timeouts or 5xx on every server) and no cached copy helps.

    ``failures`` lists what each server did, in the order they were tried (empty when the client gave up for
    another reason, e.g. a closed client).
    """

    def __init__(self, message: str, failures: Sequence[ServerFailure] = ()) -> None:
        super().__init__(503, message)
        self.failures = tuple(failures)

    @property
    def last_response(self) -> httpx.Response | None:
        """The last 5xx answer among the failures (its body often says why, e.g. a node still starting)."""
        for failure in reversed(self.failures):
            if failure.response is not None:
                return failure.response
        return None


class NoInstanceError(NamingError):
    """``select_one_healthy_instance`` found no healthy, enabled instance with a positive weight."""

    def __init__(self, message: str) -> None:
        super().__init__(404, message)


__all__ = ["NamingError", "NamingUnavailable", "NoInstanceError", "ServerFailure"]
