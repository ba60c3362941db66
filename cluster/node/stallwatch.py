"""Logs every task step that holds a node's event loop for too long (``DISTRO_STALL_LOG_MS``).

trio runs one task step at a time: while a step runs, nothing else on the node moves (no ``/healthz``
answer, no ping to a peer). A :class:`StallWatch` is a trio instrument that times every step and logs
those over the threshold with the task's name (``NodeRuntime.run`` is the core's timer; a peer link's
reader, an HTTP connection's handler...), so a stall seen from outside (a slow ``/healthz``) can be placed.
A collection that runs inside a step is counted in it (``distro.gc`` logs those separately).

A request waits for more than one step: trio looks at its sockets only between batches of steps (every
task that was ready when it last looked runs once, then it looks again). So the watch also times each
batch, from one look at the sockets to the next, and logs a batch over the threshold with its number of
steps and its longest step: several steps each under the threshold can add up to a stall that no step
line shows.

The line gives the step's wall time and how much of it the thread spent on a CPU: on a shared machine a
step can be long only because the process waited for a core. It costs six clock reads per task step, so
it is off unless ``DISTRO_STALL_LOG_MS`` is set (``scripts/bench --scale`` sets it to 50).
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
    """A trio instrument logging task steps, and batches of steps between two looks at the sockets,
    longer than ``threshold_ms``."""

    def __init__(self, threshold_ms: float) -> None:
        self.threshold_s = threshold_ms / 1000
        self.stalls = 0
        self.batch_stalls = 0
        self._started = 0.0
        self._cpu_started = 0.0
        self._batch_started = 0.0
        self._batch_cpu_started = 0.0
        self._batch_steps = 0
        self._longest_s = 0.0
        self._longest_name = ""

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._started = time.perf_counter()
        self._cpu_started = time.thread_time()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        took = time.perf_counter() - self._started
        self._batch_steps += 1
        if took > self._longest_s:
            self._longest_s = took
            self._longest_name = task.name
        if took >= self.threshold_s:
            self.stalls += 1
            cpu = time.thread_time() - self._cpu_started
            log.warning("stall: task %s held the event loop %.0f ms (%.0f ms of it on a CPU)", task.name,
                        took * 1000, cpu * 1000)

    def after_io_wait(self, timeout: float) -> None:
        self._batch_started = time.perf_counter()
        self._batch_cpu_started = time.thread_time()
        self._batch_steps = 0
        self._longest_s = 0.0
        self._longest_name = ""

    def before_io_wait(self, timeout: float) -> None:
        if not self._batch_started:
            return  # the first look at the sockets: no batch before it
        took = time.perf_counter() - self._batch_started
        if took >= self.threshold_s:
            self.batch_stalls += 1
            cpu = time.thread_time() - self._batch_cpu_started
            log.warning("stall: the event loop ran %.0f ms (%.0f ms of it on a CPU) between two looks at its "
                        "sockets: %d task steps, the longest %s (%.0f ms)", took * 1000, cpu * 1000,
                        self._batch_steps, self._longest_name, self._longest_s * 1000)


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
