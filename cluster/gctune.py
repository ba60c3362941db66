"""Garbage-collector settings for a node process (``distro-node`` calls :func:`install`; tests do not).

A node holds hundreds of thousands of long-lived objects (instances, entries, versions) and almost never
makes reference cycles: reference counting frees nearly everything. CPython's default collector still
walks all of them on every full collection, and while a 100k-instance snapshot loads it runs full
collections again and again as the heap grows (it triples the load time). So a node process:

* raises the youngest generation's threshold (fewer young collections during bursts of writes);
* runs without the cyclic collector until it is ready (the snapshot load allocates only data it keeps);
* on becoming ready, moves everything it holds into the permanent generation (``gc.freeze()``), so
  later collections skip the snapshot, and turns the collector back on.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000
"""Allocations minus deallocations that trigger a young collection (CPython's default: 700)."""

_installed = False


def install() -> None:
    """Apply the node-process settings: higher young threshold, collector paused until :func:`on_ready`."""
    global _installed
    _installed = True
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
    gc.disable()


def on_ready() -> None:
    """The node loaded its snapshot: freeze what it holds and resume collecting (no-op unless installed)."""
    if not _installed:
        return
    gc.freeze()
    gc.enable()


def installed() -> bool:
    """True in a node process that called :func:`install`."""
    return _installed
