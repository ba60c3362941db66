"""cluster/api/keycache.py: validated service keys by their raw names, bounded in bytes."""

from __future__ import annotations

import pytest

from cluster.api.keycache import ServiceKeyCache
from distro.model import ServiceKey, ValidationError, service_key


def test_one_key_object_per_service_and_the_same_key_as_service_key() -> None:
    cache = ServiceKeyCache()
    first = cache.key(None, None, "orders")
    assert first == service_key(None, None, "orders") == ServiceKey("public", "DEFAULT_GROUP", "orders")
    assert cache.key(None, None, "orders") is first
    assert cache.key("public", "DEFAULT_GROUP", "orders") == first  # other raw names, same key
    assert cache.key(None, None, "g@@orders") == ServiceKey("public", "g", "orders")


@pytest.mark.parametrize("raw", [(None, None, "a b"), ("bad ns!", None, "orders"), (None, None, "g@@")])
def test_invalid_names_raise_every_time_and_are_not_kept(raw: tuple[str | None, str | None, str]) -> None:
    cache = ServiceKeyCache()
    for _ in range(2):
        with pytest.raises(ValidationError):
            cache.key(*raw)
    assert cache.used_bytes == 0


def test_bounded_in_bytes() -> None:
    cache = ServiceKeyCache(max_bytes=5_000)
    for i in range(1_000):
        assert cache.key(None, None, f"svc-{i}") == ServiceKey("public", "DEFAULT_GROUP", f"svc-{i}")
        assert cache.used_bytes <= cache.max_bytes
