"""The nodes as the workload sees them: an httpx client per node, and which of them answered lately."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import httpx
import trio

from chaoslib.compose import NodeRef

NS = "/nacos/v1/ns"


class HttpFailure(Exception):
    """No response: refused, reset, closed, or (``timeout``) too slow; ``connect`` when nothing was sent."""

    def __init__(self, message: str, timeout: bool = False, connect: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout
        self.connect = connect


class NodeClient:
    """Keep-alive connections to one node (``host:port``) over httpx; any number of concurrent requests."""

    def __init__(self, host: str, port: int, connect_timeout: float = 1.0, max_idle: int = 32) -> None:
        self.address = f"{host}:{port}"
        self.connect_timeout = connect_timeout
        self._client = httpx.AsyncClient(
            base_url=f"http://{self.address}", trust_env=False,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=max_idle),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def request(self, method: str, path: str, params: dict[str, Any] | None, timeout: float) -> httpx.Response:
        """One request with a deadline of ``timeout`` seconds for all of it; HttpFailure when no response."""
        limits = httpx.Timeout(timeout, connect=min(self.connect_timeout, timeout))
        try:
            with trio.fail_after(timeout):
                return await self._client.request(method, path, params=params, timeout=limits)
        except trio.TooSlowError:
            raise HttpFailure(f"{method} {path}: no answer within {timeout:.1f}s", timeout=True) from None
        except httpx.ConnectError as exc:
            raise HttpFailure(f"connect to {self.address}: {exc or 'refused'}", connect=True) from None
        except httpx.ConnectTimeout:
            raise HttpFailure(f"connect to {self.address}: timeout", timeout=True, connect=True) from None
        except httpx.TimeoutException:
            raise HttpFailure(f"{method} {path}: no answer within {timeout:.1f}s", timeout=True) from None
        except httpx.HTTPError as exc:
            raise HttpFailure(f"{method} {path}: {type(exc).__name__}: {exc}") from None


class NodeSet:
    """The cluster's nodes, a client for each, and which answered lately (clients try those first)."""

    def __init__(self, nodes: list[NodeRef], rng: random.Random, now: Callable[[], float], max_idle: int) -> None:
        self.nodes = nodes
        self.by_name = {n.name: n for n in nodes}
        self.rng = rng
        self.now = now
        self.clients = {n.name: NodeClient("127.0.0.1", n.port, max_idle=max_idle) for n in nodes}
        self.last_ok: dict[str, float] = {}
        self.last_fail: dict[str, float] = {}

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()

    def note_ok(self, node: str) -> None:
        self.last_ok[node] = self.now()

    def note_fail(self, node: str) -> None:
        self.last_fail[node] = self.now()

    def suspect(self, node: str) -> bool:
        """Did the node's last request fail (after its last success)?"""
        return self.last_fail.get(node, -1.0) > self.last_ok.get(node, -2.0)

    def pick_nodes(self) -> list[str]:
        """Nodes in the order a client should try them: random reachable ones first."""
        names = [n.name for n in self.nodes]
        self.rng.shuffle(names)
        return sorted(names, key=self.suspect)

    async def request(
        self, node: str, method: str, path: str, params: dict[str, Any], timeout: float
    ) -> httpx.Response:
        """A naming API request (``path`` under /nacos/v1/ns) to ``node``."""
        return await self.clients[node].request(method, NS + path, params, timeout)

    async def wait_ready(self, node: NodeRef, bound: float) -> float | None:
        """Seconds until ``node`` answers /readyz with 200, or None after ``bound`` seconds."""
        t0 = self.now()
        while self.now() - t0 < bound:
            try:
                resp = await self.clients[node.name].request("GET", "/readyz", None, 1.0)
                if resp.status_code == 200:
                    return self.now() - t0
            except HttpFailure:
                pass
            await trio.sleep(0.2)
        return None
