"""The calls of the row kernels (``row_norm_forward`` / ``row_norm_backward``) that layer, RMS,
group and instance norm share (``functional``): their arguments checked and made, rows of no
elements included, and the native errors renamed for the caller's arguments."""

from __future__ import annotations

import contextlib

import numpy as np

from .. import _backend
from ._common import _native_name, _out, _saved_names, _shape_of, _xp


def _empty_rows(R, G, Cg, S, mean, rstd, params=(), prefix=""):
    """(R, Cg, S, mean, rstd, params) for the row kernels. Rows of no elements (M = Cg S = 0: a
    zero-size spatial dim of a group / instance norm, or a zero-size normalized_shape of a layer /
    RMS norm) go as R = 0 rows of Cg = max(Cg, 1), S = 1: the same zero elements of x (the kernels
    refuse Cg = 0 and S = 0), so that they still check every other argument. The statistics, whose
    size they would check against R, are checked here and passed as their first 0 elements (keeping
    the dtype, which they check). With Cg = 0 the parameters (and parameter gradients) have no
    elements either: each goes as a stand-in of G elements of its dtype and kind, which the kernels
    check (and, for a gradient, fill with the sum over no rows; the caller keeps its empty one)."""
    if Cg * S:
        return R, Cg, S, mean, rstd, params
    for name, a in (("mean", mean), ("rstd", rstd)):
        if a is not None and a.size != R:
            raise ValueError(f"{prefix}{name}: expected {_backend.counted(R, 'element')}, got {a.size}")
    if Cg == 0:
        params = tuple(None if p is None else _xp(p).empty(G, dtype=p.dtype) for p in params)
    return 0, max(Cg, 1), 1, *(None if a is None else a.reshape(-1)[:0] for a in (mean, rstd)), params


def _row_forward(mod, x, weight, bias, y, mean, rstd, R, G, Cg, S, eps, rms=False):
    """row_norm_forward, also for rows of no elements: an empty y (as torch's) with the statistics
    of empty rows that torch's native_group_norm / native_layer_norm / _fused_rms_norm give, mean 0
    and rstd (inv_rms) NaN."""
    if Cg * S == 0:
        if mean is not None:
            mean[...] = 0
        rstd[...] = np.nan
    R, Cg, S, m, r, (w, b) = _empty_rows(R, G, Cg, S, mean, rstd, (weight, bias))
    mod.row_norm_forward(x, w, b, y, m, r, R, G, Cg, S, eps, rms)


def _row_backward(mod, dy, x, weight, mean, rstd, R, G, Cg, S, rms, wshape, param_grads, bias_grad=True, out=None):
    xp = _xp(x)
    # a bool: a string such as "False" would read as True and return gradients the caller declined
    param_grads = _backend.flag("param_grads", param_grads)
    if tuple(dy.shape) != tuple(x.shape):
        raise ValueError(f"dy: expected shape {tuple(x.shape)}, got {tuple(dy.shape)}")
    _shape_of("weight", weight, wshape)
    dx = _out(out, x)
    pdt = x.dtype if weight is None else weight.dtype
    dweight = xp.empty(wshape, dtype=pdt) if param_grads else None
    dbias = xp.empty(wshape, dtype=pdt) if param_grads and bias_grad else None
    R, Cg, S, mean, rstd, (w, dw, db) = _empty_rows(R, G, Cg, S, mean, rstd, (weight, dweight, dbias), "saved.")
    try:
        mod.row_norm_backward(dy, x, w, mean, rstd, dx, dw, db, R, G, Cg, S, rms)
    except (TypeError, ValueError):  # (renamed here, on the error path: entered per call, ~1.6 us)
        with (
            _native_name("dx", "out") if out is not None else contextlib.nullcontext(),
            _saved_names("mean", "rstd", "inv_rms"),
        ):
            raise
    return dx, dweight, dbias
