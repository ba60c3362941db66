"""The console's change feed: one long poll that tells an open page which services changed.

    GET /nacos/v1/console/changes?feed=<id>&revision=<n>&timeoutMs=<ms>
    -> 200 {"feed": id, "revision": m, "complete": bool, "changes": [{namespaceId, groupName, serviceName}]}

Every change to a service's view on this node (a local write, a replicated one, a health change, an expiry)
bumps the node's revision and is remembered in a bounded ring. A request that is behind (``revision`` < the
current one) is answered at once with the services changed since; one that is current waits up to
``timeoutMs`` (capped at 30 s) and is answered with the same revision and no changes when nothing happened.
``complete`` is false when the page cannot trust the list: the ring no longer reaches back to its revision,
too many services changed, the node restarted (another ``feed`` id) or it asked for the first time; the
page then reloads what it shows. It is always a 200 (a browser logs every failed fetch as an error).
"""

from __future__ import annotations

import secrets
from collections import deque
from typing import Any

import trio

from distro.model import ServiceKey
from distro.views import ServiceView

MAX_TIMEOUT_MS = 30_000
DEFAULT_TIMEOUT_MS = 20_000
MAX_CHANGES_PER_ANSWER = 200


class ChangeFeed:
    """Counts service changes and wakes the console's long polls. Attach :meth:`on_change` to the runtime."""

    def __init__(self, *, remembered: int = 4096, max_waiters: int = 512) -> None:
        self.feed_id = secrets.token_hex(8)
        self.revision = 0
        self.max_waiters = max_waiters
        self.waiters = 0
        self._recent: deque[tuple[int, ServiceKey]] = deque(maxlen=remembered)
        self._changed = trio.Event()

    def on_change(self, key: ServiceKey, view: ServiceView) -> None:
        """The runtime's change listener: O(1), never awaits. Keys with no group hold cluster-wide data (the
        namespaces), not a service: the feed leaves them out (the namespaces page polls)."""
        if not key.group:
            return
        self.revision += 1
        self._recent.append((self.revision, key))
        if self.waiters:
            self._changed.set()
            self._changed = trio.Event()

    def changes_since(self, revision: int) -> tuple[bool, list[ServiceKey]]:
        """Whether the list is complete, and the distinct services changed after ``revision`` (oldest first)."""
        if revision > self.revision or revision < 0:
            return False, []
        if revision == self.revision:
            return True, []
        if not self._recent or self._recent[0][0] > revision + 1:
            return False, []
        seen: dict[ServiceKey, None] = {}
        for rev, key in reversed(self._recent):
            if rev <= revision:
                break
            seen[key] = None
            if len(seen) > MAX_CHANGES_PER_ANSWER:
                return False, []
        return True, list(reversed(seen))

    def answer(self, feed_id: str | None, revision: int | None) -> dict[str, Any]:
        """The body for a client that holds ``revision`` of feed ``feed_id`` (None: first call)."""
        keys: list[ServiceKey] = []
        if feed_id != self.feed_id or revision is None:
            complete = False
        else:
            complete, keys = self.changes_since(revision)
        return {
            "feed": self.feed_id,
            "revision": self.revision,
            "complete": complete,
            "changes": [
                {"namespaceId": key.namespace, "groupName": key.group, "serviceName": key.service} for key in keys
            ],
        }

    async def wait(self, feed_id: str | None, revision: int | None, timeout_ms: int) -> dict[str, Any]:
        """Answer at once when the client is behind, else after the next change or the timeout."""
        current = feed_id == self.feed_id and revision == self.revision
        if current and timeout_ms > 0 and self.waiters < self.max_waiters:
            self.waiters += 1
            try:
                with trio.move_on_after(min(timeout_ms, MAX_TIMEOUT_MS) / 1000):
                    await self._changed.wait()
            finally:
                self.waiters -= 1
        else:
            await trio.lowlevel.checkpoint()
        return self.answer(feed_id, revision)


__all__ = ["DEFAULT_TIMEOUT_MS", "MAX_TIMEOUT_MS", "ChangeFeed"]
