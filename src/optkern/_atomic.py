"""A native call and the Python counters that record it, as one unit under Ctrl-C.

A kernel runs without the GIL and cannot be interrupted: a SIGINT arriving meanwhile is raised as
KeyboardInterrupt the moment the call returns, before the next line counts what it did. An
optimizer's arrays then held step n + 1 while its state said n (Adam repeats a bias correction
after a checkpoint saved in ``except KeyboardInterrupt``), and a step of several runs could stop
between two of them. Inside ``Uninterrupted()`` (main thread only: Python runs signal handlers
there alone) SIGINT is recorded instead, and the handler that was installed runs on exit, once
the step is whole -- the KeyboardInterrupt then comes from there. Only steps of at least
``DEFER_SIGINT_ELEMENTS`` elements defer (the cost below); smaller ones keep the window.
"""

from __future__ import annotations

import contextlib
import signal
import threading

_MAIN = threading.main_thread()
#: steps that write at least this many elements defer SIGINT (``Uninterrupted``); below it the two
#: handler swaps (~2 us idle, ~10 us on a loaded 2-core VM) would be a noticeable part of the step
#: (a 100-float Adam step: ~7-20 us), and the kernels' window for a Ctrl-C is as short
DEFER_SIGINT_ELEMENTS = 1 << 18
NO_DEFER = contextlib.nullcontext()  # (reusable: it holds nothing)


def deferring(elements: int):
    """The context a step over ``elements`` elements runs in: ``Uninterrupted()`` from
    ``DEFER_SIGINT_ELEMENTS`` on, else ``NO_DEFER`` (the handler swaps cost more than the window)."""
    return Uninterrupted() if elements >= DEFER_SIGINT_ELEMENTS else NO_DEFER


class Uninterrupted:
    """Defer SIGINT's Python handler to the end of the block (a no-op off the main thread)."""

    __slots__ = ("_old", "_got")

    def __enter__(self) -> Uninterrupted:
        self._old = None
        self._got: tuple | None = None
        if threading.current_thread() is _MAIN:
            try:
                self._old = signal.signal(signal.SIGINT, self._record)
            except ValueError:  # (an interpreter that is not the main one)
                self._old = None
        return self

    def _record(self, signum, frame) -> None:
        if self._got is None:
            self._got = (signum, frame)

    def __exit__(self, *exc) -> None:
        old = self._old
        if old is None:
            return
        signal.signal(signal.SIGINT, old)
        got = self._got
        if got is not None and callable(old):  # (SIG_IGN / SIG_DFL are ints: ignored, as they were)
            old(*got)  # (Python's default handler raises KeyboardInterrupt here)
