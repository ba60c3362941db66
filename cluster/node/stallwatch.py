"""Logs every task step that holds a node's event loop for too long (``DISTRO_STALL_LOG_MS``).

trio runs one task step at a time: while a step runs, nothing else on the node moves (no ``/healthz``
answer, no ping to a peer). A :class:`StallWatch` is a trio instrument that times every step and logs
those over the threshold with the task's name (``NodeRuntime.run`` is the core's timer; a peer link's
reader, an HTTP connection's handler...), so a stall seen from outside (a slow ``/healthz``) can be placed.
A collection that runs inside a step is counted in it (``distro.gc`` logs those separately).

The line gives the step's wall time and how much of it the thread spent on a CPU: on a shared machine a
step can be long only because the process waited for a core. It costs four clock reads per task step, so it is off unless ``DISTRO_STALL_LOG_MS`` is set (``scripts/bench
--scale`` sets it to 50).
"""

from __future__ import annotations

import logging
import os
import time

import trio

__all__ = ["ENV", "StallWatch", "from_environment"]

log = logging.getLogger("distro.stall")

ENV = "DISTRO_STALL_LOG_MS"


class StallWatch(trio.abc.Instrument):
    """A trio instrument logging task steps longer than ``threshold_ms``."""

    def __init__(self, threshold_ms: float) -> None:
        self.threshold_s = threshold_ms / 1000
        self.stalls = 0
        self._started = 0.0
        self._cpu_started = 0.0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._started = time.perf_counter()
        self._cpu_started = time.thread_time()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        took = time.perf_counter() - self._started
        if took >= self.threshold_s:
            self.stalls += 1
            cpu = time.thread_time() - self._cpu_started
            log.warning("stall: task %s held the event loop %.0f ms (%.0f ms of it on a CPU)", task.name,
                        took * 1000, cpu * 1000)


def from_environment(environ: dict[str, str] | None = None) -> StallWatch | None:
    """The watch ``DISTRO_STALL_LOG_MS`` asks for (None when unset or empty); ValueError when it is not a
    positive number of milliseconds."""
    text = (os.environ if environ is None else environ).get(ENV, "").strip()
    if not text:
        return None
    try:
        threshold_ms = float(text)
    except ValueError:
        raise ValueError(f"{ENV} must be a number of milliseconds, got {text!r}") from None
    if not threshold_ms > 0:
        raise ValueError(f"{ENV} must be positive, got {text!r}")
    return StallWatch(threshold_ms)
