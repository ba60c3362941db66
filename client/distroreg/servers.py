"""The server list and its failover loop: one HTTP call tried on each server in turn, with optional Nacos login.

The rule lives in :class:`ServerRotation` (which server first, which next, which one to keep); it does no IO.
Two pools send with it: :class:`ServerPool` over an ``httpx.AsyncClient`` (the async and blocking naming
clients) and :class:`SyncServerPool` over an ``httpx.Client`` (command-line tools, plain scripts)::

    with httpx.Client(timeout=5) as http:
        pool = SyncServerPool(["10.0.0.1:8848", "10.0.0.2:8848"], http)
        response = pool.request("GET", "/nacos/v1/ns/operator/servers", {})

A request goes to the current server first; a connection error, a timeout or a 5xx (500, 502, 503, 504) sends
it to the next one, each server once. The first other answer (2xx, but also 4xx: that is the caller's to read)
is returned and its server becomes the current one, so a client keeps talking to one node (and holds its
push subscription there). When every server failed, :class:`~distroreg.errors.NamingUnavailable` lists what
each one did, and the next request starts one server further on.
"""

from __future__ import annotations

import functools
import logging
import random
import ssl
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import anyio
import httpx

from distroreg.errors import NamingError, NamingUnavailable, ServerFailure

log = logging.getLogger("distroreg")

LOGIN_PATH = "/nacos/v1/auth/login"
FAILOVER_STATUSES = frozenset({500, 502, 503, 504})
DEFAULT_TOKEN_TTL_S = 18_000


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """One verifying TLS context for the whole process (building one costs 0.1-0.5 s of CPU)."""
    return httpx.create_ssl_context()


def normalize_server(server: str) -> str:
    """``host:port`` or a URL -> ``http://host:port`` (no trailing slash)."""
    server = server.strip().rstrip("/")
    if not server:
        raise ValueError("empty server address")
    if "://" not in server:
        server = "http://" + server
    return server


class ServerRotation:
    """The failover rule, without IO: the order in which one request tries the servers, and which one to keep.

    It starts at the first server listed, or at a random one when ``rng`` is given (spreading clients over
    the cluster, as Nacos does).
    """

    def __init__(self, servers: Sequence[str], rng: random.Random | None = None) -> None:
        self.urls = [normalize_server(s) for s in servers]
        if not self.urls:
            raise ValueError("at least one server address is needed")
        self._current = rng.randrange(len(self.urls)) if rng is not None else 0
        self.failovers = 0

    @property
    def current(self) -> str:
        """The URL of the server in use."""
        return self.urls[self._current]

    def next_server(self) -> None:
        """Move on to the next server (e.g. after a failure seen outside a request)."""
        self._current = (self._current + 1) % len(self.urls)

    def attempt(self) -> FailoverAttempt:
        """The walk of one request over the servers."""
        return FailoverAttempt(self)

    def _settle(self, url: str, failures: Sequence[ServerFailure]) -> None:
        index = self.urls.index(url)
        if index != self._current:
            self.failovers += 1
            log.info("naming: switched to server %s (%s)", url, "; ".join(map(str, failures)))
            self._current = index


class FailoverAttempt:
    """One request's walk: ``for url in attempt`` yields each server once, current first; the sender reports
    what each did with :meth:`failed` or :meth:`answered`, and raises :meth:`unavailable` after the loop."""

    def __init__(self, rotation: ServerRotation) -> None:
        self._rotation = rotation
        self.failures: list[ServerFailure] = []

    def __iter__(self) -> Iterator[str]:
        urls = self._rotation.urls
        start = self._rotation._current
        for step in range(len(urls)):
            yield urls[(start + step) % len(urls)]

    def failed(self, url: str, error: Exception) -> None:
        """``url`` raised ``error``: a transport error (or a login answered with a 5xx) moves on to the next
        server; any other error is re-raised."""
        if isinstance(error, NamingError):
            if error.status not in FAILOVER_STATUSES:
                raise error
        elif not isinstance(error, httpx.TransportError):
            raise error
        self.failures.append(ServerFailure(url, error=error))

    def answered(self, url: str, response: httpx.Response) -> bool:
        """True when ``response`` is the request's answer (``url`` becomes the current server); False for a
        5xx, which moves on to the next server."""
        if response.status_code in FAILOVER_STATUSES:
            self.failures.append(ServerFailure(url, response=response))
            return False
        self._rotation._settle(url, self.failures)
        return True

    def unavailable(self) -> NamingUnavailable:
        """The error to raise when no server answered; the next request starts one server further on."""
        self._rotation.next_server()
        return NamingUnavailable("no server answered: " + "; ".join(map(str, self.failures)), self.failures)


class _Credentials:
    """Nacos-style login: the user, the password, and the access token with its expiry (clock in seconds)."""

    def __init__(self, username: str, password: str | None) -> None:
        self.form = {"username": username, "password": password or ""}
        self._token: str | None = None
        self._expires_s = 0.0

    def valid_token(self, now_s: float) -> str | None:
        return self._token if self._token is not None and now_s < self._expires_s else None

    def accept(self, response: httpx.Response, now_s: float) -> str:
        """Keep the token of a login answer; NamingError when the login failed."""
        if response.status_code != 200:
            raise NamingError(response.status_code, f"login failed: {response.text[:200]}")
        body = response.json()
        self._token = str(body["accessToken"])
        self._expires_s = now_s + float(body.get("tokenTtl", DEFAULT_TOKEN_TTL_S)) * 0.9
        return self._token


def _token_rejected(response: httpx.Response) -> bool:
    return response.status_code == 403 and "token" in response.text


def _request_options(
    params: Mapping[str, Any], token: str | None, data: Mapping[str, str] | None, timeout: httpx.Timeout | float | None
) -> dict[str, Any]:
    query = dict(params)
    if token is not None:
        query["accessToken"] = token
    options: dict[str, Any] = {"params": query, "data": data}
    if timeout is not None:
        options["timeout"] = timeout
    return options


class ServerPool(ServerRotation):
    """Sends a request to the current server and fails over as :class:`ServerRotation` says (async, anyio)."""

    def __init__(
        self,
        servers: Sequence[str],
        http: httpx.AsyncClient,
        *,
        username: str | None = None,
        password: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(servers, rng)
        self.http = http
        self._credentials = _Credentials(username, password) if username is not None else None
        self._login_lock = anyio.Lock()

    async def _login(self, url: str, force: bool) -> str | None:
        credentials = self._credentials
        if credentials is None:
            return None
        async with self._login_lock:
            token = None if force else credentials.valid_token(anyio.current_time())
            if token is None:
                response = await self.http.post(url + LOGIN_PATH, data=credentials.form)
                token = credentials.accept(response, anyio.current_time())
            return token

    async def _send(self, url: str, method: str, path: str, params: Mapping[str, Any],
                    data: Mapping[str, str] | None, timeout: httpx.Timeout | float | None) -> httpx.Response:
        token = await self._login(url, force=False)
        response = await self.http.request(method, url + path, **_request_options(params, token, data, timeout))
        if token is not None and _token_rejected(response):
            token = await self._login(url, force=True)
            response = await self.http.request(method, url + path, **_request_options(params, token, data, timeout))
        return response

    async def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any],
        *,
        data: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | float | None = None,
    ) -> httpx.Response:
        """The first answer that is not a 5xx; NamingUnavailable when no server gives one."""
        attempt = self.attempt()
        for url in attempt:
            try:
                response = await self._send(url, method, path, params, data, timeout)
            except (httpx.TransportError, NamingError) as exc:
                attempt.failed(url, exc)
                continue
            if attempt.answered(url, response):
                return response
        raise attempt.unavailable()


class SyncServerPool(ServerRotation):
    """The blocking twin of :class:`ServerPool`, over an ``httpx.Client`` (safe to share between threads)."""

    def __init__(
        self,
        servers: Sequence[str],
        http: httpx.Client,
        *,
        username: str | None = None,
        password: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(servers, rng)
        self.http = http
        self._credentials = _Credentials(username, password) if username is not None else None
        self._login_lock = threading.Lock()

    def _login(self, url: str, force: bool) -> str | None:
        credentials = self._credentials
        if credentials is None:
            return None
        with self._login_lock:
            token = None if force else credentials.valid_token(time.monotonic())
            if token is None:
                response = self.http.post(url + LOGIN_PATH, data=credentials.form)
                token = credentials.accept(response, time.monotonic())
            return token

    def _send(self, url: str, method: str, path: str, params: Mapping[str, Any],
              data: Mapping[str, str] | None, timeout: httpx.Timeout | float | None) -> httpx.Response:
        token = self._login(url, force=False)
        response = self.http.request(method, url + path, **_request_options(params, token, data, timeout))
        if token is not None and _token_rejected(response):
            token = self._login(url, force=True)
            response = self.http.request(method, url + path, **_request_options(params, token, data, timeout))
        return response

    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any],
        *,
        data: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | float | None = None,
    ) -> httpx.Response:
        """The first answer that is not a 5xx; NamingUnavailable when no server gives one."""
        attempt = self.attempt()
        for url in attempt:
            try:
                response = self._send(url, method, path, params, data, timeout)
            except (httpx.TransportError, NamingError) as exc:
                attempt.failed(url, exc)
                continue
            if attempt.answered(url, response):
                return response
        raise attempt.unavailable()


__all__ = [
    "FAILOVER_STATUSES",
    "FailoverAttempt",
    "ServerPool",
    "ServerRotation",
    "SyncServerPool",
    "normalize_server",
    "shared_ssl_context",
]
