"""Per-channel normalization (the ``channel_stats`` / ``channel_norm_*`` kernels: statistics per
channel over the batch and spatial dims, or fixed running statistics): batch norm, forward
``(y, saved)`` and backward, and the per-channel pieces instance norm with running statistics
shares. :mod:`optkern.norm.functional` re-exports ``batch_norm`` / ``batch_norm_backward``."""

from __future__ import annotations

import contextlib

import numpy as np

from .. import _backend
from .._torch_written import bumps_written
from ._common import (
    BatchNormSaved,
    _backward_module,
    _buffer,
    _check_saved,
    _eps,
    _momentum,
    _native_name,
    _nc_spatial,
    _ndarray,
    _no_shared_running,
    _out,
    _prod,
    _rstd,
    _saved_names,
    _shape_of,
    _stat_dtype,
    _xp,
)


def _check_channel_params(x, C, weight, bias, running_mean, running_var, written=True):
    """Validate per-channel affine parameters and running buffers (``written``: updated by the call,
    so writable); the statistics dtype."""
    _shape_of("weight", weight, (C,))
    _shape_of("bias", bias, (C,))
    sdt = _stat_dtype(x)
    _buffer("running_mean", running_mean, (C,), sdt, written)
    _buffer("running_var", running_var, (C,), sdt, written)
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean, running_var: give both or neither")
    return sdt


def _on_running(xp, running_mean, running_var, update):
    """``update(rm, rv)``: a native call that updates the running buffers (rules::running_stat),
    given contiguous copies of strided ones (valid buffers), copied back once it returns."""
    rm, rv = (a if a is None or a.flags.c_contiguous else xp.ascontiguousarray(a) for a in (running_mean, running_var))
    update(rm, rv)
    for buf, tmp in ((running_mean, rm), (running_var, rv)):
        if tmp is not buf:
            buf[...] = tmp


def _layout(N, S):
    """(N, S) for the channel kernels. An empty x (N = 0 or a zero-size spatial dim, S = 0) goes as
    (0, S = 1): the same zero elements, a layout the kernels take (they refuse S = 0, their blocks
    are sized by S), so that they still check every argument and then write nothing (torch returns
    an empty output, and zero parameter gradients, for such an x)."""
    return (N, S) if N * S else (0, 1)


def _running_forward(mod, x, weight, bias, running_mean, running_var, eps, y, N, C, S):
    """Normalize with fixed per-channel running statistics; returns (mean, rstd) for backward."""
    mean = running_mean.copy()
    rstd = _rstd(running_var, eps)
    N, S = _layout(N, S)
    mod.channel_norm_forward(x, mean, rstd, weight, bias, y, N, C, S)
    return mean, rstd


def _channel_backward(mod, dy, x, weight, mean, rstd, N, C, S, batch_stats, out=None, lo=None):
    """(dx, dweight, dbias) of a per-channel normalization (batch or fixed running statistics; ``lo``:
    the batch statistics' mean low parts from ``channel_stats``, or None: computed from x again)."""
    xp = _xp(x)
    dx = _out(out, x)
    pdt = x.dtype if weight is None else weight.dtype
    dweight = xp.empty(C, dtype=pdt)
    dbias = xp.empty(C, dtype=pdt)
    N, S = _layout(N, S)
    try:
        mod.channel_norm_backward(dy, x, mean, rstd, weight, dx, dweight, dbias, N, C, S, batch_stats, lo)
    except (TypeError, ValueError):  # (renamed here, on the error path: entered per call, ~1.6 us)
        names = _saved_names("mean", "rstd", "lo")
        with _native_name("dx", "out") if out is not None else contextlib.nullcontext(), names:
            raise
    return dx, dweight, dbias


@bumps_written("running_mean", "running_var", when="training", also=("out",), returns="out")  # (eval reads them only)
@_backend.on_array_device
def batch_norm(
    x, weight=None, bias=None, running_mean=None, running_var=None, training=True, momentum=0.1, eps=1e-5, out=None
):
    """Batch normalization of ``x`` of shape (N, C) or (N, C, *spatial), per channel.

    Training uses the batch statistics over N and the spatial dims and, when
    the running buffers are given, updates them in place as PyTorch does:
    ``running = (1 - momentum) * running + momentum * batch`` with the
    unbiased batch variance. Eval (``training=False``) normalizes with
    ``running_mean`` / ``running_var`` (both required). An empty ``x`` (N = 0
    or a zero-size spatial dim) gives an empty y and leaves the buffers alone,
    as in torch.

    Args:
      x: input, C-contiguous.
      weight, bias: optional (C,) affine parameters (x's dtype).
      running_mean, running_var: optional (C,) buffers in the statistics dtype (only read in eval:
        read-only ones, or ones aliasing each other, weight, bias or x, are valid there; not out).
        Updated in training: writable, aligned and sharing no byte with another argument; strided
        ones through contiguous copies. NumPy: the two columns of one (C, 2) array share no byte and
        are taken, as torch takes them; CuPy: buffers are compared by their byte bounds only
        (``_overlap.shares``), so such columns are refused there ("shares memory").
      training: a bool: batch statistics (True) or running statistics (False).
      momentum: in [0, 1].
      eps: > 0 and finite, added to the variance (torch's ``eps=inf`` is refused: see :mod:`optkern.norm`).
      out: optional array to write y into (x's shape, dtype and kind).

    Returns:
      ``(y, saved)`` with ``saved`` a :class:`BatchNormSaved` for
      :func:`batch_norm_backward`.
    """
    _ndarray("x", x)
    mod = _backend.backend(
        ("x", x), ("weight", weight), ("bias", bias), ("running_mean", running_mean), ("running_var", running_var)
    )
    if x.ndim < 2:
        raise ValueError(f"x: expected shape (N, C) or (N, C, *spatial), got {tuple(x.shape)}")
    eps = _eps(eps, x)
    momentum = _momentum(momentum)
    # a bool, as torch requires: "False" or None read as a choice would train and overwrite the buffers
    training = _backend.flag("training", training)
    N, C = int(x.shape[0]), int(x.shape[1])
    if C < 1:
        raise ValueError(f"x: expected at least one channel (C = x.shape[1] >= 1), got shape {tuple(x.shape)}")
    S = _prod(x.shape[2:])
    sdt = _check_channel_params(x, C, weight, bias, running_mean, running_var, written=training)
    xp = _xp(x)
    y = _out(out, x)
    _no_shared_running(
        training,
        [("running_mean", running_mean), ("running_var", running_var)],
        [("x", x), ("out", out), ("weight", weight), ("bias", bias)],
        out,
    )
    if training:
        # torch's check: one value has no variance; none (an empty batch or spatial dim) is an empty y
        if N * S == 1:
            raise ValueError(f"x: expected more than 1 value per channel when training, got shape {tuple(x.shape)}")
        if N * S == 0:
            # torch leaves the running buffers alone; the statistics of no values: mean 0, rstd NaN (as
            # torch's group norm of empty groups). The call checks every argument and writes nothing.
            mean, rstd = xp.zeros(C, dtype=sdt), xp.full(C, np.nan, dtype=sdt)
            n, s = _layout(N, S)
            mod.channel_norm_forward(x, mean, rstd, weight, bias, y, n, C, s)
            return y, BatchNormSaved(mean, rstd, True)
        mean = xp.empty(C, dtype=sdt)
        rstd = xp.empty(C, dtype=sdt)
        var = xp.empty(C, dtype=sdt)  # unbiased, from the moments that give mean and rstd
        lo = xp.empty(C, dtype=sdt)  # the means' low parts, from them too: forward and backward read no moments again
        mod.channel_stats(x, mean, rstd, var, N, C, S, eps, lo)
        # the forward call updates the running buffers, after it has checked every argument
        _on_running(
            xp,
            running_mean,
            running_var,
            lambda rm, rv: mod.channel_norm_forward(
                x, mean, rstd, weight, bias, y, N, C, S, var, rm, rv, momentum, True, lo
            ),
        )
        return y, BatchNormSaved(mean, rstd, True, lo)
    if running_mean is None:
        raise ValueError("running_mean, running_var: required when training=False")
    mean, rstd = _running_forward(mod, x, weight, bias, running_mean, running_var, eps, y, N, C, S)
    return y, BatchNormSaved(mean, rstd, False)


@bumps_written("out", returns="out")
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
    N, C, S = _nc_spatial(x)
    training = _backend.flag("saved.training", saved.training)
    _shape_of("weight", weight, (C,))
    if saved.lo is not None:
        _ndarray("saved.lo", saved.lo)
    return _channel_backward(mod, dy, x, weight, saved.mean, saved.rstd, N, C, S, training, out, saved.lo)
