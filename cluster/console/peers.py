"""What the console asks of other members, over the authenticated peer link (never over HTTP).

A :class:`~distro.messages.ConsoleQuery` goes to one peer and its :class:`~distro.messages.ConsoleReply`
comes back within ``deadline_ms`` or not at all: the peer's version and start time (the cluster page) and,
for a service it owns, when each instance last beat (the service page; only the owner knows). The runtime
hands both message types to the handlers registered here (``NodeRuntime.peer_handlers``); the core ignores
them. A late, duplicate or foreign reply is dropped; at most ``max_pending`` queries wait at once.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from cluster.node.pump import NodeRuntime
from distro.messages import ConsoleQuery, ConsoleReply, Message
from distro.model import ServiceKey

__all__ = ["MAX_BEATS", "ConsolePeers", "LocalFacts"]

MAX_BEATS = 10_000
"""Most instances one reply reports the last beat of (bounds a reply's size)."""

LocalFacts = Callable[[ServiceKey | None], ConsoleReply]
"""This node's answer to a query (``query_id`` 0: the caller sets the real one)."""


@dataclass(slots=True)
class _Pending:
    peer: str
    done: trio.Event = field(default_factory=trio.Event)
    reply: ConsoleReply | None = None


class ConsolePeers:
    """Sends console queries to peers and answers theirs. One per node."""

    def __init__(
        self, runtime: NodeRuntime, local: LocalFacts, *, deadline_ms: int = 1000, max_pending: int = 64
    ) -> None:
        self.runtime = runtime
        self.local = local
        self.deadline_ms = deadline_ms
        self.max_pending = max_pending
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        runtime.peer_handlers[ConsoleQuery] = self._on_query
        runtime.peer_handlers[ConsoleReply] = self._on_reply

    def _on_query(self, sender: str, message: Message) -> None:
        assert isinstance(message, ConsoleQuery)
        transport = self.runtime.transport
        if transport is not None:
            answer = self.local(message.key)
            beats = answer.beats[:MAX_BEATS]
            transport.send(sender, ConsoleReply(message.query_id, answer.version, answer.started_ms,
                                                answer.now_ms, beats))

    def _on_reply(self, sender: str, message: Message) -> None:
        assert isinstance(message, ConsoleReply)
        pending = self._pending.get(message.query_id)
        if pending is None or pending.peer != sender or pending.reply is not None:
            return
        pending.reply = message
        pending.done.set()

    async def ask(self, peer: str, key: ServiceKey | None = None) -> ConsoleReply | None:
        """``peer``'s answer, or None when it did not answer within the deadline (or too many wait)."""
        transport = self.runtime.transport
        if transport is None or len(self._pending) >= self.max_pending:
            await trio.lowlevel.checkpoint()
            return None
        query_id = next(self._ids)
        pending = self._pending[query_id] = _Pending(peer)
        try:
            transport.send(peer, ConsoleQuery(query_id, key))
            with trio.move_on_after(self.deadline_ms / 1000):
                await pending.done.wait()
        finally:
            del self._pending[query_id]
        return pending.reply
