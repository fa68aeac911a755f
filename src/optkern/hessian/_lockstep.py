"""Estimators over a distributed operator end in lockstep on every rank.

A product of ``optkern.distributed.distributed(op, comm)`` is a collective: the ranks agree before
each one that they all make it, of the same vectors (``optkern.distributed.lockstep``). An estimator
refused on one rank before its first product (a bad argument there), or one that finished on some
ranks only (another count of products), would leave the others waiting in a product forever: so
each estimator over such an operator ends with one more agreement, its result or its error.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import numbers
from typing import Callable, TypeVar

import numpy as np

F = TypeVar("F", bound=Callable)


def lockstep_of(op):
    """The lockstep of a distributed operator ``op``, or of the first distributed operator ``op`` is
    built from: a multiple, sum or product of operators (SciPy's composite operators keep their
    operands in ``args``, ``Composed`` in ``A`` and ``B``). None for any other operator. (An
    estimator over ``2 * H`` refused on one rank left the others waiting in a product of ``H``.)"""
    todo, seen = [op], 0
    while todo and seen < 64:  # (a bound, not a depth any composition reaches)
        x = todo.pop(0)
        seen += 1
        lock = getattr(x, "_lockstep", None)
        if lock is not None:
            return lock
        # (a matrix is no composite: its ``A`` is no operand -- SciPy < 1.14's sparse matrices' ``A`` was
        # toarray(), a dense n x n copy made at every estimator call)
        if not hasattr(x, "matvec"):
            continue
        parts = getattr(x, "args", None)
        todo += [a for a in (parts if isinstance(parts, tuple) else ()) if hasattr(a, "matvec")]
        todo += [a for a in (getattr(x, "A", None), getattr(x, "B", None)) if hasattr(a, "matvec")]
    return None


def in_lockstep(name: str, own: tuple = ()) -> Callable[[F], F]:
    """Decorate an estimator whose operator is its first argument, called ``name``. Over a distributed
    operator its other arguments are compared across the ranks at its start (:func:`arguments`),
    but ``own``: those the estimator compares itself, with a message of its own
    (:func:`same_on_every_rank`)."""

    def wrap(fn: F) -> F:
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def run(*args, **kwargs):
            op = args[0] if args else kwargs.get(name)
            lock = lockstep_of(op)
            if lock is None:  # (any operator but a distributed one: nothing to agree)
                return fn(*args, **kwargs)
            with lock.estimator(f"{fn.__name__}()", arguments(sig, args, kwargs, (name, *own))):
                return fn(*args, **kwargs)

        return run  # type: ignore[return-value]

    return wrap


#: Arguments each rank may pass its own: callbacks (rank 0 alone reports progress), and what a
#: rank asks back of the same run (rank 0 alone keeping the eigenvectors: the products are the same).
_RANK_LOCAL = ("progress", "callback", "return_eigenvectors", "return_vectors", "return_ritz")


def arguments(sig: inspect.Signature, args: tuple, kwargs: dict, skip: tuple) -> tuple:
    """An estimator's arguments as ``(name, text)`` pairs, the text the same on every rank for the
    same value: numbers by value (0.1 and np.float64(0.1) alike), arrays by shape, dtype and a hash
    of every entry (a ``v0``, ``b`` or ``grid`` differing in one entry changes the result), other
    objects by type. Callables and ``skip`` left out; arguments the call does not bind too (its own
    TypeError is raised on every rank at its end, as before)."""
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError:
        return ()
    bound.apply_defaults()
    out = []
    for key, v in bound.arguments.items():
        if key in skip or key in _RANK_LOCAL or (callable(v) and not hasattr(v, "shape")):
            continue
        out.append((key, _text(v)))
    return tuple(out)


def _text(v) -> str:
    from ..distributed.agreement import _canon, _host_array

    if isinstance(v, str):
        return repr(v)
    if v is None or isinstance(v, (bool, numbers.Number, np.generic, np.dtype, type)):
        return repr(_canon(v))
    if isinstance(v, (tuple, list)) and all(isinstance(x, (numbers.Number, str)) for x in v):
        return repr(_canon(v))
    a = _host_array(v) if hasattr(v, "shape") and hasattr(v, "dtype") else None
    if a is None:
        return f"a {type(v).__name__}"
    digest = hashlib.blake2b(a.reshape(-1).view(np.uint8), digest_size=6).hexdigest()
    return f"an array of shape {tuple(a.shape)}, {a.dtype} (hash {digest})"


def same_on_every_rank(op, x, name: str, what: str) -> None:
    """Over a distributed operator ``op``: ValueError naming ``name`` on every rank unless every rank
    passed the same ``x`` (``(n,)`` or ``(n, k)``), an input an estimator uses besides its products.
    ``gradient_concentration``'s ``grad`` enters no product: a rank-local gradient (each rank's own
    rows) gave each rank another fraction, no error, where the products' vectors (``seed``, ``v0``)
    raise. Compared through the header a product's vectors go through (``Lockstep.product``: no
    product is made), so a rank that refused an argument before it raises its error on every rank;
    by a hash of all of ``x`` (a product's hashes 32 rows: a gradient differing in a few entries passed)."""
    lock = lockstep_of(op)
    if lock is None:
        return
    from ..distributed.lockstep import OtherVectors  # (the distributed package: only with a distributed op)

    try:
        lock.product(x, whole=True)  # (every row: compared once, where a product samples 32 of them)
    except OtherVectors as e:  # (another rank refused, or is elsewhere: its error as it is)
        raise ValueError(
            f"{name}: rank {e.rank} holds another {what} than rank 0 (every rank must pass the same: "
            "a rank's own rows' gradient is not the operator's, all-reduce it over the ranks first)"
        ) from e
