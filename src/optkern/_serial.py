"""One optimizer stepped from several Python threads: one call at a time.

optkern's kernels release the GIL, so two threads stepping the same optimizer ran its kernels at
the same time over the same params and state: each read the moments the other was writing, and
updates were lost (3 threads x 20 Adam steps of one gradient matched 60 steps in one thread in 0 of
5 runs; L-BFGS raised ``float()`` of None from one thread). torch promises nothing there; what a
user of threads expects is what a lock would give, and an uncontended lock costs well under a
microsecond against a step's tens. So ``step``, ``state_dict``, ``load_state_dict`` and
``add_param_group`` hold the optimizer's own lock: the calls of several threads run in some order,
each whole. Different optimizers keep stepping at once. ``swa.AveragedParams`` likewise (two updates
at once took the same weight and tore the average). Reentrant: a closure may read
``state_dict``, and an optimizer's methods call one another.
"""

from __future__ import annotations

import functools
import threading

#: The attribute that holds an object's lock; pickles and copies leave it out (``unlocked``), so that
#: a copy makes a lock of its own, never one held by the original's threads.
KEY = "_step_lock"

_making = threading.Lock()


def lock_of(obj):
    """``obj``'s reentrant lock, made at its first use (a copy, or an optimizer unpickled, has none)."""
    lock = obj.__dict__.get(KEY)
    if lock is None:
        with _making:  # (two threads' first calls must not make two locks)
            lock = obj.__dict__.setdefault(KEY, threading.RLock())
    return lock


def unlocked(state: dict) -> dict:
    """``state`` (an object's ``vars``) without its lock, which neither pickles nor copies."""
    return {k: v for k, v in state.items() if k != KEY}


def serialized(fn):
    """Method decorator: the call holds the object's lock (see the module's docstring)."""

    @functools.wraps(fn)
    def call(self, *args, **kwargs):
        with lock_of(self):
            return fn(self, *args, **kwargs)

    return call
