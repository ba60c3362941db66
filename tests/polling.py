"""Polling with a deadline: the one way the tests wait for real processes to reach a state.

Tests never sleep a fixed time to wait for something; they poll a predicate until it holds and fail with
what they were waiting for (and the last error seen) at the deadline.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
import trio

T = TypeVar("T")

#: Errors a predicate may raise while a node is still starting or converging; polling goes on after them.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (httpx.HTTPError, ValueError, KeyError)


def wait_until(predicate: Callable[[], T], what: str = "the condition", timeout_s: float = 20.0,
               interval_s: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something truthy (returned); AssertionError at the deadline."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except TRANSIENT_ERRORS as exc:
            last_error = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}{detail}")
        time.sleep(interval_s)


async def wait_for(predicate: Callable[[], object | Awaitable[object]], timeout_s: float = 10.0, what: str = "",
                   interval_s: float = 0.01) -> None:
    """In a trio test: poll ``predicate`` (sync or async) until true; trio.TooSlowError after ``timeout_s``.

    Under ``autojump_clock`` the interval costs no real time, so the deadline is the only bound.
    """
    with trio.fail_after(timeout_s):
        while True:
            result = predicate()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await trio.sleep(interval_s)
