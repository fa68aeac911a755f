"""Normalization layers and dropout: functional forward / backward and small modules.

Every function takes NumPy arrays (C++/OpenMP kernels, float32 / float64) or
CuPy arrays (CUDA kernels, also float16 / bfloat16 storage with float32
statistics) and returns arrays of the same kind. Inputs must be C-contiguous;
weights share the input's dtype; statistics (``mean``, ``rstd``, running
buffers) are float64 for float64 input and float32 otherwise.

Forward functions return ``(y, saved)``, where ``saved`` is a small named
tuple holding what the matching ``*_backward`` needs (per-row or per-channel
mean and reciprocal standard deviation ``rstd = 1 / sqrt(var + eps)``). The
math, written once in ``cpp/include/optkern/rules/norm.hpp``::

    x̂ = (x - mean) * rstd,   y = weight * x̂ + bias
    dx = rstd * (g - mean(g) - x̂ * mean(g * x̂)),   g = weight * dy
    dweight = Σ dy * x̂,   dbias = Σ dy

The batch, layer, RMS, group and instance norm forwards and backwards take
``out=`` for their big output (``y``, ``dx``): a training loop that passes the
same buffers every step skips the allocation and, for outputs of tens of MB,
the page faults of fresh memory, which cost more than the kernel itself.

Statistics are computed with a shifted two-pass / Chan merge scheme (never
E[x²] - E[x]²), and reductions use a fixed blocking, so results are bitwise
identical for any number of OpenMP threads and run to run on a GPU.
"""
from __future__ import annotations

import contextlib
import math
from typing import NamedTuple

import numpy as np

from . import _backend

__all__ = [
    "batch_norm", "batch_norm_backward", "layer_norm", "layer_norm_backward",
    "group_norm", "group_norm_backward", "instance_norm", "instance_norm_backward",
    "rms_norm", "rms_norm_backward", "weight_norm", "weight_norm_backward",
    "dropout", "dropout_backward",
    "BatchNorm", "LayerNorm", "GroupNorm", "RMSNorm",
    "BatchNormSaved", "RowNormSaved", "RMSNormSaved", "WeightNormSaved",
]


class BatchNormSaved(NamedTuple):
    """Per-channel statistics used by a batch-norm forward (batch or running)."""
    mean: object
    rstd: object
    training: bool


class RowNormSaved(NamedTuple):
    """Per-row statistics of a layer / group / instance norm forward.

    For instance norm with running statistics (``use_input_stats=False``)
    ``mean`` / ``rstd`` are per channel and ``groups`` is 0.
    """
    mean: object
    rstd: object
    groups: int


class RMSNormSaved(NamedTuple):
    """Per-row ``inv_rms = 1 / sqrt(mean(x²) + eps)`` of an RMS-norm forward."""
    inv_rms: object


class WeightNormSaved(NamedTuple):
    """Per-output-row ``‖v‖`` of a weight-norm forward."""
    norm: object
    dim: object


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
    if a is not None and tuple(a.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(a.shape)}")


def _buffer(name, a, shape, dtype):
    """A running-statistics buffer: right shape and dtype, writable (checked before any write)."""
    if a is None:
        return
    _shape_of(name, a, shape)
    if a.dtype != dtype:
        raise TypeError(f"{name}: expected {np.dtype(dtype).name}, got {a.dtype}")
    if isinstance(a, np.ndarray) and not a.flags.writeable:
        raise ValueError(f"{name}: array is read-only")


def _default_eps(dtype):
    """``torch.finfo(dtype).eps`` (bfloat16: 2**-7)."""
    return 2.0**-7 if str(dtype) == "bfloat16" else float(np.finfo(dtype).eps)


def _out(out, x, name="out"):
    """A fresh array like x, or the caller's ``out`` (same shape; dtype, layout checked natively)."""
    if out is None:
        return _xp(x).empty_like(x)
    _ndarray(name, out)
    if tuple(out.shape) != tuple(x.shape):
        raise ValueError(f"{name}: expected shape {tuple(x.shape)}, got {tuple(out.shape)}")
    return out


@contextlib.contextmanager
def _native_name(native: str, public: str):
    """Errors of a native call say ``public`` where they name its argument ``native``."""
    try:
        yield
    except (TypeError, ValueError) as e:
        msg = str(e)
        if not msg.startswith(native + ":") and not msg.startswith(native + " shares"):
            raise
        raise type(e)(public + msg[len(native):]) from None


@contextlib.contextmanager
def _saved_names(*names):
    """Errors of a backward's native call name ``saved.<field>`` where the native code names the field."""
    try:
        yield
    except (TypeError, ValueError) as e:
        msg = str(e)
        for n in names:
            if msg.startswith((n + ":", n + " shares")):
                raise type(e)("saved." + msg) from None
        raise


def _check_saved(saved, cls, arrays):
    """``saved`` as a ``cls`` (a plain tuple of the right length is accepted) whose ``arrays`` fields are arrays.

    A wrong object (None, another forward's saved tuple) is a TypeError naming ``saved``, not an
    AttributeError or a shape error blaming another argument.
    """
    if not isinstance(saved, cls):
        if type(saved) is not tuple or len(saved) != len(cls._fields):
            raise TypeError(f"saved: expected the {cls.__name__} returned by the forward call, "
                            f"got {type(saved).__name__}")
        saved = cls(*saved)
    for f in arrays:
        _ndarray(f"saved.{f}", getattr(saved, f))
    return saved


def _no_shared_memory(written, others):
    """ValueError if an array written in place (name, array) shares memory with another argument.

    Running statistics that alias x (or each other) would be overwritten while x is still read.
    """
    def span(a):  # [first byte, one past the last byte] the array can touch
        ptr = a.__array_interface__["data"][0] if isinstance(a, np.ndarray) else a.data.ptr
        ext = [(int(n) - 1) * int(st) for n, st in zip(a.shape, a.strides)]
        return ptr + sum(e for e in ext if e < 0), ptr + sum(e for e in ext if e > 0) + a.itemsize

    written = [(n, a) for n, a in written if a is not None and a.size > 0]
    others = [(n, a) for n, a in others if a is not None and a.size > 0]
    for i, (n, a) in enumerate(written):
        lo, hi = span(a)
        for m, b in written[:i] + others:
            blo, bhi = span(b)
            if lo < bhi and blo < hi:
                raise ValueError(f"{n}: shares memory with {m} (running statistics are written in place and must "
                                 "not alias another argument)")


def _eps(eps):
    return _backend.positive("eps", eps)


def _momentum(momentum):
    return _backend.in_range("momentum", momentum, 0.0, 1.0)


def _prod(shape):
    return int(math.prod(int(s) for s in shape))


def _update_running(running_mean, running_var, mean, var_unbiased, momentum):
    running_mean *= 1.0 - momentum
    running_mean += momentum * mean.astype(running_mean.dtype, copy=False)
    running_var *= 1.0 - momentum
    running_var += momentum * var_unbiased.astype(running_var.dtype, copy=False)


def _rstd(var, eps):
    xp = _xp(var)
    return (1.0 / xp.sqrt(var + var.dtype.type(eps))).astype(var.dtype, copy=False)


# ---- batch norm ------------------------------------------------------------------

def _check_channel_params(x, C, weight, bias, running_mean, running_var):
    """Validate per-channel affine parameters and running buffers; the statistics dtype."""
    _shape_of("weight", weight, (C,))
    _shape_of("bias", bias, (C,))
    sdt = _stat_dtype(x)
    _buffer("running_mean", running_mean, (C,), sdt)
    _buffer("running_var", running_var, (C,), sdt)
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean, running_var: give both or neither")
    return sdt


def _running_forward(mod, x, weight, bias, running_mean, running_var, eps, y, N, C, S):
    """Normalize with fixed per-channel running statistics; returns (mean, rstd) for backward."""
    mean = running_mean.copy()
    rstd = _rstd(running_var, eps)
    mod.channel_norm_forward(x, mean, rstd, weight, bias, y, N, C, S)
    return mean, rstd


def _backward_module(dy, x, weight, stat_name, stat):
    """The backend module of a backward call (dy and x must be arrays of one kind)."""
    _ndarray("dy", dy)
    _ndarray("x", x)
    return _backend.backend(("dy", dy), ("x", x), ("weight", weight), (stat_name, stat))


def _channel_backward(mod, dy, x, weight, mean, rstd, N, C, S, batch_stats, out=None):
    """(dx, dweight, dbias) of a per-channel normalization (batch or fixed running statistics)."""
    xp = _xp(x)
    dx = _out(out, x)
    pdt = x.dtype if weight is None else weight.dtype
    dweight = xp.empty(C, dtype=pdt)
    dbias = xp.empty(C, dtype=pdt)
    with _native_name("dx", "out") if out is not None else contextlib.nullcontext(), _saved_names("mean", "rstd"):
        mod.channel_norm_backward(dy, x, mean, rstd, weight, dx, dweight, dbias, N, C, S, batch_stats)
    return dx, dweight, dbias


@_backend.on_array_device
def batch_norm(x, weight=None, bias=None, running_mean=None, running_var=None, training=True,
               momentum=0.1, eps=1e-5, out=None):
    """Batch normalization of ``x`` of shape (N, C) or (N, C, *spatial), per channel.

    Training uses the batch statistics over N and the spatial dims and, when
    the running buffers are given, updates them in place as PyTorch does:
    ``running = (1 - momentum) * running + momentum * batch`` with the
    unbiased batch variance. Eval (``training=False``) normalizes with
    ``running_mean`` / ``running_var`` (both required).

    Args:
      x: input, C-contiguous.
      weight, bias: optional (C,) affine parameters (x's dtype).
      running_mean, running_var: optional (C,) buffers in the statistics dtype.
      training: batch statistics (True) or running statistics (False).
      momentum: in [0, 1].
      eps: > 0, added to the variance.
      out: optional array to write y into (x's shape, dtype and kind).

    Returns:
      ``(y, saved)`` with ``saved`` a :class:`BatchNormSaved` for
      :func:`batch_norm_backward`.
    """
    _ndarray("x", x)
    mod = _backend.backend(("x", x), ("weight", weight), ("bias", bias), ("running_mean", running_mean),
                           ("running_var", running_var))
    if x.ndim < 2:
        raise ValueError(f"x: expected shape (N, C) or (N, C, *spatial), got {tuple(x.shape)}")
    eps = _eps(eps)
    momentum = _momentum(momentum)
    N, C = int(x.shape[0]), int(x.shape[1])
    S = _prod(x.shape[2:])
    sdt = _check_channel_params(x, C, weight, bias, running_mean, running_var)
    xp = _xp(x)
    y = _out(out, x)
    _no_shared_memory([("running_mean", running_mean), ("running_var", running_var)],
                      [("x", x), ("out", out), ("weight", weight), ("bias", bias)])
    if training:
        if N * S <= 1:
            raise ValueError(f"x: expected more than 1 value per channel when training, got shape {tuple(x.shape)}")
        mean = xp.empty(C, dtype=sdt)
        rstd = xp.empty(C, dtype=sdt)
        var = xp.empty(C, dtype=sdt)  # unbiased, from the moments that give mean and rstd
        mod.channel_stats(x, mean, rstd, var, N, C, S, eps)
        mod.channel_norm_forward(x, mean, rstd, weight, bias, y, N, C, S)
        if running_mean is not None:
            _update_running(running_mean, running_var, mean, var, momentum)
        return y, BatchNormSaved(mean, rstd, True)
    if running_mean is None:
        raise ValueError("running_mean, running_var: required when training=False")
    mean, rstd = _running_forward(mod, x, weight, bias, running_mean, running_var, eps, y, N, C, S)
    return y, BatchNormSaved(mean, rstd, False)


@_backend.on_array_device
def batch_norm_backward(dy, x, weight, saved: BatchNormSaved, out=None):
    """Gradients of :func:`batch_norm`: ``(dx, dweight, dbias)``.

    In training mode ``dx`` accounts for the batch statistics' dependence on
    x; in eval mode ``dx = dy * weight * rstd_running``. ``dweight = Σ dy x̂``
    and ``dbias = Σ dy`` per channel (returned even when ``weight`` is None).
    """
    saved = _check_saved(saved, BatchNormSaved, ("mean", "rstd"))
    mod = _backward_module(dy, x, weight, "saved.mean", saved.mean)
    if tuple(dy.shape) != tuple(x.shape):
        raise ValueError(f"dy: expected shape {tuple(x.shape)}, got {tuple(dy.shape)}")
    if x.ndim < 2:
        raise ValueError(f"x: expected shape (N, C) or (N, C, *spatial), got {tuple(x.shape)}")
    N, C, S = int(x.shape[0]), int(x.shape[1]), _prod(x.shape[2:])
    _shape_of("weight", weight, (C,))
    return _channel_backward(mod, dy, x, weight, saved.mean, saved.rstd, N, C, S, bool(saved.training), out)


# ---- layer / group / instance / RMS norm (row kernels) ----------------------------

def _normalized_shape(x, normalized_shape):
    if isinstance(normalized_shape, (int, np.integer)) and not isinstance(normalized_shape, bool):
        normalized_shape = (int(normalized_shape),)
    ns = tuple(int(s) for s in normalized_shape)
    k = len(ns)
    if k == 0 or k > x.ndim or tuple(x.shape[x.ndim - k:]) != ns:
        raise ValueError(f"normalized_shape: {ns} must be the trailing dimensions of x, whose shape is "
                         f"{tuple(x.shape)}")
    if _prod(ns) == 0:
        raise ValueError(f"normalized_shape: must be non-empty, got {ns}")
    return ns


@_backend.on_array_device
def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5, out=None):
    """Layer normalization over the trailing ``normalized_shape`` dims of ``x``.

    Args:
      x: input, C-contiguous; its trailing dims equal ``normalized_shape``.
      normalized_shape: int or tuple of ints.
      weight, bias: optional arrays of shape ``normalized_shape``.
      eps: > 0, added to the (biased) variance.
      out: optional array to write y into (x's shape, dtype and kind).

    Returns:
      ``(y, saved)`` with ``saved`` a :class:`RowNormSaved` (mean and rstd of
      shape ``x.shape[:-len(normalized_shape)]``).
    """
    _ndarray("x", x)
    mod = _backend.backend(("x", x), ("weight", weight), ("bias", bias))
    ns = _normalized_shape(x, normalized_shape)
    eps = _eps(eps)
    _shape_of("weight", weight, ns)
    _shape_of("bias", bias, ns)
    lead = tuple(x.shape[:x.ndim - len(ns)])
    R, M = _prod(lead), _prod(ns)
    xp = _xp(x)
    y = _out(out, x)
    mean = xp.empty(lead, dtype=_stat_dtype(x))
    rstd = xp.empty(lead, dtype=_stat_dtype(x))
    mod.row_norm_forward(x, weight, bias, y, mean, rstd, R, 1, M, 1, eps, False)
    return y, RowNormSaved(mean, rstd, 1)


def _row_backward(mod, dy, x, weight, mean, rstd, R, G, Cg, S, rms, wshape, param_grads, bias_grad=True,
                  out=None):
    xp = _xp(x)
    if tuple(dy.shape) != tuple(x.shape):
        raise ValueError(f"dy: expected shape {tuple(x.shape)}, got {tuple(dy.shape)}")
    _shape_of("weight", weight, wshape)
    dx = _out(out, x)
    pdt = x.dtype if weight is None else weight.dtype
    dweight = xp.empty(wshape, dtype=pdt) if param_grads else None
    dbias = xp.empty(wshape, dtype=pdt) if param_grads and bias_grad else None
    with _native_name("dx", "out") if out is not None else contextlib.nullcontext(), \
            _saved_names("mean", "rstd", "inv_rms"):
        mod.row_norm_backward(dy, x, weight, mean, rstd, dx, dweight, dbias, R, G, Cg, S, rms)
    return dx, dweight, dbias


@_backend.on_array_device
def layer_norm_backward(dy, x, weight, saved: RowNormSaved, normalized_shape=None, param_grads=True, out=None):
    """Gradients of :func:`layer_norm`: ``(dx, dweight, dbias)``.

    ``normalized_shape`` defaults to ``x.shape[saved.mean.ndim:]``. With
    ``param_grads=False`` only dx is computed (dweight, dbias are None);
    otherwise dweight / dbias have shape ``normalized_shape`` (returned even
    when ``weight`` is None, as gradients at weight = 1, bias = 0).
    """
    saved = _check_saved(saved, RowNormSaved, ("mean", "rstd"))
    mod = _backward_module(dy, x, weight, "saved.mean", saved.mean)
    if normalized_shape is None:
        normalized_shape = tuple(x.shape[saved.mean.ndim:])
    ns = _normalized_shape(x, normalized_shape)
    R, M = _prod(x.shape[:x.ndim - len(ns)]), _prod(ns)
    return _row_backward(mod, dy, x, weight, saved.mean, saved.rstd, R, 1, M, 1, False, ns, param_grads, out=out)


@_backend.on_array_device
def rms_norm(x, normalized_shape, weight=None, eps=None, out=None):
    """RMS normalization: ``y = x / sqrt(mean(x²) + eps) * weight`` over ``normalized_shape``.

    ``eps`` defaults to ``finfo(x.dtype).eps`` as in ``torch.nn.functional.rms_norm``;
    ``out`` optionally receives y.
    Returns ``(y, saved)`` with ``saved`` an :class:`RMSNormSaved`.
    """
    _ndarray("x", x)
    mod = _backend.backend(("x", x), ("weight", weight))
    ns = _normalized_shape(x, normalized_shape)
    eps = _default_eps(x.dtype) if eps is None else _eps(eps)
    _shape_of("weight", weight, ns)
    lead = tuple(x.shape[:x.ndim - len(ns)])
    R, M = _prod(lead), _prod(ns)
    xp = _xp(x)
    y = _out(out, x)
    inv = xp.empty(lead, dtype=_stat_dtype(x))
    mod.row_norm_forward(x, weight, None, y, None, inv, R, 1, M, 1, eps, True)
    return y, RMSNormSaved(inv)


@_backend.on_array_device
def rms_norm_backward(dy, x, weight, saved: RMSNormSaved, normalized_shape=None, param_grads=True, out=None):
    """Gradients of :func:`rms_norm`: ``(dx, dweight)``; dweight is None when ``param_grads=False``.

    ``dx = r * (g - x̂ * mean(g * x̂))`` with ``r = inv_rms``, ``x̂ = r x``, ``g = weight * dy``.
    """
    saved = _check_saved(saved, RMSNormSaved, ("inv_rms",))
    mod = _backward_module(dy, x, weight, "saved.inv_rms", saved.inv_rms)
    if normalized_shape is None:
        normalized_shape = tuple(x.shape[saved.inv_rms.ndim:])
    ns = _normalized_shape(x, normalized_shape)
    R, M = _prod(x.shape[:x.ndim - len(ns)]), _prod(ns)
    dx, dw, _ = _row_backward(mod, dy, x, weight, None, saved.inv_rms, R, 1, M, 1, True, ns, param_grads,
                              bias_grad=False, out=out)
    return dx, dw


def _nc_spatial(x):
    if x.ndim < 2:
        raise ValueError(f"x: expected shape (N, C, *spatial), got {tuple(x.shape)}")
    return int(x.shape[0]), int(x.shape[1]), _prod(x.shape[2:])


@_backend.on_array_device
def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5, out=None):
    """Group normalization of ``x`` (N, C, *spatial): statistics per sample over
    ``C / num_groups`` channels and all spatial positions; per-channel affine.
    ``out`` optionally receives y.

    Returns ``(y, saved)`` with ``saved`` a :class:`RowNormSaved` (mean, rstd
    of shape (N, num_groups)).
    """
    _ndarray("x", x)
    mod = _backend.backend(("x", x), ("weight", weight), ("bias", bias))
    N, C, S = _nc_spatial(x)
    G = _backend.integer("num_groups", num_groups, lo=1)
    if C % G:
        raise ValueError(f"num_groups: must divide the number of channels C={C}, got {G}")
    eps = _eps(eps)
    _shape_of("weight", weight, (C,))
    _shape_of("bias", bias, (C,))
    xp = _xp(x)
    y = _out(out, x)
    mean = xp.empty((N, G), dtype=_stat_dtype(x))
    rstd = xp.empty((N, G), dtype=_stat_dtype(x))
    mod.row_norm_forward(x, weight, bias, y, mean, rstd, N * G, G, C // G, S, eps, False)
    return y, RowNormSaved(mean, rstd, G)


@_backend.on_array_device
def group_norm_backward(dy, x, weight, saved: RowNormSaved, param_grads=True, out=None):
    """Gradients of :func:`group_norm`: ``(dx, dweight, dbias)`` (per-channel parameter grads)."""
    saved = _check_saved(saved, RowNormSaved, ("mean", "rstd"))
    mod = _backward_module(dy, x, weight, "saved.mean", saved.mean)
    N, C, S = _nc_spatial(x)
    G = int(saved.groups)
    if G < 1 or C % G:
        raise ValueError(f"saved.groups: {G} does not divide C={C}")
    return _row_backward(mod, dy, x, weight, saved.mean, saved.rstd, N * G, G, C // G, S, False, (C,),
                         param_grads, out=out)


@_backend.on_array_device
def instance_norm(x, weight=None, bias=None, running_mean=None, running_var=None, use_input_stats=True,
                  momentum=0.1, eps=1e-5, out=None):
    """Instance normalization of ``x`` (N, C, *spatial): per (sample, channel) statistics.

    With ``use_input_stats`` (default) the statistics come from each instance
    and the running buffers, when given, are updated in place with the batch
    average of the instance means and unbiased variances (as PyTorch does).
    Otherwise ``running_mean`` / ``running_var`` normalize every instance.
    ``out`` optionally receives y.

    Returns ``(y, saved)`` with ``saved`` a :class:`RowNormSaved`.
    """
    _ndarray("x", x)
    mod = _backend.backend(("x", x), ("weight", weight), ("bias", bias), ("running_mean", running_mean),
                           ("running_var", running_var))
    N, C, S = _nc_spatial(x)
    eps = _eps(eps)
    momentum = _momentum(momentum)
    sdt = _check_channel_params(x, C, weight, bias, running_mean, running_var)
    xp = _xp(x)
    y = _out(out, x)
    _no_shared_memory([("running_mean", running_mean), ("running_var", running_var)],
                      [("x", x), ("out", out), ("weight", weight), ("bias", bias)])
    if not use_input_stats:
        if running_mean is None:
            raise ValueError("running_mean, running_var: required when use_input_stats=False")
        mean, rstd = _running_forward(mod, x, weight, bias, running_mean, running_var, eps, y, N, C, S)
        return y, RowNormSaved(mean, rstd, 0)
    if S <= 1:
        raise ValueError(f"x: expected more than 1 spatial element when use_input_stats=True, got shape "
                         f"{tuple(x.shape)}")
    mean = xp.empty((N, C), dtype=sdt)
    rstd = xp.empty((N, C), dtype=sdt)
    mod.row_norm_forward(x, weight, bias, y, mean, rstd, N * C, C, 1, S, eps, False)
    if running_mean is not None and N > 0:
        var = 1.0 / (rstd.astype(np.float64) ** 2) - eps  # biased per-instance variance
        _update_running(running_mean, running_var, mean.mean(axis=0),
                        (var * (S / (S - 1))).mean(axis=0), momentum)
    return y, RowNormSaved(mean, rstd, C)


@_backend.on_array_device
def instance_norm_backward(dy, x, weight, saved: RowNormSaved, param_grads=True, out=None):
    """Gradients of :func:`instance_norm`: ``(dx, dweight, dbias)``."""
    saved = _check_saved(saved, RowNormSaved, ("mean", "rstd"))
    mod = _backward_module(dy, x, weight, "saved.mean", saved.mean)
    N, C, S = _nc_spatial(x)
    if saved.groups == 0:  # running statistics: fixed per-channel mean / rstd
        if tuple(dy.shape) != tuple(x.shape):
            raise ValueError(f"dy: expected shape {tuple(x.shape)}, got {tuple(dy.shape)}")
        _shape_of("weight", weight, (C,))
        dx, dw, db = _channel_backward(mod, dy, x, weight, saved.mean, saved.rstd, N, C, S, False, out)
        return (dx, dw, db) if param_grads else (dx, None, None)
    return _row_backward(mod, dy, x, weight, saved.mean, saved.rstd, N * C, C, 1, S, False, (C,), param_grads,
                         out=out)


# ---- weight norm -----------------------------------------------------------------

def _wn_layout(v, g, dim):
    if v.ndim == 0:
        raise ValueError("v: expected at least one dimension")
    if dim is None:
        rows, perm = 1, None
    else:
        d = _backend.integer("dim", dim)
        if not -v.ndim <= d < v.ndim:
            raise ValueError(f"dim: out of range for v with {v.ndim} dims, got {dim}")
        d %= v.ndim
        rows, perm = int(v.shape[d]), d
    if g.size != rows:
        raise ValueError(f"g: expected {rows} elements (one per slice along dim), got {g.size}")
    return rows, perm


def _wn_row_len(vr, rows):
    if rows == 0:
        return 1
    if vr.size == 0:
        raise ValueError(f"v: every slice must be non-empty, got shape {tuple(vr.shape)}")
    return vr.size // rows


def _to_rows(a, d):
    """``a`` with axis d first, C-contiguous (a copy unless d == 0)."""
    if not d:
        return a
    return _xp(a).ascontiguousarray(_xp(a).moveaxis(a, d, 0))


def _from_rows(a, d):
    if not d:
        return a
    return _xp(a).ascontiguousarray(_xp(a).moveaxis(a, 0, d))


@_backend.on_array_device
def weight_norm(v, g, dim=0):
    """Weight normalization ``w = g * v / ‖v‖`` (Salimans & Kingma 2016).

    The norm is taken over all dims of ``v`` except ``dim`` (``dim=None``:
    over all of v, one scalar g). ``g`` holds one value per slice along
    ``dim`` (any shape with that many elements, e.g. PyTorch's keepdim
    shape). Returns ``(w, saved)`` with ``saved`` a :class:`WeightNormSaved`.
    A slice holding NaN or ±inf has a NaN norm, and a NaN or zero norm raises
    ValueError (NumPy input; the norms are overflow-safe up to the dtype's max).
    """
    _ndarray("v", v)
    _ndarray("g", g)
    mod = _backend.backend(("v", v), ("g", g))
    rows, d = _wn_layout(v, g, dim)
    vr = _to_rows(v, d)
    xp = _xp(v)
    w = xp.empty_like(vr)
    norm = xp.empty(rows, dtype=_stat_dtype(v))
    mod.weight_norm_forward(vr, g, w, norm, rows, _wn_row_len(vr, rows))
    ok = np.isfinite(norm) & (norm > 0) if xp is np else None  # (CuPy: not checked, it would sync the host)
    if ok is not None and not ok.all():  # NaN or ±inf in v gives a NaN norm: one error for both
        i = int(np.argmin(ok))
        raise ValueError(f"v: slice {i} along dim has norm {float(norm[i])}; w = g v / ||v|| needs a finite "
                         "nonzero norm")
    return _from_rows(w, d), WeightNormSaved(norm, dim)


@_backend.on_array_device
def weight_norm_backward(dw, v, g, saved: WeightNormSaved):
    """Gradients of :func:`weight_norm`: ``(dg, dv)``, dg shaped like g.

    With ``s = Σ dw * v`` per slice: ``dg = s / ‖v‖`` and
    ``dv = (g / ‖v‖) * (dw - s / ‖v‖² * v)``.
    """
    _ndarray("dw", dw)
    _ndarray("v", v)
    _ndarray("g", g)
    saved = _check_saved(saved, WeightNormSaved, ("norm",))
    mod = _backend.backend(("dw", dw), ("v", v), ("g", g), ("saved.norm", saved.norm))
    if tuple(dw.shape) != tuple(v.shape):
        raise ValueError(f"dw: expected shape {tuple(v.shape)}, got {tuple(dw.shape)}")
    rows, d = _wn_layout(v, g, saved.dim)
    vr, dwr = _to_rows(v, d), _to_rows(dw, d)
    xp = _xp(v)
    dv = xp.empty_like(vr)
    dg = xp.empty_like(g)
    with _saved_names("norm"):
        mod.weight_norm_backward(dwr, vr, g, saved.norm, dv, dg, rows, _wn_row_len(vr, rows))
    return dg, _from_rows(dv, d)


# ---- dropout -----------------------------------------------------------------------

@_backend.on_array_device
def dropout(x, p, seed, offset=0, training=True, return_mask=False):
    """Inverted dropout: ``y = x * keep / (1 - p)`` with a counter-based mask.

    Element i is kept when the float32 uniform of the Philox4x32-10 stream
    ``(seed, offset + i)`` (see :mod:`optkern.random`) is >= p, so the mask
    is the same on CPU and GPU and :func:`dropout_backward` regenerates it
    from ``(seed, offset)`` without storing it. Advance ``offset`` by
    ``x.size`` between calls to draw fresh masks from one seed.

    Args:
      x: input array (C-contiguous).
      p: drop probability in [0, 1).
      seed, offset: integers in [0, 2**64).
      training: when False, returns x unchanged (and an all-ones mask).
      return_mask: also return the uint8 keep mask.

    Returns:
      ``y``, or ``(y, mask)`` when ``return_mask``.
    """
    _ndarray("x", x)
    mod = _backend.backend(("x", x))
    p = _backend.in_range("p", p, 0.0, 1.0, hi_open=True)
    seed, offset = _seed_offset(seed, offset, x.size)
    xp = _xp(x)
    if not training:
        return (x, xp.ones(x.shape, dtype=np.uint8)) if return_mask else x
    y = xp.empty_like(x)
    mask = xp.empty(x.shape, dtype=np.uint8) if return_mask else None
    mod.dropout_(x, y, p, seed, offset, mask)
    return (y, mask) if return_mask else y


@_backend.on_array_device
def dropout_backward(dy, p, seed, offset=0):
    """Gradient of :func:`dropout` (training mode): ``dx = dy * keep / (1 - p)``, mask regenerated."""
    _ndarray("dy", dy)
    mod = _backend.backend(("dy", dy))
    p = _backend.in_range("p", p, 0.0, 1.0, hi_open=True)
    seed, offset = _seed_offset(seed, offset, dy.size)
    dx = _xp(dy).empty_like(dy)
    with _native_name("x", "dy"):  # the native function calls its input x
        mod.dropout_(dy, dx, p, seed, offset, None)
    return dx


def _seed_offset(seed, offset, size):
    seed = _backend.integer("seed", int(seed) if isinstance(seed, np.integer) else seed, lo=0)
    offset = _backend.integer("offset", int(offset) if isinstance(offset, np.integer) else offset, lo=0)
    if seed >= 1 << 64:
        raise ValueError(f"seed: must be < 2**64, got {seed}")
    if offset + size > 1 << 64:
        raise ValueError("offset: offset + x.size overflows the 64-bit counter")
    return seed, offset



# ---- modules -----------------------------------------------------------------------

class _NormModule:
    """Shared parts: parameters / grads lists and array allocation on NumPy or CuPy."""

    def __init__(self, dtype, like):
        if like is not None and _backend.is_cupy(like):
            import cupy

            self._xp = cupy
        elif like is None or isinstance(like, np.ndarray):
            self._xp = np
        else:
            raise TypeError(f"like: expected a numpy or cupy array, got {type(like).__name__}")
        self.dtype = np.dtype(dtype) if self._xp is np or str(dtype) != "bfloat16" else dtype
        self.weight = self.bias = None
        self.grad_weight = self.grad_bias = None
        self._saved = None
        self._x = None

    def _full(self, shape, value, dtype=None):
        return self._xp.full(shape, value, dtype=self.dtype if dtype is None else dtype)

    def parameters(self) -> list:
        """The trainable arrays (weight, bias where present), for an optimizer."""
        return [p for p in (self.weight, self.bias) if p is not None]

    def grads(self) -> list:
        """Gradients matching :meth:`parameters`, set by :meth:`backward`."""
        return [g for p, g in ((self.weight, self.grad_weight), (self.bias, self.grad_bias)) if p is not None]

    def __call__(self, x, training=True):
        return self.forward(x, training=training)

    def _check_channels(self, x, C, what):
        """x must be (N, C, ...) with this module's C (else the error would blame weight)."""
        shape = getattr(x, "shape", None)
        if shape is not None and (len(shape) < 2 or shape[1] != C):
            raise ValueError(f"x: expected shape (N, {C}, ...) for {type(self).__name__}({what}={C}), "
                             f"got {tuple(shape)}")

    def _need_forward(self):
        if self._saved is None:
            raise RuntimeError(f"{type(self).__name__}.backward: call forward(x) first")


class BatchNorm(_NormModule):
    """Batch normalization over (N, C) or (N, C, *spatial) input, like ``torch.nn.BatchNorm{1,2,3}d``.

    Holds ``weight`` (ones), ``bias`` (zeros), ``running_mean`` (zeros),
    ``running_var`` (ones) and ``num_batches_tracked``. ``forward(x,
    training=True)`` uses batch statistics and updates the running buffers;
    ``training=False`` uses the running buffers. ``backward(dy)`` returns dx
    and stores ``grad_weight`` / ``grad_bias``.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 dtype=np.float32, like=None):
        super().__init__(dtype, like)
        C = _backend.integer("num_features", num_features, lo=1)
        self.eps, self.momentum = _eps(eps), _momentum(momentum)
        if affine:
            self.weight, self.bias = self._full(C, 1), self._full(C, 0)
        sdt = np.float64 if self.dtype == np.float64 else np.float32
        self.running_mean = self._full(C, 0, sdt) if track_running_stats else None
        self.running_var = self._full(C, 1, sdt) if track_running_stats else None
        self.num_batches_tracked = 0
        self.num_features = C

    def forward(self, x, training=True):
        """Normalize x; returns y."""
        self._check_channels(x, self.num_features, "num_features")
        use_batch = training or self.running_mean is None
        y, self._saved = batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var,
                                    training=use_batch, momentum=self.momentum, eps=self.eps)
        if training and self.running_mean is not None:
            self.num_batches_tracked += 1
        self._x = x
        return y

    def backward(self, dy):
        """dx for the last forward; sets grad_weight and grad_bias."""
        self._need_forward()
        dx, dw, db = batch_norm_backward(dy, self._x, self.weight, self._saved)
        if self.weight is not None:
            self.grad_weight, self.grad_bias = dw, db
        return dx


class LayerNorm(_NormModule):
    """Layer normalization over the trailing ``normalized_shape``, like ``torch.nn.LayerNorm``."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, dtype=np.float32,
                 like=None):
        super().__init__(dtype, like)
        if isinstance(normalized_shape, (int, np.integer)):
            normalized_shape = (int(normalized_shape),)
        self.normalized_shape = tuple(int(s) for s in normalized_shape)
        self.eps = _eps(eps)
        if elementwise_affine:
            self.weight = self._full(self.normalized_shape, 1)
            self.bias = self._full(self.normalized_shape, 0) if bias else None

    def forward(self, x, training=True):
        """Normalize x (``training`` is accepted for a uniform interface and ignored)."""
        y, self._saved = layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        self._x = x
        return y

    def backward(self, dy):
        """dx for the last forward; sets grad_weight and grad_bias."""
        self._need_forward()
        dx, dw, db = layer_norm_backward(dy, self._x, self.weight, self._saved, self.normalized_shape,
                                         param_grads=self.weight is not None)
        self.grad_weight, self.grad_bias = dw, (db if self.bias is not None else None)
        return dx


class GroupNorm(_NormModule):
    """Group normalization, like ``torch.nn.GroupNorm(num_groups, num_channels)``."""

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, dtype=np.float32, like=None):
        super().__init__(dtype, like)
        self.num_groups = _backend.integer("num_groups", num_groups, lo=1)
        C = _backend.integer("num_channels", num_channels, lo=1)
        if C % self.num_groups:
            raise ValueError(f"num_groups: must divide num_channels={C}, got {self.num_groups}")
        self.eps = _eps(eps)
        self.num_channels = C
        if affine:
            self.weight, self.bias = self._full(C, 1), self._full(C, 0)

    def forward(self, x, training=True):
        """Normalize x (``training`` is ignored)."""
        self._check_channels(x, self.num_channels, "num_channels")
        y, self._saved = group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        self._x = x
        return y

    def backward(self, dy):
        """dx for the last forward; sets grad_weight and grad_bias."""
        self._need_forward()
        dx, dw, db = group_norm_backward(dy, self._x, self.weight, self._saved,
                                         param_grads=self.weight is not None)
        self.grad_weight, self.grad_bias = dw, db
        return dx


class RMSNorm(_NormModule):
    """RMS normalization, like ``torch.nn.RMSNorm(normalized_shape, eps=None)``."""

    def __init__(self, normalized_shape, eps=None, elementwise_affine=True, dtype=np.float32, like=None):
        super().__init__(dtype, like)
        if isinstance(normalized_shape, (int, np.integer)):
            normalized_shape = (int(normalized_shape),)
        self.normalized_shape = tuple(int(s) for s in normalized_shape)
        self.eps = None if eps is None else _eps(eps)
        if elementwise_affine:
            self.weight = self._full(self.normalized_shape, 1)

    def forward(self, x, training=True):
        """Normalize x (``training`` is ignored)."""
        y, self._saved = rms_norm(x, self.normalized_shape, self.weight, self.eps)
        self._x = x
        return y

    def backward(self, dy):
        """dx for the last forward; sets grad_weight."""
        self._need_forward()
        dx, dw = rms_norm_backward(dy, self._x, self.weight, self._saved, self.normalized_shape,
                                   param_grads=self.weight is not None)
        self.grad_weight = dw
        return dx
