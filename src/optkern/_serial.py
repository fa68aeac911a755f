"""One optimizer stepped from several Python threads: one call at a time.

optkern's kernels release the GIL, so two threads stepping the same optimizer ran its kernels at
the same time over the same params and state: each read the moments the other was writing, and
updates were lost (3 threads x 20 Adam steps of one gradient matched 60 steps in one thread in 0 of
5 runs; L-BFGS raised ``float()`` of None from one thread). torch promises nothing there; what a
user of threads expects is what a lock would give, and an uncontended one costs about a microsecond
(0.8 us a call, this 2-vCPU VM at load 9) against a step's tens. So ``step``, ``state_dict``,
``load_state_dict`` and ``add_param_group`` hold the optimizer's own lock: the calls of several
threads run in some order, each whole. Different optimizers keep stepping at once.
``swa.AveragedParams`` likewise (two updates at once took the same weight and tore the average),
and optkern.torch's optimizers (their own native calls: 3 threads x 10 steps of a 1M-float Adam
matched 30 steps in one thread in 0 of 6 runs), and ``amp.GradScaler`` (an ``update()`` dropped the
flag another thread's ``unscale_`` recorded while it ran: that inf never backed the scale off).
Reentrant: a closure may read ``state_dict``, and an optimizer's methods call one another.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from typing import TypeVar, cast

#: The attribute that holds an object's lock, as ``(fork generation, lock)``; pickles and copies leave
#: it out (``unlocked``), so that a copy makes a lock of its own, never one held by the original's threads.
KEY = "_step_lock"

_making = threading.Lock()

# Forks since the module loaded (os.register_at_fork below). A child forked while another thread of the
# parent was inside a step inherits the lock held, by a thread the child does not have: its first step
# waited for ever. A lock made before the last fork is replaced (the child's only thread holds none).
_generation = 0


def lock_of(obj):
    """``obj``'s reentrant lock, made at its first use in this process (a copy, an optimizer unpickled
    or one inherited through fork makes its own)."""
    entry = obj.__dict__.get(KEY)
    if entry is None or entry[0] != _generation:
        with _making:  # (two threads' first calls must not make two locks)
            entry = obj.__dict__.get(KEY)
            if entry is None or entry[0] != _generation:
                entry = obj.__dict__[KEY] = (_generation, threading.RLock())
    return entry[1]


def _after_fork_in_child() -> None:
    global _generation, _making
    _generation += 1
    _making = threading.Lock()  # (another thread may have held it at the fork)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def unlocked(state: dict) -> dict:
    """``state`` (an object's ``vars``) without its lock, which neither pickles nor copies."""
    return {k: v for k, v in state.items() if k != KEY}


F = TypeVar("F", bound=Callable)


def serialized(fn: F) -> F:
    """Method decorator: the call holds the object's lock (see the module's docstring)."""

    @functools.wraps(fn)
    def call(self, *args, **kwargs):
        with lock_of(self):
            return fn(self, *args, **kwargs)

    return cast(F, call)
