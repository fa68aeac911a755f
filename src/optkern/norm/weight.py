"""Weight normalization ``w = g * v / ‖v‖`` (Salimans & Kingma 2016): forward and backward."""

from __future__ import annotations

import numpy as np

from .. import _backend
from ._common import WeightNormSaved, _check_saved, _ndarray, _saved_names, _stat_dtype, _xp


def _wn_layout(v, g, dim, name="dim", norm=None):
    """(slices, axis) of ``v`` along ``dim`` (``name``: how errors call it). ``norm``: the saved
    per-slice norms of a backward call; a ``dim`` that disagrees with both them and ``g`` is
    the one named."""
    if v.ndim == 0:
        raise ValueError("v: expected at least one dimension")
    if dim is None:
        rows, perm = 1, None
    else:
        d = _backend.integer(name, dim)
        if not -v.ndim <= d < v.ndim:
            raise ValueError(f"{name}: out of range for v with {v.ndim} dims, got {dim}")
        d %= v.ndim
        rows, perm = int(v.shape[d]), d
    if g.size != rows:
        if norm is not None and norm.size == g.size:
            raise ValueError(
                f"{name}: {dim} gives {rows} slices of v, but g and saved.norm hold {g.size} "
                "(a dim other than the forward's)"
            )
        raise ValueError(f"g: expected {_backend.counted(rows, 'element')} (one per slice along dim), got {g.size}")
    return rows, perm


def _wn_row_len(v, rows):
    """The elements of one slice (``v``: the caller's, so that an error shows its shape)."""
    if rows == 0:
        return 1
    if v.size == 0:
        raise ValueError(f"v: every slice must be non-empty, got shape {tuple(v.shape)}")
    return v.size // rows


def _to_rows(a, d, name):
    """``a`` with axis d first, C-contiguous (a copy unless d == 0). ``a`` itself must be
    C-contiguous along every ``dim``, as every normalization input (the axis move's copy hid a
    strided one: it was taken along every dim but 0)."""
    if not a.flags.c_contiguous:
        raise ValueError(f"{name}: array must be C-contiguous")
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
    over all of v, one scalar g; a negative ``dim`` counts from the last axis,
    as NumPy's -- torch's ``weight_norm(dim=-1)`` means the whole tensor, here
    ``dim=None``, and its scalar ``g`` is refused for ``dim=-1``). ``g`` holds one value per slice along
    ``dim`` (any shape with that many elements, e.g. PyTorch's keepdim
    shape). Returns ``(w, saved)`` with ``saved`` a :class:`WeightNormSaved`.
    A slice holding NaN or ±inf has a NaN norm, and a NaN or zero norm raises
    ValueError on NumPy input (CuPy: w is NaN there; checking would synchronize
    the host). Norms are overflow-safe up to the dtype's max on CPU and GPU.
    """
    _ndarray("v", v)
    _ndarray("g", g)
    mod = _backend.backend(("v", v), ("g", g))
    rows, d = _wn_layout(v, g, dim)
    vr = _to_rows(v, d, "v")
    xp = _xp(v)
    w = xp.empty_like(vr)
    norm = xp.empty(rows, dtype=_stat_dtype(v))
    mod.weight_norm_forward(vr, g, w, norm, rows, _wn_row_len(v, rows))
    ok = np.isfinite(norm) & (norm > 0) if xp is np else None  # (CuPy: not checked, it would sync the host)
    if ok is not None and not ok.all():  # NaN or ±inf in v gives a NaN norm: one error for both
        i = int(np.argmin(ok))
        raise ValueError(
            f"v: slice {i} along dim has norm {float(norm[i])}; w = g v / ||v|| needs a finite nonzero norm"
        )
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
    rows, d = _wn_layout(v, g, saved.dim, "saved.dim", saved.norm)
    vr, dwr = _to_rows(v, d, "v"), _to_rows(dw, d, "dw")
    xp = _xp(v)
    dv = xp.empty_like(vr)
    dg = xp.empty_like(g)
    n = _wn_row_len(v, rows)
    try:
        mod.weight_norm_backward(dwr, vr, g, saved.norm, dv, dg, rows, n)
    except (TypeError, ValueError):
        with _saved_names("norm"):  # (renamed on the error path only)
            raise
    return dg, _from_rows(dv, d)
