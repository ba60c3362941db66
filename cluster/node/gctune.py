"""Garbage-collector settings for a node process (``distro-node`` calls :func:`install`; tests do not).

A node holds hundreds of thousands to millions of long-lived objects (an ``Entry`` and an ``Instance`` per
stored instance: two tracked objects each) and almost never makes reference cycles: reference counting
frees nearly everything. CPython's collector still walks every tracked object on each full collection:
about 1.3 us per object on this machine, so 2.7 s for a node holding 1,000,000 instances (measured in one
process, ``gc.collect()`` over 2.0M tracked objects) -- longer than a peer's ``peer_timeout_ms`` (3 s with
the machine busy), and the peers declare the node down and take its services. A pause of the event loop
must stay under 100 ms, so no collection may ever walk the stored data. A node process therefore:

* runs without the cyclic collector until it is ready (the snapshot load allocates only data it keeps),
  then moves everything it holds into the permanent generation (``gc.freeze()``) and turns it back on;
* collects only what is young: the youngest generation every ``YOUNG_THRESHOLD`` net allocations, the
  middle one every ``MIDDLE_THRESHOLD`` young collections (at most about 7,500 objects), and never the
  oldest on its own (``OLD_THRESHOLD``). Smaller is cheaper per object, not only per collection: with
  5,000 and 4 the middle collections of a 1M load took 18-29 ms of CPU each (12-20 ms for a 100k load
  into three nodes in one process, where 2,500 and 2 took 2-5 ms and the collector's total CPU went down,
  not up: fewer passes over each object before it is frozen). The price: a reference cycle must die within
  about 7,500 net allocations (was 20,000) not to be frozen, where only :class:`FrozenHeapWatch` finds it;
* after every middle collection freezes its survivors (from the runtime's timer task, :func:`maintain`,
  after a young collection of what was allocated since, so nothing is frozen unexamined): an object is
  walked by the collector two or three times in its life, whatever the registry holds;
* hands the frozen heap back to the collector (``gc.unfreeze()`` and one full collection) only on
  evidence that it holds garbage (:class:`FrozenHeapWatch`, checked every ``CHECK_INTERVAL_S``): the
  small-object blocks the process holds (``sys.getallocatedblocks()``, a walk over arenas, not objects)
  per stored entry grew by ``GROWTH`` over the lowest value seen since the last full collection, by more
  than ``MIN_EXCESS_BLOCKS``. Garbage that reaches the frozen set is reference cycles that were alive when
  frozen and died later (a connection's or a task's objects); the data itself is freed by reference
  counting and takes its blocks with it;
* logs every collection that pauses it for more than 50 ms.

There is no periodic unfreeze any more (it was every 10 minutes: a 3 s pause at 1M instances and a flap of
ownership each time). The risk this takes is memory: cyclic garbage in the frozen set is kept until it
amounts to ``GROWTH`` of what the stored data holds in small blocks (or ``MIN_EXCESS_BLOCKS``, about
50-100 MB, for a small registry); whatever larger buffers that garbage references (``bytes`` over 512 B
come from malloc, not from blocks) is kept with it and not counted. When the watch fires at a large
registry the full collection pauses the node as above (logged at WARNING with what it freed); a registry
that shrinks a lot also fires it once (more blocks per entry), while collections are cheap.
"""

from __future__ import annotations

import gc
import logging
import sys
import time
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CHECK_INTERVAL_S",
    "GROWTH",
    "MIDDLE_THRESHOLD",
    "MIN_EXCESS_BLOCKS",
    "OLD_THRESHOLD",
    "SLOW_COLLECTION_S",
    "YOUNG_THRESHOLD",
    "FrozenHeapWatch",
    "install",
    "installed",
    "maintain",
    "on_ready",
]

log = logging.getLogger("distro.gc")

YOUNG_THRESHOLD = 2_500
"""Allocations minus deallocations that trigger a young collection (CPython's default: 700)."""

MIDDLE_THRESHOLD = 2
"""Young collections per middle collection (CPython's default: 10); its survivors are frozen after it."""

OLD_THRESHOLD = 1_000_000_000
"""Middle collections per full collection: never, in practice (the frozen heap is the old generation)."""

SLOW_COLLECTION_S = 0.05
"""Collections that pause the node longer than this are logged."""

CHECK_INTERVAL_S = 30.0
"""How often :class:`FrozenHeapWatch` looks at the process's blocks (one call of ~0.1 ms)."""

GROWTH = 0.25
"""Blocks per stored entry above the lowest value since the last full collection that count as garbage."""

MIN_EXCESS_BLOCKS = 1_000_000
"""Excess blocks tolerated whatever the registry's size (bounded buffers and in-flight requests come and go)."""


@dataclass(slots=True)
class FrozenHeapWatch:
    """Decides from counts alone when the frozen heap should be collected (no clock, no gc calls).

    The process's small-object blocks are modelled as ``base_blocks`` (the program, before any data) plus
    ``per_entry`` blocks per stored entry. ``per_entry`` is the lowest ratio observed since the last full
    collection (garbage only ever raises it; a lower one means the earlier observation still held
    transient objects). :meth:`observe` says to collect when the blocks exceed that model by ``growth`` of
    the entries' share and by at least ``min_excess_blocks``.
    """

    base_blocks: int
    growth: float = GROWTH
    min_excess_blocks: int = MIN_EXCESS_BLOCKS
    per_entry: float | None = None

    def excess_blocks(self, blocks: int, entries: int) -> int:
        """Blocks above what the program and ``entries`` stored entries explain."""
        explained = self.per_entry * entries if self.per_entry is not None and entries > 0 else 0.0
        return int(blocks - self.base_blocks - explained)

    def observe(self, blocks: int, entries: int) -> bool:
        """One check: True when the frozen heap should be unfrozen and collected now."""
        if entries > 0:
            ratio = max(0.0, (blocks - self.base_blocks) / entries)
            if self.per_entry is None or ratio < self.per_entry:
                self.per_entry = ratio
                return False
        per_entry = self.per_entry or 0.0
        allowed = max(self.growth * per_entry * max(entries, 0), float(self.min_excess_blocks))
        return self.excess_blocks(blocks, entries) > allowed

    def collected(self, blocks: int, entries: int) -> None:
        """A full collection just ran: what the process holds now is the new reference."""
        self.per_entry = max(0.0, (blocks - self.base_blocks) / entries) if entries > 0 else None


_installed = False
_started = 0.0
_cpu_started = 0.0
_freeze_pending = False
_next_check = 0.0
_watch: FrozenHeapWatch | None = None


def _time_collections(phase: str, info: dict[str, Any]) -> None:
    global _started, _cpu_started, _freeze_pending
    if phase == "start":
        _started = time.perf_counter()
        _cpu_started = time.thread_time()
        return
    if info.get("generation", 0) >= 1:
        _freeze_pending = True
    took = time.perf_counter() - _started
    if took >= SLOW_COLLECTION_S:
        log.info("gc: generation %d collection paused the node %.0f ms (%.0f ms on a CPU; %d collected)",
                 info.get("generation", -1), took * 1000, (time.thread_time() - _cpu_started) * 1000,
                 info.get("collected", 0))


def install() -> None:
    """Apply the node-process settings: thresholds, collector paused until :func:`on_ready`."""
    global _installed, _watch
    _installed = True
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
    gc.disable()
    gc.callbacks.append(_time_collections)
    _watch = FrozenHeapWatch(sys.getallocatedblocks())


def on_ready() -> None:
    """The node loaded its snapshot: freeze what it holds and resume collecting (no-op unless installed)."""
    global _next_check
    if not _installed:
        return
    gc.freeze()
    gc.enable()
    _next_check = time.monotonic() + CHECK_INTERVAL_S


def maintain(entries: int) -> None:
    """Freeze the survivors of the last middle collection; collect the frozen heap on evidence of garbage
    (``entries``: how many entries the node stores). No-op unless installed.

    Called by the runtime's timer task, never from inside a collection.
    """
    global _freeze_pending, _next_check
    if not _installed or not gc.isenabled():
        return
    if _freeze_pending:
        _freeze_pending = False
        gc.collect(0)  # what was allocated since the middle collection, so nothing is frozen unexamined
        gc.freeze()
    now = time.monotonic()
    if now < _next_check or _watch is None:
        return
    _next_check = now + CHECK_INTERVAL_S
    blocks = sys.getallocatedblocks()
    if _watch.observe(blocks, entries):
        _collect_frozen(blocks, entries)


def _collect_frozen(blocks: int, entries: int) -> None:
    assert _watch is not None
    excess = _watch.excess_blocks(blocks, entries)
    started = time.perf_counter()
    gc.unfreeze()
    found = gc.collect()
    gc.freeze()
    after = sys.getallocatedblocks()
    _watch.collected(after, entries)
    log.warning("gc: %d blocks over what %d stored entries explain: collected the frozen heap in %.0f ms "
                "(%d unreachable objects, %d blocks freed)", excess, entries,
                (time.perf_counter() - started) * 1000, found, blocks - after)


def installed() -> bool:
    """True in a node process that called :func:`install`."""
    return _installed
