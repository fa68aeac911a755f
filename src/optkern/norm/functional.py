"""Functional layer, RMS, group and instance norm (the row kernels): forward ``(y, saved)`` and
backward. Batch norm (per-channel statistics) is in ``_channel_norm``, imported here: every
functional norm is ``optkern.norm.functional.<name>``."""

from __future__ import annotations

import numpy as np

from .. import _backend
from .._overlap import shares
from .._torch_written import bumps_written
from ._channel_norm import _channel_backward, _check_channel_params, _on_running, _running_forward
from ._channel_norm import batch_norm as batch_norm
from ._channel_norm import batch_norm_backward as batch_norm_backward
from ._common import BatchNormSaved as BatchNormSaved  # (what batch_norm returns, beside the others)
from ._common import (
    RMSNormSaved,
    RowNormSaved,
    _backward_module,
    _check_saved,
    _default_eps,
    _eps,
    _momentum,
    _nc_spatial,
    _ndarray,
    _no_shared_running,
    _out,
    _prod,
    _saved_int,
    _shape_arg,
    _shape_of,
    _stat_dtype,
    _xp,
)
from ._row_kernels import _row_backward, _row_forward

# ---- layer / group / instance / RMS norm (row kernels) ----------------------------


def _normalized_shape(x, normalized_shape):
    ns = _shape_arg(normalized_shape)
    k = len(ns)
    if k == 0:  # (every shape ends with (): "must be the trailing dimensions of x" said nothing wrong)
        raise ValueError("normalized_shape: expected at least one dimension (the normalized ones), got ()")
    if k > x.ndim or tuple(x.shape[x.ndim - k :]) != ns:
        raise ValueError(
            f"normalized_shape: {ns} must be the trailing dimensions of x, whose shape is {tuple(x.shape)}"
        )
    return ns  # (a zero-size one, as torch allows: empty rows, _empty_rows)


def _saved_shape(x, normalized_shape, name, stat):
    """A backward's ``normalized_shape``: the caller's, or x's dims past the saved statistics' (the
    forward's leading dims). An x of no more dims than they have (another reshape of the forward's x)
    is named with them: the default would be (), whose error blamed an argument not passed."""
    if normalized_shape is not None:
        return normalized_shape
    if stat.ndim >= x.ndim:
        raise ValueError(
            f"x, {name}: x of shape {tuple(x.shape)} has no dims past the saved statistics' {tuple(stat.shape)} "
            "(normalized_shape defaults to x.shape[saved.ndim:]); pass the forward's x or normalized_shape"
        )
    return tuple(x.shape[stat.ndim :])


def _given_rows(given, x, ns, name, stat):
    """A backward's ``normalized_shape`` as the caller gave it (None: taken from the saved statistics)
    must leave as many rows of x as ``stat`` holds: one of another forward's shape is named with the
    statistics it disagrees with (the kernel's size check blamed the saved statistics alone, which the
    caller had passed on unchanged)."""
    if given is None:
        return
    rows = _prod(x.shape[: x.ndim - len(ns)])
    if rows != stat.size:
        raise ValueError(
            f"normalized_shape, {name}: {ns} leaves {rows} rows of x of shape {tuple(x.shape)}, but {name} holds "
            f"{stat.size} (the statistics of a forward with another normalized_shape, or of another x)"
        )


@bumps_written("out", returns="out")
@_backend.on_array_device
def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5, out=None):
    """Layer normalization over the trailing ``normalized_shape`` dims of ``x``.

    Args:
      x: input, C-contiguous; its trailing dims equal ``normalized_shape``.
      normalized_shape: int or tuple of ints.
      weight, bias: optional arrays of shape ``normalized_shape``.
      eps: > 0 and finite, added to the (biased) variance (torch's ``eps=inf`` is refused: see
        :mod:`optkern.norm`).
      out: optional array to write y into (x's shape, dtype and kind).

    Returns:
      ``(y, saved)`` with ``saved`` a :class:`RowNormSaved` (mean and rstd of
      shape ``x.shape[:-len(normalized_shape)]``).
    """
    _ndarray("x", x)
    mod = _backend.backend(("x", x), ("weight", weight), ("bias", bias))
    ns = _normalized_shape(x, normalized_shape)
    eps = _eps(eps, x)
    _shape_of("weight", weight, ns)
    _shape_of("bias", bias, ns)
    lead = tuple(x.shape[: x.ndim - len(ns)])
    R, M = _prod(lead), _prod(ns)
    xp = _xp(x)
    y = _out(out, x)
    mean = xp.empty(lead, dtype=_stat_dtype(x))
    rstd = xp.empty(lead, dtype=_stat_dtype(x))
    _row_forward(mod, x, weight, bias, y, mean, rstd, R, 1, M, 1, eps)
    return y, RowNormSaved(mean, rstd, 1)


@bumps_written("out", returns="out")
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
    ns = _normalized_shape(x, _saved_shape(x, normalized_shape, "saved.mean", saved.mean))
    _given_rows(normalized_shape, x, ns, "saved.mean", saved.mean)
    R, M = _prod(x.shape[: x.ndim - len(ns)]), _prod(ns)
    return _row_backward(mod, dy, x, weight, saved.mean, saved.rstd, R, 1, M, 1, False, ns, param_grads, out=out)


@bumps_written("out", returns="out")
@_backend.on_array_device
def rms_norm(x, normalized_shape, weight=None, eps=None, out=None):
    """RMS normalization: ``y = x / sqrt(mean(x²) + eps) * weight`` over ``normalized_shape``.

    ``eps`` defaults to the machine epsilon of x's computation dtype as in
    ``torch.nn.functional.rms_norm``: ``finfo(x.dtype).eps``, float32's for float16 / bfloat16;
    ``out`` optionally receives y.
    Returns ``(y, saved)`` with ``saved`` an :class:`RMSNormSaved`.
    """
    _ndarray("x", x)
    mod = _backend.backend(("x", x), ("weight", weight))
    ns = _normalized_shape(x, normalized_shape)
    eps = _default_eps(x.dtype) if eps is None else _eps(eps, x)
    _shape_of("weight", weight, ns)
    lead = tuple(x.shape[: x.ndim - len(ns)])
    R, M = _prod(lead), _prod(ns)
    xp = _xp(x)
    y = _out(out, x)
    inv = xp.empty(lead, dtype=_stat_dtype(x))
    _row_forward(mod, x, weight, None, y, None, inv, R, 1, M, 1, eps, rms=True)
    return y, RMSNormSaved(inv)


@bumps_written("out", returns="out")
@_backend.on_array_device
def rms_norm_backward(dy, x, weight, saved: RMSNormSaved, normalized_shape=None, param_grads=True, out=None):
    """Gradients of :func:`rms_norm`: ``(dx, dweight)``; dweight is None when ``param_grads=False``.

    ``dx = r * (g - x̂ * mean(g * x̂))`` with ``r = inv_rms``, ``x̂ = r x``, ``g = weight * dy``.
    """
    saved = _check_saved(saved, RMSNormSaved, ("inv_rms",))
    mod = _backward_module(dy, x, weight, "saved.inv_rms", saved.inv_rms)
    ns = _normalized_shape(x, _saved_shape(x, normalized_shape, "saved.inv_rms", saved.inv_rms))
    _given_rows(normalized_shape, x, ns, "saved.inv_rms", saved.inv_rms)
    R, M = _prod(x.shape[: x.ndim - len(ns)]), _prod(ns)
    dx, dw, _ = _row_backward(
        mod, dy, x, weight, None, saved.inv_rms, R, 1, M, 1, True, ns, param_grads, bias_grad=False, out=out
    )
    return dx, dw


@bumps_written("out", returns="out")
@_backend.on_array_device
def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5, out=None):
    """Group normalization of ``x`` (N, C, *spatial): statistics per sample over
    ``C / num_groups`` channels and all spatial positions; per-channel affine.
    ``out`` optionally receives y. One sample whose groups hold a single value each
    (``N * C / num_groups * spatial == 1``) is a ValueError naming x, as in torch's ``F.group_norm``.

    Returns ``(y, saved)`` with ``saved`` a :class:`RowNormSaved` (mean, rstd
    of shape (N, num_groups)).
    """
    _ndarray("x", x)
    mod = _backend.backend(("x", x), ("weight", weight), ("bias", bias))
    N, C, S = _nc_spatial(x)
    G = _backend.integer("num_groups", num_groups, lo=1)
    if C % G:
        raise ValueError(f"num_groups: must divide the number of channels C={C}, got {G}")
    # torch's check (F.group_norm, so nn.GroupNorm), as batch and instance norm's: one sample whose
    # groups hold one value each normalizes nothing (y = bias, dx = 0)
    if N * (C // G) * S == 1:
        raise ValueError(
            f"x: expected more than 1 value per group (N * C / num_groups * spatial > 1, as torch's group_norm "
            f"requires), got shape {tuple(x.shape)} with num_groups={G}"
        )
    eps = _eps(eps, x)
    _shape_of("weight", weight, (C,))
    _shape_of("bias", bias, (C,))
    xp = _xp(x)
    y = _out(out, x)
    mean = xp.empty((N, G), dtype=_stat_dtype(x))
    rstd = xp.empty((N, G), dtype=_stat_dtype(x))
    _row_forward(mod, x, weight, bias, y, mean, rstd, N * G, G, C // G, S, eps)
    return y, RowNormSaved(mean, rstd, G)


@bumps_written("out", returns="out")
@_backend.on_array_device
def group_norm_backward(dy, x, weight, saved: RowNormSaved, param_grads=True, out=None):
    """Gradients of :func:`group_norm`: ``(dx, dweight, dbias)`` (per-channel parameter grads)."""
    saved = _check_saved(saved, RowNormSaved, ("mean", "rstd"))
    mod = _backward_module(dy, x, weight, "saved.mean", saved.mean)
    N, C, S = _nc_spatial(x)
    G = _saved_int(saved, "groups", 1)
    if C % G:  # (an x of another shape than the forward's: name it first)
        raise ValueError(f"x, saved.groups: x has C={C} channels, which the forward's {G} groups do not divide")
    return _row_backward(
        mod, dy, x, weight, saved.mean, saved.rstd, N * G, G, C // G, S, False, (C,), param_grads, out=out
    )


def _instance_average(a):
    """The mean over the instances (axis 0) of per-instance statistics, in float64. A column whose sum
    overflowed (float64 means near the max: the average of values <= max is <= max) is averaged again
    from its values times 2**-k, 2**k > N (exact scalings): NumPy's mean warned "overflow encountered in
    reduce" (an error under -W error, after y was written) and gave inf. Without a host sync on CuPy."""
    xp = _xp(a)
    with np.errstate(over="ignore", invalid="ignore"):
        m = a.mean(axis=0, dtype=np.float64)
        if xp is np and np.isfinite(m).all():  # (the usual case; float32 statistics never overflow here)
            return m
        k = int(a.shape[0]).bit_length()
        scaled = xp.ldexp(xp.ldexp(a.astype(np.float64, copy=False), -k).mean(axis=0), k)
        return xp.where(xp.isfinite(m), m, scaled)


@bumps_written("running_mean", "running_var", when="use_input_stats", also=("out",), returns="out")  # (else read only)
@_backend.on_array_device
def instance_norm(
    x,
    weight=None,
    bias=None,
    running_mean=None,
    running_var=None,
    use_input_stats=True,
    momentum=0.1,
    eps=1e-5,
    out=None,
):
    """Instance normalization of ``x`` (N, C, *spatial): per (sample, channel) statistics.

    With ``use_input_stats`` (default) the statistics come from each instance
    and the running buffers, when given, are updated in place with the batch
    average of the instance means and unbiased variances (as PyTorch does).
    Otherwise ``running_mean`` / ``running_var`` normalize every instance.
    ``out`` optionally receives y.

    Returns ``(y, saved)`` with ``saved`` a :class:`RowNormSaved`.
    """
    _ndarray("x", x)
    mod = _backend.backend(
        ("x", x), ("weight", weight), ("bias", bias), ("running_mean", running_mean), ("running_var", running_var)
    )
    N, C, S = _nc_spatial(x)
    eps = _eps(eps, x)
    momentum = _momentum(momentum)
    # a bool: "False" would read as True, None as False (torch raises TypeError for both)
    use_input_stats = _backend.flag("use_input_stats", use_input_stats)
    sdt = _check_channel_params(x, C, weight, bias, running_mean, running_var, written=use_input_stats)
    xp = _xp(x)
    y = _out(out, x)
    _no_shared_running(
        use_input_stats,
        [("running_mean", running_mean), ("running_var", running_var)],
        [("x", x), ("out", out), ("weight", weight), ("bias", bias)],
        out,
    )
    if not use_input_stats:
        if running_mean is None:
            raise ValueError("running_mean, running_var: required when use_input_stats=False")
        mean, rstd = _running_forward(mod, x, weight, bias, running_mean, running_var, eps, y, N, C, S)
        return y, RowNormSaved(mean, rstd, 0)
    # torch's check: one value has no variance; none (S = 0) is an empty y
    if S == 1:
        raise ValueError(
            f"x: expected more than 1 spatial element when use_input_stats=True, got shape {tuple(x.shape)}"
        )
    mean = xp.empty((N, C), dtype=sdt)
    rstd = xp.empty((N, C), dtype=sdt)
    if running_mean is None or N * S == 0:  # (an empty batch leaves the buffers alone)
        _row_forward(mod, x, weight, bias, y, mean, rstd, N * C, C, 1, S, eps)
        return y, RowNormSaved(mean, rstd, C)
    # Running buffers: the unbiased variances, with mean and rstd, from the same moments (the channel
    # kernels' statistics of x viewed as one sample of N C channels, as torch's instance norm is its
    # batch norm of that view). Recovered from rstd as 1 / rstd² - eps they lost everything below
    # eps's rounding error (a constant instance got -1.2e-12 in float32, torch's exact 0). The
    # normalization is the same view's, with the affine parameters tiled N times: no extra pass for the
    # variance, and measured as fast as the row kernel (float32 (32, 64, 56²), (8, 32, 128²), (64, 256, 49)).
    if weight is not None and not weight.flags.c_contiguous:  # (the copies below would hide it)
        raise ValueError("weight: array must be C-contiguous")
    if bias is not None and not bias.flags.c_contiguous:
        raise ValueError("bias: array must be C-contiguous")
    # ... and an out aliasing weight or bias, which the kernel refuses without running buffers: here
    # it would get tiled copies and y would overwrite the caller's parameters
    for name, p in (("weight", weight), ("bias", bias)):
        if out is not None and p is not None and p.size and out.size and shares(p, out):
            raise ValueError(f"{name} shares memory with out (aliasing arrays cannot be updated in place)")
    var = xp.empty((N, C), dtype=sdt)
    mod.channel_stats(x, mean, rstd, var, 1, N * C, S, eps)
    with np.errstate(over="ignore", invalid="ignore"):  # (|mean| rstd past the max: inf > 1)
        far = xp is not np or bool(np.any(np.abs(mean) * rstd > 1))
    if far:
        # Rows far from 0 (rules::mean_lo_needed; CuPy: always, no host sync): y, mean and rstd from
        # the row kernel, as without buffers. Its backward (instance_norm_backward, the row kernel) forms
        # x̂ around the exact mean, which the channel kernels' normalization did not (rows of 1e7 + N(0,
        # 1) in float32: y and dx 0.5 off; hunt 46a). A pass more over x (float32 (32, 64, 64²): 3.5 ->
        # 5.4 ms on one thread), only for such inputs on the CPU.
        _row_forward(mod, x, weight, bias, y, mean, rstd, N * C, C, 1, S, eps)
    else:
        w, b = (None if p is None else xp.tile(p, N) for p in (weight, bias))
        mod.channel_norm_forward(x, mean, rstd, w, b, y, 1, N * C, S, training=True)  # (batch statistics)
    # the batch averages (torch's running update of the view, averaged over the N instances), summed in
    # float64 and rounded once
    batch_mean, batch_var = (_instance_average(a).astype(sdt) for a in (mean, var))
    _on_running(
        xp, running_mean, running_var, lambda rm, rv: mod.running_stats_(rm, rv, batch_mean, batch_var, momentum)
    )
    return y, RowNormSaved(mean, rstd, C)


@bumps_written("out", returns="out")
@_backend.on_array_device
def instance_norm_backward(dy, x, weight, saved: RowNormSaved, param_grads=True, out=None):
    """Gradients of :func:`instance_norm`: ``(dx, dweight, dbias)``."""
    saved = _check_saved(saved, RowNormSaved, ("mean", "rstd"))
    mod = _backward_module(dy, x, weight, "saved.mean", saved.mean)
    N, C, S = _nc_spatial(x)
    groups = _saved_int(saved, "groups", 0)
    if groups not in (0, C):
        raise ValueError(f"saved.groups: expected 0 (running statistics) or C={C}, got {groups}")
    param_grads = _backend.flag("param_grads", param_grads)  # (a string would read as True)
    if groups == 0:  # running statistics: fixed per-channel mean / rstd
        if tuple(dy.shape) != tuple(x.shape):
            raise ValueError(f"dy: expected shape {tuple(x.shape)}, got {tuple(dy.shape)}")
        _shape_of("weight", weight, (C,))
        dx, dw, db = _channel_backward(mod, dy, x, weight, saved.mean, saved.rstd, N, C, S, False, out)
        return (dx, dw, db) if param_grads else (dx, None, None)
    return _row_backward(mod, dy, x, weight, saved.mean, saved.rstd, N * C, C, 1, S, False, (C,), param_grads, out=out)
