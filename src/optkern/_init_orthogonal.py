"""The orthogonal initializers of optkern.init (re-exported there): ``orthogonal_`` (Saxe et al.
2014) and LSUV (Mishkin & Matas 2016), which starts from orthogonal weights and rescales them,
layer by layer, to unit output variance: ``lsuv_`` for any model, ``lsuv_mlp_`` for
:class:`optkern.nn.MLP`."""

from __future__ import annotations

import math

import numpy as np

from . import _backend
from ._init_random import _checked, _distinct_elements, _draw, _representable, _target, make_rng
from ._torch_written import bumps_written


@_checked
def orthogonal_(w, gain=1.0, *, rng=None):
    """A (semi-)orthogonal matrix times ``gain`` (Saxe et al. 2014; torch.nn.init.orthogonal_).

    ``w`` is viewed as ``(rows, numel / rows)``; the Q factor of a QR of a
    Gaussian matrix (transposed when rows < cols) with columns multiplied by
    sign(diag R), which makes Q Haar-distributed. Rows (rows <= cols) or
    columns (rows > cols) come out orthonormal.
    """
    xp = _target(w)
    if w.ndim < 2:
        raise ValueError(f"w: orthogonal_ needs at least 2 dimensions, got shape {w.shape}")
    gain = _backend.real("gain", gain)
    _representable("gain", gain, w)  # (Q's entries are at most 1 in magnitude)
    rows = w.shape[0]
    cols = w.size // rows if rows else 0
    if w.size == 0:
        return w
    a = _draw(rng, "normal", (rows, cols), np.float64, xp)
    if rows < cols:
        a = a.T
    q, r = xp.linalg.qr(a)
    q = q * xp.sign(xp.diagonal(r))
    if rows < cols:
        q = q.T
    w[...] = (q * gain).reshape(w.shape).astype(w.dtype)
    return w


# ---- LSUV --------------------------------------------------------------------------


@bumps_written("weights")
def lsuv_(weights, forward, x, *, tol=0.1, max_iter=10, rng=None, orthogonal_start=True, eps=1e-8):
    """Layer-sequential unit-variance initialization (Mishkin & Matas 2016), in place.

    Protocol, so it works with any model:
      weights: the layers' weight arrays in forward order (each ``(out, in, ...)``; no two
        sharing memory).
      forward: ``forward(x) -> list of arrays``, the output of every layer
        (pre-activation: the result of multiplying by ``weights[i]``, plus its
        bias) for the batch ``x``, computed with the current weights.
      x: a batch of inputs (whatever ``forward`` takes).

    Each weight is first made orthogonal (``orthogonal_start``), then, layer by
    layer in order, divided by the standard deviation of its output until that
    output's variance is within ``tol`` of 1 or ``max_iter`` rescalings were
    done (``eps`` > 0 is added to the variance first). Returns the list of final
    output variances, one per layer (after ``max_iter`` rescalings maybe just outside ``tol``).
    On any error (``forward`` raising or returning something else than one non-empty real array
    with a finite variance per weight; an output of variance 0, which no rescaling changes; a
    factor past the weights' dtype's range; a variance still far from 1 after ``max_iter``
    rescalings -- below ``(1 - tol) / 10`` or above ``10 (1 + tol)``, as from a batch of variance far
    below ``eps``) the weights are restored to what they were.
    """
    weights = _backend.as_list(weights, "weights")
    if not callable(forward):
        raise TypeError(f"forward: expected a callable, got {type(forward).__name__}")
    tol = _backend.positive("tol", tol)
    max_iter = _backend.integer("max_iter", max_iter, 1, _backend.INT64_MAX)  # (a loop count: int64, as every one)
    eps = _backend.positive("eps", eps)  # a zero eps divides by the zero variance of a dead layer
    orthogonal_start = _backend.flag("orthogonal_start", orthogonal_start)
    for i, w in enumerate(weights):
        _target(w, f"weights[{i}]")
        _distinct_elements(w, f"weights[{i}]")  # (rescaled in place: a shared element once per view)
        if orthogonal_start and w.ndim < 2:
            raise ValueError(f"weights[{i}]: orthogonal_start needs at least 2 dimensions, got shape {w.shape}")
    from .swa import check_disjoint  # (imported here: optkern.swa is not needed to import optkern.init)

    # a weight listed twice (or two views of one buffer) would be rescaled for both layers: the
    # first layer's variance would be left off 1 and the returned one stale
    check_disjoint(weights, [f"weights[{i}]" for i in range(len(weights))])
    gen = make_rng(rng, _backend.array_module(weights[0]) if weights else np)
    originals = [w.copy() for w in weights]
    try:
        return _lsuv_steps(weights, forward, x, tol, max_iter, eps, gen if orthogonal_start else None)
    except BaseException:
        for w, w0 in zip(weights, originals):
            w[...] = w0
        raise


def _lsuv_steps(weights, forward, x, tol, max_iter, eps, gen) -> list:
    """LSUV's writes (arguments checked): orthogonal starts drawn from ``gen`` (None: none), then the rescaling."""
    if gen is not None:
        for w in weights:
            orthogonal_(w, rng=gen)

    def variance(i):
        return _output_variance(forward(x), i, len(weights))

    out = []
    for i, w in enumerate(weights):
        var = variance(i)
        start, total = None, 1.0
        for _ in range(max_iter):
            if abs(var - 1.0) < tol:
                break
            _check_rescalable(var, i, w, 1.0 / math.sqrt(var + eps))
            # the start weights times the product of the factors, in float64, rounded once to w's
            # dtype: ``w *= dtype(factor)`` rounded the factor first (2**-11 off in float16) and
            # the weights again at every rescaling
            start = w.astype(np.promote_types(w.dtype, np.float64)) if start is None else start
            total *= 1.0 / math.sqrt(var + eps)
            w[...] = (start * total).astype(w.dtype)
            var = variance(i)
        _check_reached(var, i, tol, eps, max_iter)
        out.append(var)
    return out


def _check_rescalable(var: float, i: int, w, factor: float) -> None:
    """ValueError naming ``forward`` where rescaling weight ``i`` cannot bring its output's variance to 1:
    a variance of 0 (a constant output on ``x``: an all-zero batch, a dead layer) is one at any scale,
    and dividing by ``sqrt(0 + eps)`` multiplied the weights by 1e4 per iteration -- float64 weights
    returned 1e40 times larger with the variance still 0, no error; float32 ones overflowed to inf
    (NumPy's cast warning, then a NaN variance blamed on ``forward``). Nor may the factor take the
    weights past their dtype's range."""
    if var == 0.0:
        raise ValueError(
            f"forward: output {i} has variance 0 on x (a constant output: an all-zero batch or a dead "
            "layer); no rescaling of its weight brings it to 1"
        )
    big = float(np.finfo(w.dtype).max) if w.dtype.kind == "f" else math.inf
    top = float(abs(w).max()) if w.size else 0.0
    if not top * factor < big:
        raise ValueError(
            f"forward: output {i} has variance {var!r}: rescaling weights[{i}] by {factor!r} overflows {w.dtype}"
        )


def _check_reached(var: float, i: int, tol: float, eps: float, max_iter: int) -> None:
    """ValueError naming ``forward`` where ``max_iter`` rescalings left output ``i``'s variance far off 1:
    below ``(1 - tol) / 10`` or above ``10 (1 + tol)``, an order of magnitude past the tolerance band (a
    variance nearer, a non-linear output on its way, is returned as it is, as the LSUV paper's loop ends
    at ``T_max``). A variance far below ``eps`` makes every factor ``1 / sqrt(var + eps)``
    about ``1 / sqrt(eps)`` whatever the output: ``x = randn * 1e-100`` (variance 1e-200) returned
    variance 1e-120 and weights 1e40 times larger after 10 rescalings, no error."""
    if (1.0 - tol) / 10.0 <= var <= 10.0 * (1.0 + tol):
        return
    why = (
        f"below eps={eps!r}, which limits each rescaling to about 1/sqrt(eps): x's scale is far from 1 "
        "(normalize it, or give more iterations)"
        if var < eps
        else "the rescaling does not converge on this forward (more iterations, or a tol it can meet)"
    )
    raise ValueError(
        f"forward: output {i} has variance {var!r} after max_iter={max_iter} rescalings of weights[{i}], far "
        f"from 1 (tol {tol!r}): {why}"
    )


def _output_variance(outs, i: int, n: int) -> float:
    """The variance of output ``i`` of ``forward``'s ``outs`` (one real array per weight), or
    TypeError / ValueError naming ``forward``."""
    if not isinstance(outs, (list, tuple)):
        raise TypeError(f"forward: expected it to return a list of arrays, got {type(outs).__name__}")
    if len(outs) != n:
        raise ValueError(f"forward: returned {len(outs)} outputs for {n} weights")
    o = _backend.as_array(outs[i], f"forward(x)[{i}]")
    if not (isinstance(o, np.ndarray) or _backend.is_cupy(o)) or o.dtype.kind not in "biuf" or o.size == 0:
        what = f"{o.dtype} array of shape {tuple(o.shape)}" if hasattr(o, "dtype") else type(o).__name__
        raise TypeError(f"forward: output {i} must be a non-empty real array, got {what}")
    var = float(o.astype("float64").var())
    if not math.isfinite(var):
        raise ValueError(f"forward: output {i} has variance {var}, expected a finite one")
    return var


@bumps_written("params")
def lsuv_mlp_(mlp, params, x, *, tol=0.1, max_iter=10, rng=None, orthogonal_start=True, zero_bias=True):
    """LSUV for the built-in :class:`optkern.nn.MLP`, in place on its flat ``params``.

    The ``W`` views of every Linear layer are made orthogonal and rescaled so
    that each layer's output (before normalization / activation) has unit
    variance on the batch ``x``; biases are zeroed first (``zero_bias``).
    Layer i's output is the prediction of the prefix network
    ``sizes[:i + 2]``, whose parameters are a prefix of the flat buffer, so
    only the MLP's public API is used. Returns the per-layer variances; on an
    error ``params`` is left as it was.
    """
    from .nn import MLP

    if not isinstance(mlp, MLP):
        raise TypeError(f"mlp: expected an optkern.nn.MLP, got {type(mlp).__name__}")
    params = _backend.as_array(params, "params")  # (a torch tensor: its view, written through)
    _target(params, "params")
    if params.ndim != 1 or params.size != mlp.num_params:
        raise ValueError(f"params: expected a flat buffer of {mlp.num_params} values, got shape {tuple(params.shape)}")
    zero_bias = _backend.flag("zero_bias", zero_bias)
    original = params.copy()  # zeroing the biases comes before lsuv_'s own checks and forward passes
    try:
        return _lsuv_mlp_steps(
            mlp, params, x, zero_bias, dict(tol=tol, max_iter=max_iter, rng=rng, orthogonal_start=orthogonal_start)
        )
    except BaseException:
        params[...] = original
        raise


def _lsuv_mlp_steps(mlp, params, x, zero_bias, lsuv_kw) -> list:
    views = mlp.views(params)
    if zero_bias:
        for v in views:
            v["b"][...] = 0
    prefixes = []
    for i in range(mlp.num_layers):
        sub = type(mlp)(
            mlp.sizes[: i + 2],
            activation=mlp.activation,
            norm=mlp.norm,
            loss="mse",
            norm_eps=mlp.norm_eps,
            dtype=mlp.dtype,
            xp=mlp.xp,
        )
        off, shape = mlp.layout[i]["b"]
        if sub.num_params != off + shape[0]:  # layout changed under us: fail loudly, never silently
            raise RuntimeError("lsuv_mlp_: optkern.nn.MLP's parameter layout is not prefix-closed")
        prefixes.append((sub, sub.num_params))

    def forward(xb):
        return [sub.predict(params[:n], xb) for sub, n in prefixes]

    return lsuv_([v["W"] for v in views], forward, x, **lsuv_kw)
