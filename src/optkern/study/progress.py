"""A dependency-free progress bar for long loops (stderr, one line per run)."""

from __future__ import annotations

import sys
import time


class ProgressBar:
    """``with ProgressBar(total, label) as bar: bar.update(n, note)``.

    Redraws in place on a terminal; elsewhere (CI logs, pipes) prints only the
    final line so logs stay short.
    """

    def __init__(self, total: int, label: str, stream=None, width: int = 28, enabled: bool = True):
        self.total = max(int(total), 1)
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self.enabled = enabled
        self.done = 0
        self.note = ""
        self.t0 = time.perf_counter()
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last = 0.0

    def __enter__(self):
        return self

    def update(self, n: int = 1, note: str = "") -> None:
        self.done = min(self.done + n, self.total)
        self.note = note or self.note
        now = time.perf_counter()
        if self._tty and self.enabled and (now - self._last > 0.05 or self.done == self.total or n == 0):
            self._last = now
            self._draw("\r")

    def _draw(self, lead: str) -> None:
        frac = self.done / self.total
        fill = int(round(frac * self.width))
        bar = "#" * fill + "-" * (self.width - fill)
        el = time.perf_counter() - self.t0
        self.stream.write(
            f"{lead}{self.label:<22} [{bar}] {100 * frac:5.1f}% {el:6.1f}s {self.note}\x1b[K"
            if self._tty
            else f"{self.label:<22} [{bar}] {100 * frac:5.1f}% {el:6.1f}s {self.note}"
        )
        self.stream.flush()

    def __exit__(self, *exc):
        if exc[0] is not None and issubclass(exc[0], KeyboardInterrupt):  # (Ctrl-C, SIGTERM in a study)
            self.note = "interrupted"  # not the note of the step it stopped in, as if still at it
        if self.enabled:
            if self._tty:
                self._draw("\r")
            else:
                self._draw("")
            self.stream.write("\n")
            self.stream.flush()
        return False
