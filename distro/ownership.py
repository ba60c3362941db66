"""Who owns a service key: rendezvous (highest-random-weight) hashing over the live members.

Each member scores each key with a stable hash (blake2b, never Python's salted ``hash()``); the highest
score owns it. Adding or removing one of n members moves only the keys that member wins or held, about
1/n of them, where Nacos's ``hash % n`` over a sorted list moved almost all.
"""

from __future__ import annotations

from collections.abc import Iterable
from hashlib import blake2b

from distro.model import ServiceKey

__all__ = ["CACHE_ENTRY_BYTES", "MAX_CACHE_BYTES", "OwnershipMap", "owner_of", "score"]


def score(member: str, key: str) -> int:
    """The member's stable weight for a key."""
    data = f"{member}\x00{key}".encode("utf-8", "surrogatepass")
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "big")


def owner_of(key: str, members: Iterable[str]) -> str | None:
    """The member with the highest score for ``key`` (ties broken by name), or None if there are none."""
    best: tuple[int, str] | None = None
    for member in members:
        candidate = (score(member, key), member)
        if best is None or candidate > best:
            best = candidate
    return None if best is None else best[1]


MAX_CACHE_BYTES = 64 * 1024 * 1024
"""The bound on an :class:`OwnershipMap`'s cache: its keys' characters plus :data:`CACHE_ENTRY_BYTES` each."""
CACHE_ENTRY_BYTES = 120
"""What one cached key costs beyond its characters (the dict slot and the string's header)."""
KEY_ENTRY_BYTES = 64
"""What a :class:`~distro.model.ServiceKey` cache key costs beyond that (its tuple)."""


class OwnershipMap:
    """Caches ``owner_of`` for a fixed member set; build a new one when the live set changes.

    Keys come from clients (any name a request carries is looked up), so the cache is bounded in bytes:
    past ``max_cache_bytes`` (:data:`MAX_CACHE_BYTES`) it starts again empty.
    """

    __slots__ = ("_cache", "cache_bytes", "max_cache_bytes", "members")

    def __init__(self, members: Iterable[str], *, max_cache_bytes: int = MAX_CACHE_BYTES) -> None:
        self.members: tuple[str, ...] = tuple(sorted(set(members)))
        self._cache: dict[str | ServiceKey, str | None] = {}
        self.cache_bytes = 0
        self.max_cache_bytes = max_cache_bytes

    def owner(self, key: str) -> str | None:
        """The owner of ``key`` among this map's members."""
        cached = self._cache.get(key, "")
        if cached != "":
            return cached
        result = owner_of(key, self.members)
        self._remember(key, len(key), result)
        return result

    def owner_of_key(self, key: ServiceKey) -> str | None:
        """``owner(str(key))``, cached under the key itself: the hot path (every write asks a few times)
        builds no string. A key and its text are never equal, so both kinds share the one cache."""
        cached = self._cache.get(key, "")
        if cached != "":
            return cached
        text = str(key)
        result = owner_of(text, self.members)
        self._remember(key, len(text) + KEY_ENTRY_BYTES, result)
        return result

    def _remember(self, key: str | ServiceKey, chars: int, result: str | None) -> None:
        cost = chars + CACHE_ENTRY_BYTES
        if self.cache_bytes + cost > self.max_cache_bytes:
            self._cache.clear()
            self.cache_bytes = 0
        self._cache[key] = result
        self.cache_bytes += cost
