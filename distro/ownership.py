"""Who owns a service key: rendezvous (highest-random-weight) hashing over the live members.

Each member scores each key with a stable hash (blake2b, never Python's salted ``hash()``); the highest
score owns it. Adding or removing one of n members moves only the keys that member wins or held, about
1/n of them, where Nacos's ``hash % n`` over a sorted list moved almost all.

A member's score for a key never changes, so a node keeps them (:class:`MemberScores`) for the maps it
builds one after another: a new map after a membership change hashes only what a member new to the key
needs, instead of every member for every key. At 10,000 keys a fresh map's first pass over them (the
ownership walk of a membership change, in one step) was ~30 ms of CPU; with the scores kept, a member
leaving hashes nothing and one joining a third of that.
"""

from __future__ import annotations

from collections.abc import Iterable
from hashlib import blake2b

from distro.model import ServiceKey

__all__ = ["CACHE_ENTRY_BYTES", "MAX_CACHE_BYTES", "MemberScores", "OwnershipMap", "owner_of", "score"]


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


def _key_chars(key: ServiceKey) -> int:
    """``len(str(key))`` without building the string (two 2-character separators)."""
    return len(key.namespace) + len(key.group) + len(key.service) + 4


SCORES_ENTRY_BYTES = 360
"""What one key's scores cost in a :class:`MemberScores` (its dict, three members' ints), beyond its characters."""


class MemberScores:
    """Each member's score for each key, kept across the :class:`OwnershipMap` s a node builds one after
    another (a score never changes). Bounded like a map's cache: past ``max_cache_bytes`` it starts again."""

    __slots__ = ("_by_key", "cache_bytes", "hashed", "max_cache_bytes")

    def __init__(self, *, max_cache_bytes: int = MAX_CACHE_BYTES) -> None:
        self._by_key: dict[ServiceKey, dict[str, int]] = {}
        self.cache_bytes = 0
        self.max_cache_bytes = max_cache_bytes
        self.hashed = 0  # scores computed so far

    def warm(self, key: ServiceKey, member: str) -> None:
        """Score ``key`` for ``member`` now, unless done (a node scores its new keys for itself as it stores
        them: a starting node owns nothing while it loads, and would otherwise hash every key for itself
        in the one step that makes it ready)."""
        self.owner(key, (member,))

    def owner(self, key: ServiceKey, members: tuple[str, ...]) -> str | None:
        """:func:`owner_of` ``(str(key), members)``, hashing only the members not scored for ``key`` yet (the
        key's text is built only then)."""
        known = self._by_key.get(key)
        if known is None:
            cost = _key_chars(key) + SCORES_ENTRY_BYTES
            if self.cache_bytes + cost > self.max_cache_bytes:
                self._by_key.clear()
                self.cache_bytes = 0
            known = self._by_key[key] = {}
            self.cache_bytes += cost
        best: tuple[int, str] | None = None
        for member in members:
            points = known.get(member)
            if points is None:
                points = known[member] = score(member, str(key))
                self.hashed += 1
            candidate = (points, member)
            if best is None or candidate > best:
                best = candidate
        return None if best is None else best[1]

    def owners(self, keys: list[ServiceKey], members: tuple[str, ...]) -> list[str | None]:
        """``[self.owner(key, members) for key in keys]``: a key already scored for every member is looked up
        in one C-level ``max`` (no per-key call, no tuple per member); the others go through :meth:`owner`.

        ``members`` is sorted (an :class:`OwnershipMap`'s): scanned from the highest name down, ``max`` keeps
        the first of equal scores, the highest name, as :func:`owner_of`'s ``(score, member)`` compare does."""
        if not members:
            return [None] * len(keys)
        by_key = self._by_key
        order = members[::-1]
        out: list[str | None] = []
        append = out.append
        for key in keys:
            known = by_key.get(key)
            try:
                append(max(order, key=known.__getitem__))  # type: ignore[union-attr,index]
            except (AttributeError, KeyError):  # not scored yet (for some member)
                append(self.owner(key, members))
        return out


class OwnershipMap:
    """Caches ``owner_of`` for a fixed member set; build a new one when the live set changes.

    Keys come from clients (any name a request carries is looked up), so the cache is bounded in bytes:
    past ``max_cache_bytes`` (:data:`MAX_CACHE_BYTES`) it starts again empty.
    """

    __slots__ = ("_cache", "_scores", "cache_bytes", "max_cache_bytes", "members")

    def __init__(
        self, members: Iterable[str], *, max_cache_bytes: int = MAX_CACHE_BYTES, scores: MemberScores | None = None
    ) -> None:
        self.members: tuple[str, ...] = tuple(sorted(set(members)))
        self._cache: dict[str | ServiceKey, str | None] = {}
        self._scores = scores  # kept across maps: a key's owner is looked up with what is already hashed
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
        scores = self._scores
        result = owner_of(str(key), self.members) if scores is None else scores.owner(key, self.members)
        self._remember(key, _key_chars(key) + KEY_ENTRY_BYTES, result)
        return result

    def owners_of_keys(self, keys: list[ServiceKey]) -> list[str | None]:
        """``[self.owner_of_key(key) for key in keys]``, the keys not cached yet looked up together
        (:meth:`MemberScores.owners`) and cached: the walks over every stored key of a membership change (at
        10,000 keys the per-key calls were most of a join's 47-69 ms of CPU in the 1M run)."""
        get = self._cache.get
        found: list[str | None] = [get(key, "") for key in keys]
        missing = [key for key, owner in zip(keys, found, strict=True) if owner == ""]
        if not missing:
            return found
        scores = self._scores
        if scores is None:
            looked_up = [owner_of(str(key), self.members) for key in missing]
        else:
            looked_up = scores.owners(missing, self.members)
        cost = sum(map(_key_chars, missing)) + len(missing) * (KEY_ENTRY_BYTES + CACHE_ENTRY_BYTES)
        if self.cache_bytes + cost <= self.max_cache_bytes:
            self._cache.update(zip(missing, looked_up, strict=True))
            self.cache_bytes += cost
        else:  # over the bound: key by key, starting again when full
            for key, owner in zip(missing, looked_up, strict=True):
                self._remember(key, _key_chars(key) + KEY_ENTRY_BYTES, owner)
        fresh = iter(looked_up)
        return [next(fresh) if owner == "" else owner for owner in found]

    def _remember(self, key: str | ServiceKey, chars: int, result: str | None) -> None:
        cost = chars + CACHE_ENTRY_BYTES
        if self.cache_bytes + cost > self.max_cache_bytes:
            self._cache.clear()
            self.cache_bytes = 0
        self._cache[key] = result
        self.cache_bytes += cost
