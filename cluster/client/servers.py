"""The server list: one HTTP call tried on each server in turn, with optional Nacos-style login."""

from __future__ import annotations

import functools
import logging
import random
import ssl
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import httpx

from cluster.client.model import NamingError, NamingUnavailable

log = logging.getLogger("distro.client")

LOGIN_PATH = "/nacos/v1/auth/login"
_FAILOVER_STATUSES = frozenset({500, 502, 503, 504})


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


class ServerPool:
    """Sends a request to the current server; on a connection error, a timeout or a 5xx, to the next.

    The current server is picked at random at first (spreading clients over the cluster, as Nacos does)
    and kept while it answers, so a client talks to one node (and holds its push subscription there).
    """

    def __init__(
        self,
        servers: Sequence[str],
        http: httpx.AsyncClient,
        *,
        username: str | None = None,
        password: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.urls = [normalize_server(s) for s in servers]
        if not self.urls:
            raise ValueError("NamingClient needs at least one server address")
        self.http = http
        self.username = username
        self.password = password
        self._current = (rng or random.Random()).randrange(len(self.urls))
        self._token: str | None = None
        self._token_expires = 0.0
        self._login_lock = anyio.Lock()
        self.failovers = 0

    @property
    def current(self) -> str:
        """The URL of the server in use."""
        return self.urls[self._current]

    def next_server(self) -> None:
        """Move on to the next server (e.g. after a failure seen outside :meth:`request`)."""
        self._current = (self._current + 1) % len(self.urls)

    async def _login(self, url: str, force: bool) -> str | None:
        if self.username is None:
            return None
        async with self._login_lock:
            if not force and self._token is not None and anyio.current_time() < self._token_expires:
                return self._token
            response = await self.http.post(
                url + LOGIN_PATH, data={"username": self.username, "password": self.password or ""}
            )
            if response.status_code != 200:
                raise NamingError(response.status_code, f"login failed: {response.text[:200]}")
            body = response.json()
            self._token = str(body["accessToken"])
            ttl = float(body.get("tokenTtl", 18_000))
            self._token_expires = anyio.current_time() + ttl * 0.9
            return self._token

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
        errors: list[str] = []
        count = len(self.urls)
        for attempt in range(count):
            index = (self._current + attempt) % count
            url = self.urls[index]
            try:
                query = dict(params)
                token = await self._login(url, force=False)
                if token is not None:
                    query["accessToken"] = token
                kwargs: dict[str, Any] = {"params": query, "data": data}
                if timeout is not None:
                    kwargs["timeout"] = timeout
                response = await self.http.request(method, url + path, **kwargs)
                if response.status_code == 403 and token is not None and "token" in response.text:
                    query["accessToken"] = await self._login(url, force=True)
                    response = await self.http.request(method, url + path, **kwargs)
            except httpx.TransportError as exc:
                errors.append(f"{url}: {type(exc).__name__}: {exc}")
                continue
            except NamingError as exc:
                if exc.status in _FAILOVER_STATUSES:
                    errors.append(f"{url}: {exc}")
                    continue
                raise
            if response.status_code in _FAILOVER_STATUSES:
                errors.append(f"{url}: HTTP {response.status_code} {response.text[:100]}")
                continue
            if index != self._current:
                self.failovers += 1
                log.info("naming: switched to server %s (%s)", url, "; ".join(errors))
                self._current = index
            return response
        self.next_server()
        raise NamingUnavailable("no server answered: " + "; ".join(errors))


__all__ = ["ServerPool", "normalize_server", "shared_ssl_context"]
