"""Who owns a service key: rendezvous (highest-random-weight) hashing over the live members.

Each member scores each key with a stable hash (blake2b, never Python's salted ``hash()``); the highest
score owns it. Adding or removing one of n members moves only the keys that member wins or held, about
1/n of them, where Nacos's ``hash % n`` over a sorted list moved almost all.
"""

from __future__ import annotations

from collections.abc import Iterable
from hashlib import blake2b

__all__ = ["OwnershipMap", "owner_of", "score"]


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


class OwnershipMap:
    """Caches ``owner_of`` for a fixed member set; build a new one when the live set changes."""

    __slots__ = ("_cache", "members")

    def __init__(self, members: Iterable[str]) -> None:
        self.members: tuple[str, ...] = tuple(sorted(set(members)))
        self._cache: dict[str, str | None] = {}

    def owner(self, key: str) -> str | None:
        """The owner of ``key`` among this map's members."""
        cached = self._cache.get(key, "")
        if cached != "":
            return cached
        result = owner_of(key, self.members)
        if len(self._cache) > 1_000_000:
            self._cache.clear()
        self._cache[key] = result
        return result
