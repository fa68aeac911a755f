"""Version counters of the torch tensors a public call wrote through NumPy / CuPy views.

A call given a torch tensor works on its array view (``_backend.as_array``), which autograd does
not see: without a bump of the tensor's version counter, a graph that had saved the tensor before
the call differentiated its new values silently, where torch refuses the backward after an
in-place write. Optimizer steps bump their params (``optim.optimizer._bump_torch_versions``);
:func:`bumps_written` does it for the arrays other calls write (``out=``, running buffers).
"""

from __future__ import annotations

import functools
import inspect
import sys

import numpy as np

from . import _backend
from .optim._given import _bump_torch_versions

#: argument types that are never an iterator to read once (the common case, told by one type look-up)
_NOT_ITERATORS = frozenset({list, tuple, np.ndarray, type(None)})


def _true(value) -> bool:
    """Whether a mode flag that ``fn`` took (a bool, Python's or NumPy's: ``_scalars.flag``) says True.
    (``is True`` read NumPy's True as False: running buffers written with ``training=np.True_`` kept
    their torch versions.)"""
    return isinstance(value, (bool, np.bool_)) and bool(value)


def bumps_written(*names: str, when: str | None = None, also: tuple = (), returns: str | None = None):
    """Decorator: after ``fn`` returns, bump the torch tensors among its arguments ``names`` and
    ``also`` (positional or keyword; arrays, or lists / tuples of them). ``when``: the name of a
    flag argument (its default if not given) that must be True for ``names`` to be written
    (``training``: eval mode only reads the running buffers); ``also`` are written whatever it
    says (``out``). A call that raises (its checks refuse it before anything is written) bumps
    nothing. The arguments are picked by position, not bound: a call on NumPy arrays pays a
    few hundred nanoseconds. ``returns``: the name of the argument (``out``) the call returns when
    given one: the caller's object, not the NumPy / CuPy view ``fn`` wrote and returned
    (:func:`given_out`); a tuple result (the norms' ``(y, saved)``, ``(dx, dweight, dbias)``) has
    its first element replaced, the rest kept."""

    def wrap(fn):
        params = inspect.signature(fn).parameters
        extra = (*((when,) if when else ()), *((returns,) if returns else ()))
        at = {n: list(params).index(n) for n in (*names, *also, *extra)}
        flag_default = params[when].default if when else None
        written = (*names, *also)

        def pick(args, kwargs, n, default=None):
            i = at[n]
            return args[i] if i < len(args) else kwargs.get(n, default)

        @functools.wraps(fn)
        def call(*args, **kwargs):
            # an iterable other than a list or tuple (a generator of grads) read once, into a list that
            # fn writes and the bump below reads: fn's pass used a generator up, and the tensors it
            # wrote kept their versions (a saved graph differentiated the clipped values silently)
            for n in written:
                i = at[n]
                v = args[i] if i < len(args) else kwargs.get(n)
                if type(v) not in _NOT_ITERATORS and (r := _backend.read_once(v)) is not v:
                    if i < len(args):
                        args = (*args[:i], r, *args[i + 1 :])
                    else:
                        kwargs[n] = r
            result = fn(*args, **kwargs)
            torch = sys.modules.get("torch")  # (no tensor without torch)
            if torch is not None:
                picked = [pick(args, kwargs, n) for n in also]
                if when is None or _true(pick(args, kwargs, when, flag_default)):
                    picked += [pick(args, kwargs, n) for n in names]
                # (a list or tuple argument, clip's grads, is looked into)
                flat = [t for a in picked for t in (a if isinstance(a, (list, tuple)) else (a,))]
                tensors = [a for a in flat if isinstance(a, torch.Tensor)]
                if tensors:
                    _bump_torch_versions(tensors)
            if returns is not None:
                given = pick(args, kwargs, returns)
                if given is not None:
                    if type(result) is tuple:  # (y / dx first: the one written into out)
                        if result[0] is given:  # (a NumPy / CuPy out: returned as it is)
                            return result
                        return (given_out(given, result[0], bump=False), *result[1:])
                    return given_out(given, result, bump=False)
            return result

        return call

    return wrap


def given_out(given, view, shape=None, bump: bool = True):
    """What a call that wrote its result into ``view`` (the NumPy / CuPy view of the caller's ``out``,
    ``given``) returns: ``given`` itself, as NumPy's ``out=`` functions return ``out`` -- a torch
    tensor in, that tensor out, not the view (an ndarray where the caller holds a tensor) -- and
    ``shape``, where given, as the caller's own ``reshape`` makes it (``view``'s for an exporter
    without one). A torch tensor's version counter is bumped (``bump``; not where
    :func:`bumps_written` does it): written as by an in-place torch op."""
    if given is view:  # (a NumPy / CuPy out: nothing to do)
        return view if shape is None else view.reshape(shape)
    torch = sys.modules.get("torch")
    if bump and torch is not None and isinstance(given, torch.Tensor):
        _bump_torch_versions([given])
    if shape is None:
        return given
    return given.reshape(shape) if hasattr(given, "reshape") else view.reshape(shape)
