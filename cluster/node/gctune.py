"""Garbage-collector settings for a node process (``distro-node`` calls :func:`install`; tests do not).

A node holds hundreds of thousands of long-lived objects (instances, entries, versions) and almost never
makes reference cycles: reference counting frees nearly everything. CPython's default collector still
walks all of them on every full collection, and while a 100k-instance snapshot loads it runs full
collections again and again as the heap grows (it triples the load time). So a node process:

* raises the youngest generation's threshold (fewer young collections during bursts of writes);
* runs without the cyclic collector until it is ready (the snapshot load allocates only data it keeps);
* on becoming ready, moves everything it holds into the permanent generation (``gc.freeze()``), so
  later collections skip the snapshot, and turns the collector back on;
* after every full collection freezes the survivors too (from the runtime's timer task,
  :func:`maintain`), so the next full collection walks only what was allocated since instead of the whole
  registry (a 130 ms pause per node at 120k instances, every ~40 s while registrations kept coming);
* every ``UNFREEZE_INTERVAL_S`` unfreezes everything once, so a reference cycle that became garbage after
  it was frozen is still collected eventually;
* logs every collection that pauses it for more than 50 ms.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

__all__ = ["SLOW_COLLECTION_S", "UNFREEZE_INTERVAL_S", "YOUNG_THRESHOLD", "install", "installed", "maintain", "on_ready"]

log = logging.getLogger("distro.gc")

YOUNG_THRESHOLD = 5_000
"""Allocations minus deallocations that trigger a young collection (CPython's default: 700)."""

SLOW_COLLECTION_S = 0.05
"""Collections that pause the node longer than this are logged."""

UNFREEZE_INTERVAL_S = 600.0
"""How often everything frozen is handed back to the collector (one full, slower collection follows)."""

_installed = False
_started = 0.0
_freeze_pending = False
_last_unfreeze = 0.0


def _time_collections(phase: str, info: dict[str, Any]) -> None:
    global _started, _freeze_pending
    if phase == "start":
        _started = time.perf_counter()
        return
    if info.get("generation") == 2:
        _freeze_pending = True
    took = time.perf_counter() - _started
    if took >= SLOW_COLLECTION_S:
        log.info("gc: generation %d collection paused the node %.0f ms (%d collected)",
                 info.get("generation", -1), took * 1000, info.get("collected", 0))


def install() -> None:
    """Apply the node-process settings: higher young threshold, collector paused until :func:`on_ready`."""
    global _installed, _last_unfreeze
    _installed = True
    _last_unfreeze = time.monotonic()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
    gc.disable()
    gc.callbacks.append(_time_collections)


def on_ready() -> None:
    """The node loaded its snapshot: freeze what it holds and resume collecting (no-op unless installed)."""
    if not _installed:
        return
    gc.freeze()
    gc.enable()


def maintain() -> None:
    """Freeze the survivors of the last full collection; unfreeze all now and then (no-op unless installed).

    Called by the runtime's timer task, never from inside a collection.
    """
    global _freeze_pending, _last_unfreeze
    if not _installed:
        return
    now = time.monotonic()
    if now - _last_unfreeze >= UNFREEZE_INTERVAL_S:
        _last_unfreeze = now
        _freeze_pending = False
        gc.unfreeze()
    elif _freeze_pending:
        _freeze_pending = False
        gc.freeze()


def installed() -> bool:
    """True in a node process that called :func:`install`."""
    return _installed
