"""``service/subscribers``: who subscribes to a service, on this node or (by default) on every node.

Each node knows only its own subscribers (UDP push subscriptions today; other front doors add their
sources). As in Nacos, ``aggregation`` (default true) asks every other up member for theirs: here a
:class:`~distro.messages.SubscribersQuery` over the peer link, answered with a
:class:`~distro.messages.SubscribersReply`, all of them in parallel and within ``deadline_ms``. A peer that
does not answer in time is left out and the answer says ``"partial": true`` (Nacos logs and leaves it out
too). ``aggregation=false`` answers this node's subscribers only (what peers are asked for).

Rows carry Nacos's fields (``addrStr``, ``agent``, ``app``, ``ip``, ``namespaceId``, ``serviceName``) plus
ours: ``port``, ``cluster`` (the clusters the subscriber lists) and ``protocol`` (``udp``, ...). Rows are
de-duplicated on Nacos's identity (address, agent, app, ip) and paged after aggregation (Nacos 1.4.2 also
pages each peer's answer first, which loses rows past the first page).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from cluster.api.params import Params
from cluster.http import Request, Response
from cluster.node.pump import NodeRuntime
from distro.messages import Message, SubscriberRow, SubscribersQuery, SubscribersReply
from distro.model import ServiceKey, service_key

__all__ = ["MAX_ROWS_PER_NODE", "SubscriberSource", "SubscribersService"]

SubscriberSource = Callable[[ServiceKey], Iterable[SubscriberRow]]
"""This node's subscribers of one service, from one front door."""

MAX_ROWS_PER_NODE = 10_000
"""Most subscribers one node reports for one service (bounds a reply's size)."""


@dataclass(slots=True)
class _Query:
    waiting: set[str]
    rows: list[SubscriberRow] = field(default_factory=list)
    done: trio.Event = field(default_factory=trio.Event)


class SubscribersService:
    """The route, the peer query handlers and the pending queries of one node."""

    def __init__(
        self,
        runtime: NodeRuntime,
        sources: Sequence[SubscriberSource],
        *,
        deadline_ms: int = 1000,
        max_queries: int = 64,
    ) -> None:
        self.runtime = runtime
        self.sources = list(sources)
        self.deadline_ms = deadline_ms
        self.max_queries = max_queries
        self._queries: dict[int, _Query] = {}
        self._ids = itertools.count(1)
        self.partial_answers = 0
        runtime.peer_handlers[SubscribersQuery] = self._on_query
        runtime.peer_handlers[SubscribersReply] = self._on_reply

    # -- this node --------------------------------------------------------------------------------
    def local_rows(self, key: ServiceKey) -> list[SubscriberRow]:
        """Every source's subscribers of ``key`` (bounded)."""
        rows: list[SubscriberRow] = []
        for source in self.sources:
            rows.extend(itertools.islice(source(key), MAX_ROWS_PER_NODE - len(rows)))
        return rows

    def _on_query(self, sender: str, message: Message) -> None:
        assert isinstance(message, SubscribersQuery)
        transport = self.runtime.transport
        if transport is not None:
            transport.send(sender, SubscribersReply(message.query_id, tuple(self.local_rows(message.key))))

    def _on_reply(self, sender: str, message: Message) -> None:
        assert isinstance(message, SubscribersReply)
        query = self._queries.get(message.query_id)
        if query is None or sender not in query.waiting:
            return  # late, duplicate or foreign
        query.waiting.discard(sender)
        query.rows.extend(message.rows[:MAX_ROWS_PER_NODE])
        if not query.waiting:
            query.done.set()

    # -- the cluster ------------------------------------------------------------------------------
    async def gather(self, key: ServiceKey) -> tuple[list[SubscriberRow], bool]:
        """This node's rows and every up peer's; ``True`` when some peer did not answer in time."""
        rows = self.local_rows(key)
        peers = [m.node_id for m in self.runtime.node.members() if m.up and not m.is_self]
        transport = self.runtime.transport
        if not peers or transport is None:
            await trio.lowlevel.checkpoint()
            return rows, False
        if len(self._queries) >= self.max_queries:  # too many at once: answer what this node knows
            await trio.lowlevel.checkpoint()
            return rows, True
        query_id = next(self._ids)
        query = self._queries[query_id] = _Query(set(peers))
        try:
            for peer in peers:
                transport.send(peer, SubscribersQuery(query_id, key))
            with trio.move_on_after(self.deadline_ms / 1000):
                await query.done.wait()
        finally:
            del self._queries[query_id]
        return rows + query.rows, bool(query.waiting)

    async def route(self, request: Request, params: Params) -> Response:
        """GET /service/subscribers?serviceName=&groupName=&namespaceId=&pageNo=&pageSize=&aggregation=."""
        key = service_key(params.get("namespaceId"), params.get("groupName"), params.required("serviceName", "dom"))
        page_no = params.integer("pageNo", 1, low=1)
        page_size = params.integer("pageSize", 1000, low=1, high=10_000)
        if params.lenient_boolean("aggregation", True):
            rows, partial = await self.gather(key)
        else:
            await trio.lowlevel.checkpoint()
            rows, partial = self.local_rows(key), False
        if partial:
            self.partial_answers += 1
        unique: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        for addr, agent, app, ip, port, clusters, protocol in rows:
            unique.setdefault((addr, agent, app, ip), {
                "addrStr": addr,
                "agent": agent,
                "app": app,
                "ip": ip,
                "port": port,
                "namespaceId": key.namespace,
                "serviceName": key.grouped_name,
                "cluster": clusters,
                "protocol": protocol,
            })
        listed = list(unique.values())
        start = (page_no - 1) * page_size
        return Response.json({"subscribers": listed[start : start + page_size], "count": len(listed),
                              "partial": partial})
