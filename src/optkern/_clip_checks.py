"""The argument checks of :mod:`optkern.clip`: the gradients' dtypes, layouts and memory spans
(none shared: an array twice would be scaled twice), None entries skipped as torch skips a None
``.grad``, the caller's ``out`` buffer, and the native calls' errors named as the caller wrote them
(``grads[i]``, ``i`` in the caller's list)."""

from __future__ import annotations

import contextlib
import functools
import math
import operator
import re

import numpy as np

from . import _backend
from ._array_checks import byte_span, first_sharing


def _check_grads(grads, mod, index: list | None) -> None:
    """The native checks of ``grads`` (written in place), naming ``grads[i]`` (``i`` in the
    caller's list: ``index``, see ``_live``), by ``mod``'s (the grads' native module) pre-step
    check where it takes them.

    Done before the first native call: clip_grad_norm_'s first call writes ``out`` and only
    its second one would see a read-only or aliasing gradient.
    """
    check_dtype(grads, index)
    dt = grads[0].dtype
    names = _names(index, len(grads))
    if mod is not _backend.cpu or all(type(g) is np.ndarray for g in grads):
        # the optimizers' native pre-step check, the same checks and wording: ~0.1 us an array
        # against ~10 us in Python (2 ms of a 6 ms clip of 200 arrays of 16M floats); CuPy
        # arrays: ~5 us in Python on a GPU machine (1 ms over 200 arrays)
        with _backend.read_only_explained(grads, names):  # (an unversioned DLPack view: why)
            mod.precheck_step_([(dt, grads, names, [], [], [])])
        return
    spans = []  # (NumPy subclasses: the same checks in Python)
    for i, g in enumerate(grads):
        _backend.check_written(g, dt, names[i])
        lo, hi = byte_span(g)
        if hi > lo:
            spans.append((lo, hi, i if index is None else index[i]))
    _check_no_overlap(spans, grads, index)


def check_dtype(grads: list, index: list | None) -> None:
    """``grads[0]``'s dtype one that clipping takes (the others must match it: the native checks
    name them), else the one TypeError every clipping call raises, naming ``grads[i]`` (``i`` in the
    caller's list). Checked here, not left to the native calls: theirs says "float32 or float64",
    the dtypes they take, leaving out the half ones clipped through float32 copies."""
    dt = grads[0].dtype
    if not _backend.is_float_dtype(dt):
        raise TypeError(f"grads[{0 if index is None else index[0]}]: expected {GRAD_DTYPES}, got {dt}")


GRAD_DTYPES = "float32, float64, float16 or bfloat16"


@functools.lru_cache(maxsize=8)
def _cached_names(n: int) -> tuple:
    return tuple(f"grads[{i}]" for i in range(n))


def _names(index: list | None, n: int) -> list:
    """["grads[i]" for each kept index] (``index`` None: 0 .. n-1, a fresh list of cached strings)."""
    return list(_cached_names(n)) if index is None else [f"grads[{i}]" for i in index]


_is_none = functools.partial(operator.is_, None)


def _live(grads: list) -> tuple[list, list | None]:
    """``grads`` without its None entries (parameters without a gradient: skipped, as torch's
    clipping skips a None ``.grad``) and each kept array's index in ``grads`` (None: all kept)."""
    if not any(map(_is_none, grads)):  # (one C-level pass)
        return grads, None
    index = [i for i, g in enumerate(grads) if g is not None]
    return [grads[i] for i in index], index


def _check_no_overlap(spans, grads: list, index: list | None = None) -> None:
    """Raise if two of ``grads`` share an element: one array twice would be scaled (or summed)
    twice. ``spans``: their nonempty (lo, hi, i) byte spans; the common case, spans apart, is
    decided by them alone. Meeting spans are tested exactly (``first_sharing``): views that
    interleave without sharing an element (``a[::2]`` and ``a[1::2]``, a matrix's column blocks)
    were refused. ``index``: each array's index in the caller's list (see ``_live``)."""
    spans.sort()
    far = None  # the span reaching furthest so far
    for s in spans:
        if far is not None and s[0] < far[1]:
            break
        if far is None or s[1] > far[1]:
            far = s
    else:
        return
    pair = first_sharing(grads)
    if pair is not None:
        first, later = pair if index is None else (index[pair[0]], index[pair[1]])
        raise ValueError(
            f"grads[{later}] shares memory with grads[{first}] (aliasing arrays cannot be updated in place)"
        )


_NATIVE_NAME = re.compile(r"\barrays(?=[\[:])")
_NATIVE_INDEX = re.compile(r"\bgrads\[(\d+)\]")


@contextlib.contextmanager
def _grads_named(index: list | None = None, grads: list | None = None):
    """Errors of the native calls say ``grads`` where they say ``arrays`` (their parameter's
    name), and the index in the caller's list (``index``: see ``_live``); ``grads`` (the arrays
    the call writes): a read-only one's refusal says why for an unversioned DLPack view."""
    try:
        yield
    except (TypeError, ValueError) as e:
        msg = _NATIVE_NAME.sub("grads", str(e))
        if index is not None:
            msg = _NATIVE_INDEX.sub(lambda m: f"grads[{index[int(m.group(1))]}]", msg)
        named = e if msg == str(e) else type(e)(msg)
        if grads is not None and isinstance(named, ValueError):
            named = _backend.hint_read_only(named, grads, _names(index, len(grads)))
        if named is e:
            raise
        raise named from None


def _norm_out(out, like, xp):
    """The caller's 1-element float64 buffer for the norm, checked."""
    if type(out) is not type(like):
        raise TypeError(
            f"out: expected a {type(like).__module__}.{type(like).__name__} like grads, got {type(out).__name__}"
        )
    if out.dtype != np.float64 or out.size != 1 or not out.flags.c_contiguous:
        raise ValueError(
            f"out: expected a contiguous 1-element float64 array, got {out.dtype} of shape {tuple(out.shape)}"
        )
    if isinstance(out, np.ndarray) and not out.flags.writeable:  # (CuPy arrays are always writable)
        raise _backend.read_only("out", out)
    if xp is not np and out.device != like.device:
        raise ValueError(f"out: on device {out.device.id}, grads on device {like.device.id}")
    return out.reshape(1)


class NonFiniteNormError(ValueError, RuntimeError):
    """``clip_grad_norm_(..., error_if_nonfinite=True)`` found a NaN or infinite total norm: a
    ValueError naming the array (optkern's contract) that is also the RuntimeError torch's
    ``clip_grad_norm_`` raises, so code written for torch catches it too."""


def _refuse_nonfinite(grads, index, mod, p, buf, prev, total, restore: bool, verb="clip", returned=None) -> None:
    """``NonFiniteNormError`` naming the first array with a NaN or inf where the norm in ``buf``
    (``total``: its float, None on the GPU, read here: a sync) is not finite, or, ``returned`` a
    NumPy float dtype the caller hands the norm back in (optkern.torch: the grads' float32), where
    it is not finite in that dtype (finite float32 grads whose norm overflows it: torch's norm is
    inf, and its RuntimeError); ``restore``: ``buf`` (the caller's ``out``) gets its value before
    back, as an error leaves every argument as it was."""
    value = float(buf[0]) if total is None else total
    with np.errstate(over="ignore"):  # (the overflow is what is asked)
        beyond = returned is not None and math.isfinite(value) and not np.isfinite(np.dtype(returned).type(value))
    if math.isfinite(value) and not beyond:
        return
    if restore:
        buf[...] = prev
    if beyond:
        raise NonFiniteNormError(
            f"grads: the total norm of order {p} is {value}, beyond {np.dtype(returned)}'s range: inf as the norm "
            f"returned, in the grads' dtype (pass error_if_nonfinite=False to {verb} anyway)"
        )
    # (no grads: a rank without any, whose global norm another rank's grads made non-finite)
    flag = (_backend.array_module(grads[0]) if grads else np).empty(1, dtype=np.float64)
    for name, g in zip(_names(index, len(grads)), grads):
        mod.all_finite([g], flag)
        if float(flag[0]) == 0.0:
            raise NonFiniteNormError(
                f"{name}: contains non-finite values; the total norm of order {p} "
                f"is {value} (pass error_if_nonfinite=False to {verb} anyway)"
            )
    raise NonFiniteNormError(f"grads: the total norm of order {p} is {value}")
