"""Shared copies of the small values that most instances repeat, so a node stores each of them once.

A node holds every instance of the cluster, and most instances repeat the same few values: cluster
``DEFAULT``, port 8080, weight 1.0, no metadata (or the same few metadata pairs), and the same three
writer node ids in their versions. Each request and each replicated entry arrives as fresh objects (the
HTTP parser and msgpack make new strings, ints and floats every time), and kept as they come they cost
about 200 bytes per instance per node (measured with ``scripts/bench --memory-profile``). The functions
here return one shared object for equal values:

- strings (cluster names, writer node ids, metadata keys and values) go through :func:`sys.intern`, whose
  table holds only the strings still in use (CPython frees an interned string with its last reference);
- ports and weights through small tables of the values seen, each bounded in entries and cleared when
  full (a cleared table only stops sharing for values seen after it, nothing is lost);
- metadata mappings: empty metadata is one shared empty mapping, and small mappings are shared through a
  table keyed by their items, bounded the same way.

Every value shared here is immutable in use (instances are frozen and nothing writes into their
metadata), so sharing changes no behaviour, only how many copies exist.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["EMPTY_METADATA", "share_metadata", "share_port", "share_str", "share_weight"]

EMPTY_METADATA: Mapping[str, str] = MappingProxyType({})
"""The metadata of every instance that has none (read-only, so it cannot be changed by mistake)."""

MAX_SHARED_VALUES = 4096
"""Entries in each table of :func:`share_port`, :func:`share_weight` and :func:`share_metadata`."""
MAX_SHARED_METADATA_CHARS = 512
"""Metadata larger than this (keys and values together) is kept as it comes: rarely repeated, and it
bounds the metadata table to about 4096 x 512 characters."""

_ports: dict[int, int] = {}
_weights: dict[float, float] = {}
_metadata: dict[tuple[tuple[str, str], ...], Mapping[str, str]] = {}

share_str = sys.intern


def share_port(port: int) -> int:
    """One int object per port number."""
    shared = _ports.get(port)
    if shared is None:
        if len(_ports) >= MAX_SHARED_VALUES:
            _ports.clear()
        shared = _ports[port] = port
    return shared


def share_weight(weight: float) -> float:
    """One float object per weight (``1.0`` for nearly every instance)."""
    shared = _weights.get(weight)
    if shared is None:
        if weight != weight:  # NaN is never equal to itself: a table entry would never be found again
            return weight
        if len(_weights) >= MAX_SHARED_VALUES:
            _weights.clear()
        shared = _weights[weight] = weight
    return shared


def share_metadata(metadata: Mapping[str, str]) -> Mapping[str, str]:
    """A read-only mapping equal to ``metadata``, shared with every other instance whose metadata is equal."""
    if not metadata:
        return EMPTY_METADATA
    items = tuple(metadata.items())
    shared = _metadata.get(items)
    if shared is not None:
        return shared
    size = sum(len(k) + len(v) for k, v in items)
    intern = sys.intern
    frozen = MappingProxyType({intern(k): intern(v) for k, v in items})
    if size > MAX_SHARED_METADATA_CHARS:
        return frozen
    if len(_metadata) >= MAX_SHARED_VALUES:
        _metadata.clear()
    _metadata[items] = frozen
    return frozen
