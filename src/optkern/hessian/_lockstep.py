"""Estimators over a distributed operator end in lockstep on every rank.

A product of ``optkern.distributed.distributed(op, comm)`` is a collective: the ranks agree before
each one that they all make it, of the same vectors (``optkern.distributed.lockstep``). An estimator
refused on one rank before its first product (a bad argument there), or one that finished on some
ranks only (another count of products), would leave the others waiting in a product forever: so
each estimator over such an operator ends with one more agreement, its result or its error.
"""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)


def in_lockstep(name: str) -> Callable[[F], F]:
    """Decorate an estimator whose operator is its first argument, called ``name``."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def run(*args, **kwargs):
            op = args[0] if args else kwargs.get(name)
            lock = getattr(op, "_lockstep", None)
            if lock is None:  # (any operator but a distributed one: nothing to agree)
                return fn(*args, **kwargs)
            with lock.estimator():
                return fn(*args, **kwargs)

        return run  # type: ignore[return-value]

    return wrap
