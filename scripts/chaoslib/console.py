"""The run's terminal output."""

from __future__ import annotations

import sys
import time


class Console:
    """Lines with an elapsed-time prefix and a ticker (rewritten in place on a terminal, else every 5 s)."""

    def __init__(self, quiet: bool = False) -> None:
        self.t0 = time.monotonic()
        self.tty = sys.stdout.isatty()
        self.quiet = quiet
        self._ticker_shown = False
        self._last_tick_line = 0.0

    def stamp(self) -> str:
        return f"[{time.monotonic() - self.t0:7.1f}s]"

    def line(self, msg: str) -> None:
        if self._ticker_shown:
            sys.stdout.write("\r\033[K")
            self._ticker_shown = False
        sys.stdout.write(f"{self.stamp()} {msg}\n")
        sys.stdout.flush()

    def tick(self, msg: str) -> None:
        if self.quiet:
            return
        if self.tty:
            sys.stdout.write(f"\r\033[K{self.stamp()} {msg}")
            sys.stdout.flush()
            self._ticker_shown = True
        elif time.monotonic() - self._last_tick_line >= 5.0:
            self._last_tick_line = time.monotonic()
            self.line(msg)
