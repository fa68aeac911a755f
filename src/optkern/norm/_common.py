"""Shared pieces of optkern.norm: the ``saved`` named tuples that forwards return and
the argument helpers every functional form and module uses."""

from __future__ import annotations

import contextlib
import math
import numbers
from typing import Any, NamedTuple

import numpy as np

from .. import _backend
from .._overlap import shares


class BatchNormSaved(NamedTuple):
    """Per-channel statistics used by a batch-norm forward (batch or running).

    ``lo`` (training only): the batch means' low parts (rules::mean_lo, 0 for the channels that need
    none) from the statistics' own moments, so that the backward does not compute them from x again;
    None (a saved tuple of three) has the backward compute them, with the same bits.
    """

    mean: Any
    rstd: Any
    training: bool
    lo: Any = None


class RowNormSaved(NamedTuple):
    """Per-row statistics of a layer / group / instance norm forward.

    For instance norm with running statistics (``use_input_stats=False``)
    ``mean`` / ``rstd`` are per channel and ``groups`` is 0.
    """

    mean: Any
    rstd: Any
    groups: int


class RMSNormSaved(NamedTuple):
    """Per-row ``inv_rms = 1 / sqrt(mean(x²) + eps)`` of an RMS-norm forward."""

    inv_rms: Any


class WeightNormSaved(NamedTuple):
    """Per-output-row ``‖v‖`` of a weight-norm forward."""

    norm: Any
    dim: Any


# ---- helpers -------------------------------------------------------------------


def _xp(*arrays):
    for a in arrays:
        if a is not None:
            return _backend.array_module(a)
    return np


def _stat_dtype(x):
    return np.float64 if x.dtype == np.float64 else np.float32


def _ndarray(name, a):
    if a is None:
        raise TypeError(f"{name}: expected an array, got None")
    if not (isinstance(a, np.ndarray) or _backend.is_cupy(a)):
        raise TypeError(f"{name}: expected a numpy or cupy array, got {type(a).__name__}")
    return a


def _shape_of(name, a, shape):
    """The one shape check of a norm's optional array argument (weight, bias, running buffers), on
    both backends. Its type first: a list of arrays passes the backend check (a list argument's
    elements are checked), and its ``.shape`` / ``.size`` raised AttributeError, naming nothing."""
    if a is not None:
        _ndarray(name, a)
    if a is not None and tuple(a.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(a.shape)}")


def _buffer(name, a, shape, dtype, written=True):
    """A running-statistics buffer: right shape and dtype, and writable where the call updates it
    (checked before any write). Only read (eval mode), a read-only one is valid, as torch's: running
    statistics loaded with ``np.load(mmap_mode="r")`` serve inference unchanged."""
    if a is None:
        return
    _shape_of(name, a, shape)
    if a.dtype != dtype:
        raise TypeError(f"{name}: expected {np.dtype(dtype).name}, got {a.dtype}")
    if written and isinstance(a, np.ndarray) and not a.flags.writeable:
        raise _backend.read_only(name, a)
    if written:  # (np.broadcast_to made writable, torch's expand: every channel's update in one element)
        _backend.distinct_elements(a, name)
        # (a contiguous one goes to the kernel as it is: misaligned, instance norm's running update
        # refused it after y was written into the caller's out)
        if a.flags.c_contiguous:
            _backend.check_aligned(a, name)


def _default_eps(dtype):
    """rms_norm's default eps: the machine epsilon of torch's computation dtype for ``dtype``
    (``torch._decomp``'s ``_fused_rms_norm``, as its CPU kernel): float32's for float16 and
    bfloat16, whose statistics are float32. (It was theirs, 9.8e-4 and 2**-7: inputs of RMS 0.01
    came out 0.305 / 0.112 where torch gives 0.9995 / 1.0.) Kept per dtype (``str`` and
    ``np.finfo`` cost ~1.5 us per call)."""
    eps = _DEFAULT_EPS.get(dtype)
    if eps is None:
        half = str(dtype) in _HALF_NAMES
        # (a dtype of no finfo -- int, bool, object, a byte-swapped bfloat16 -- is refused as x by the
        # native check, as with an eps given: finfo's own ValueError named no argument)
        known = half or np.dtype(dtype).kind == "f"
        eps = float(np.finfo(np.float32 if half or not known else dtype).eps)
        if len(_DEFAULT_EPS) >= 64:
            _DEFAULT_EPS.clear()
        _DEFAULT_EPS[dtype] = eps
    return eps


_DEFAULT_EPS: dict = {}  # dtype -> its default eps


def _out(out, x, name="out"):
    """A fresh array like x, or the caller's ``out`` (same shape, writable; dtype, layout checked
    natively). Writability here, with the shared refusal: the native one cannot say why an export
    through the unversioned DLPack protocol is read-only to NumPy (``_backend.read_only``)."""
    if out is None:
        return _xp(x).empty_like(x)
    _ndarray(name, out)
    if tuple(out.shape) != tuple(x.shape):
        raise ValueError(f"{name}: expected shape {tuple(x.shape)}, got {tuple(out.shape)}")
    if isinstance(out, np.ndarray) and not out.flags.writeable:
        raise _backend.read_only(name, out)
    return out


@contextlib.contextmanager
def _native_name(native: str, public: str):
    """Errors of a native call say ``public`` where they name its argument ``native``."""
    try:
        yield
    except (TypeError, ValueError) as e:
        msg = str(e)
        if msg.startswith((native + ":", native + " shares")):
            raise type(e)(public + msg[len(native) :]) from None
        # the native name as the other party ("weight shares memory with dx (..."): the caller passed
        # no dx, its argument is `public` (a backward's out=)
        other = f" shares memory with {native} ("
        if other in msg:
            raise type(e)(msg.replace(other, f" shares memory with {public} (", 1)) from None
        raise


@contextlib.contextmanager
def _saved_names(*names):
    """Errors of a backward's native call name ``saved.<field>`` where the native code names the field,
    as the subject or as the other party (``dx shares memory with mean (``: an ``out=`` aliasing it)."""
    try:
        yield
    except (TypeError, ValueError) as e:
        msg = str(e)
        for n in names:
            if msg.startswith((n + ":", n + " shares")):
                raise type(e)("saved." + msg) from None
            other = f" shares memory with {n} ("
            if other in msg:
                raise type(e)(msg.replace(other, f" shares memory with saved.{n} (", 1)) from None
        raise


def _check_saved(saved, cls, arrays):
    """``saved`` as a ``cls`` (a plain tuple of the right length is accepted) whose ``arrays`` fields are arrays.

    A wrong object (None, another forward's saved tuple) is a TypeError naming ``saved``, not an
    AttributeError or a shape error blaming another argument.
    """
    if not isinstance(saved, cls):
        # (fields with defaults may be left off: a BatchNormSaved of three)
        if type(saved) is not tuple or not len(cls._fields) - len(cls._field_defaults) <= len(saved) <= len(
            cls._fields
        ):
            raise TypeError(
                f"saved: expected the {cls.__name__} returned by the forward call, got {type(saved).__name__}"
            )
        saved = cls(*saved)
    for f in arrays:
        _ndarray(f"saved.{f}", getattr(saved, f))
    return saved


def _no_shared_memory(
    written, others, why="running statistics are written in place and must not alias another argument"
):
    """ValueError if an array written in place (name, array) shares memory with another argument.

    Running statistics that alias x (or each other) would be overwritten while x is still read.
    ``_overlap.shares`` decides: byte bounds first, then, for NumPy arrays, whether some element is
    in both (bounded; shared past the bound). Interleaved strided views share none -- running
    buffers kept as the columns of one (C, 2) array, which torch takes and the channel kernels get
    as contiguous copies. CuPy arrays: the byte bounds only, so such columns are refused there.
    ``why``: the reason the message gives.
    """
    written = [(n, a) for n, a in written if a is not None and a.size > 0]
    others = [(n, a) for n, a in others if a is not None and a.size > 0]
    for i, (n, a) in enumerate(written):
        for m, b in written[:i] + others:
            if shares(a, b):
                raise ValueError(f"{n}: shares memory with {m} ({why})")


def _no_shared_running(training, running, others, out):
    """The aliasing check of a call given running statistics (``running``: (name, array) pairs).
    Training updates them in place: they must alias nothing (``others``, ``out`` included). Eval only
    reads them, as torch does (running_mean and running_var may be one array, or the weight): only
    ``out``, written while they are read (the kernels get copies, so nothing else would see it), must
    not alias them. (``others`` holds ``out`` too.)"""
    if training:
        _no_shared_memory(running, others)
    else:
        _no_shared_memory([("out", out)], running, "y is written while the running statistics are read")


def _eps(eps, x=None, name="eps"):
    """eps (argument ``name``: nn.MLP's ``norm_eps`` too) > 0, and (given the input ``x``, or
    ``F32_STATS`` for float32 statistics) still > 0 and finite in the statistics' dtype: an eps that
    rounds to 0 there divides by a zero variance (NaN for a constant row where float64 is finite);
    one past float32's max became inf in the row kernels (y = bias, the rstd 0) but not in the channel
    kernels (batch norm, instance norm with running buffers: y ~ 1e-20 x), which add it in double --
    refused as the optimizers refuse a hyper-parameter that is not finite in the arrays' dtype."""
    eps = _backend.positive(name, eps)
    # float32 and the half types (CPU and GPU) keep float32 statistics; an unsupported dtype is x's error
    dt = getattr(x, "dtype", None)
    if x is not None and (dt == np.float32 or (getattr(dt, "itemsize", 0) == 2 and dt.name in _HALF_NAMES)):
        if eps > _F32_MAX_ROUNDED:  # (compared in double: np.float32(eps) would warn of the overflow)
            raise ValueError(f"{name}: {eps!r} overflows float32 (the statistics' dtype); at most {_F32_MAX!r}")
        # (a normal float32's range never rounds to 0, flushed or not: the NumPy scalar, ~250 ns, is
        # built only below 2**-126, where round-to-nearest-even gives 0 for eps <= 2**-150, the tie
        # with 2**-149 included, and a flush-to-zero mode gives 0 for all of it, as the kernels would)
        if eps < _F32_TINY and np.float32(eps) == 0:
            raise ValueError(
                f"{name}: {eps!r} rounds to 0 in float32 (the statistics' dtype); the smallest usable value is "
                f"{float(np.nextafter(np.float32(0), np.float32(1)))!r}"
            )
    return eps


_F32_MAX = float(np.finfo(np.float32).max)
#: what ``_eps`` reads of an input (its dtype) where there is none yet: float32 statistics
F32_STATS = np.empty(0, np.float32)
# the half storage types, whose statistics are float32 (bfloat16 by name: ml_dtypes' or CuPy's dtype)
_HALF_NAMES = frozenset(("float16", "bfloat16"))
_F32_TINY = 2.0**-126  # float32's smallest normal
# the largest double that rounds to a finite float32 (below max + half an ulp, 2**104, which rounds to inf)
_F32_MAX_ROUNDED = float(np.nextafter(_F32_MAX + 2.0**103, 0.0))


def _shape_arg(normalized_shape, name="normalized_shape") -> tuple:
    """``normalized_shape`` (an int or a sequence of ints) as a tuple of ints >= 0 (0 as torch
    allows: rows of no elements, an empty output) whose product fits int64; TypeError / ValueError
    naming it (or its entry) otherwise. A bool, a float, a string or a 0-d array is not a shape."""
    if type(normalized_shape) is int or (
        isinstance(normalized_shape, numbers.Integral) and not isinstance(normalized_shape, (bool, np.bool_))
    ):
        normalized_shape = (normalized_shape,)
    if type(normalized_shape) is tuple and all(type(s) is int and 0 <= s <= _INT64_MAX for s in normalized_shape):
        ns = normalized_shape  # (exact ints in range: what the per-entry checks return, no names built)
    else:
        ok = isinstance(normalized_shape, (tuple, list)) or (
            isinstance(normalized_shape, np.ndarray) and normalized_shape.ndim == 1
        )
        if not ok:
            raise TypeError(f"{name}: expected an int or a tuple of ints, got {type(normalized_shape).__name__}")
        ns = tuple(_backend.integer(f"{name}[{i}]", s, lo=0, hi=_INT64_MAX) for i, s in enumerate(normalized_shape))
    if math.prod(ns) > _INT64_MAX:
        raise ValueError(f"{name}: {ns} holds more than {_INT64_MAX} elements")
    return ns


_INT64_MAX = _backend.INT64_MAX


def _saved_int(saved, field: str, lo: int) -> int:
    """An integer field of a ``saved`` tuple (``saved.groups``), named when it is not one."""
    return _backend.integer(f"saved.{field}", getattr(saved, field), lo=lo, hi=_backend.INT64_MAX)


def _momentum(momentum):
    return _backend.in_range("momentum", momentum, 0.0, 1.0)


def _prod(shape):
    return int(math.prod(int(s) for s in shape))


def _rstd(var, eps):
    """``1 / sqrt(var + eps)`` of fixed (running) variances as torch's CPU eval batch norm forms it
    (batch_norm_cpu_collect_linear_and_constant_terms): in the statistics' dtype with eps rounded to
    it, so that eval y equals torch's bit for bit. In float32 the sum, the square root and the
    quotient are each rounded (a third of the channels 1-2 ulps off the correctly rounded value, as
    torch's are); the training kernels' rstd (rules::rstd) is formed in double and rounded once."""
    xp = _xp(var)
    e = var.dtype.type(eps)
    # a negative running_var (a user's) gives NaN in its channel as torch's eval batch norm does,
    # without NumPy's "invalid value in sqrt" warning (an error under -W error)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        s = var + e
        r = 1.0 / xp.sqrt(s)
        # var + eps past the max (eps or a finite variance near it): the same quotient from a quarter of
        # each, exact scalings (the bits of the sum's, had it fit), as the training kernels' rsqrt_scaled
        # gives it, where torch's sum overflows to rstd 0 (y = bias). (CuPy: no host sync.)
        over = xp.isinf(s) & xp.isfinite(var)
        if xp is not np or over.any():
            r = xp.where(over, 0.5 / xp.sqrt(var * 0.25 + e * 0.25), r)
    return r.astype(var.dtype, copy=False)


def _backward_module(dy, x, weight, stat_name, stat):
    """The backend module of a backward call (dy and x must be arrays of one kind)."""
    _ndarray("dy", dy)
    _ndarray("x", x)
    return _backend.backend(("dy", dy), ("x", x), ("weight", weight), (stat_name, stat))


def _nc_spatial(x):
    if x.ndim < 2:
        raise ValueError(f"x: expected shape (N, C, *spatial), got {tuple(x.shape)}")
    if x.shape[1] < 1:
        raise ValueError(f"x: expected at least one channel (C = x.shape[1] >= 1), got shape {tuple(x.shape)}")
    return int(x.shape[0]), int(x.shape[1]), _prod(x.shape[2:])
