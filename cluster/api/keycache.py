"""Validated service keys by the raw parameters they came from, so that a hot service costs one look-up.

Every write names its service by ``namespaceId``, ``groupName`` and ``serviceName``; building the key
(:func:`distro.model.service_key`) runs two regular expressions and makes a new key each time. The cache
keeps what validated (never an error) and hands out one key object per service, which also makes the
core's dict look-ups identity hits. Clients choose the names, so it is bounded in bytes.
"""

from __future__ import annotations

from distro.model import ServiceKey, service_key

__all__ = ["KEY_CACHE_BYTES", "ServiceKeyCache"]

KEY_CACHE_BYTES = 4 * 1024 * 1024
"""The default bound: the raw names' characters plus :data:`_ENTRY_BYTES` per cached key."""
_ENTRY_BYTES = 300  # the tuple of three strings, the key and its strings, the dict slot


class ServiceKeyCache:
    """``service_key(namespace, group, service_name)``, remembered; past ``max_bytes`` it starts again empty."""

    __slots__ = ("_keys", "max_bytes", "used_bytes")

    def __init__(self, max_bytes: int = KEY_CACHE_BYTES) -> None:
        self._keys: dict[tuple[str | None, str | None, str], ServiceKey] = {}
        self.max_bytes = max_bytes
        self.used_bytes = 0

    def key(self, namespace: str | None, group: str | None, service_name: str) -> ServiceKey:
        """The validated key (raises ``ValidationError`` as :func:`~distro.model.service_key` does)."""
        raw = (namespace, group, service_name)
        key = self._keys.get(raw)
        if key is None:
            key = service_key(namespace, group, service_name)
            cost = len(namespace or "") + len(group or "") + len(service_name) + _ENTRY_BYTES
            if self.used_bytes + cost > self.max_bytes:
                self._keys.clear()
                self.used_bytes = 0
            self._keys[raw] = key
            self.used_bytes += cost
        return key
