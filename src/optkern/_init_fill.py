"""torch.nn.init's remaining initializers for optkern.init (re-exported there): ``trunc_normal_``,
``constant_``, ``ones_``, ``eye_``, ``dirac_`` and ``sparse_``, in optkern.init's style (NumPy or
CuPy arrays filled in place and returned; ``rng`` a seed, a Generator or None; every argument
checked, naming it, before anything is drawn or written)."""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from . import _backend
from ._init_random import (
    _checked,
    _distinct_elements,
    _draw,
    _fill_normal_,
    _in_place,
    _representable,
    _target,
    make_rng,
)

# ---- the inverse of the standard normal CDF ---------------------------------------------------
# NumPy has no erfinv / ndtri (scipy is not a dependency): Acklam's rational approximation
# (relative error < 1.2e-9 over (0, 1)), written once over ``xp`` so that NumPy and CuPy arrays
# drawn from one NumPy generator get the same numbers.
_A = (
    -3.969683028665376e01,
    2.209460984245205e02,
    -2.759285104469687e02,
    1.383577518672690e02,
    -3.066479806614716e01,
    2.506628277459239e00,
)
_B = (
    -5.447609879822406e01,
    1.615858368580409e02,
    -1.556989798598866e02,
    6.680131188771972e01,
    -1.328068155288572e01,
    1.0,
)
_C = (
    -7.784894002430293e-03,
    -3.223964580411365e-01,
    -2.400758277161838e00,
    -2.549732539343734e00,
    4.374664141464968e00,
    2.938163982698783e00,
)
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00, 1.0)
_P_LOW = 0.02425


def _poly(coefs, x):
    r = coefs[0]
    for c in coefs[1:]:
        r = r * x + c
    return r


def _ndtri(p, xp):
    """Phi^-1(p) for float64 ``p`` in (0, 1), elementwise."""
    q = p - 0.5
    r = q * q
    central = _poly(_A, r) * q / _poly(_B, r)
    with np.errstate(divide="ignore", invalid="ignore"):  # (each branch is computed everywhere)
        t = xp.sqrt(-2.0 * xp.log(xp.minimum(p, 1.0 - p)))
    tail = _poly(_C, t) / _poly(_D, t)  # Phi^-1 of the lower tail; the upper one is its negative
    return xp.where(p < _P_LOW, tail, xp.where(p > 1.0 - _P_LOW, -tail, central))


def _ndtr(x: float) -> float:
    """Phi(x), accurate in the lower tail (erfc, not 1 + erf)."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _inward(value: float, dtype, up: bool) -> float:
    """The dtype's nearest value to ``value`` on the inside of the interval (>= it for the lower
    end ``up``, <= it for the upper): the draws are clipped there, in the dtype, so rounding to it
    cannot step outside [a, b]."""
    t = np.dtype(dtype).type
    with np.errstate(over="ignore"):
        v = t(value)
    if up and float(v) < value:
        v = np.nextafter(v, t(np.inf))
    elif not up and float(v) > value:
        v = np.nextafter(v, t(-np.inf))
    return v


@_checked
def trunc_normal_(w, mean=0.0, std=1.0, a=-2.0, b=2.0, *, rng=None):
    """Fill ``w`` with N(mean, std^2) truncated to [a, b] (torch.nn.init.trunc_normal_'s defaults).

    Inverse-CDF sampling, as torch's: ``mean + std * Phi^-1(Phi(alpha) + U (Phi(beta) - Phi(alpha)))``
    with ``alpha = (a - mean) / std``, ``beta = (b - mean) / std``, in float64 (an interval in the
    upper tail is drawn as its mirror image in the lower one, where Phi keeps its precision), then
    clipped to [a, b] in ``w``'s dtype: every value lies in [a, b]. As torch, warns where ``mean`` is
    more than 2 std outside [a, b]; an interval without probability mass in float64 (or without a
    value of ``w``'s dtype) is refused, naming ``b``.
    """
    xp = _target(w)
    mean, std = _backend.real("mean", mean), _backend.positive("std", std)
    a, b = _backend.real("a", a), _backend.real("b", b)
    if not a < b:
        raise ValueError(f"b: must be > a ({a}), got {b}")
    lo, hi = _inward(a, w.dtype, True), _inward(b, w.dtype, False)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
        raise ValueError(f"b: [a, b] = [{a}, {b}] holds no finite value of the array's dtype {w.dtype}")
    alpha, beta = (a - mean) / std, (b - mean) / std
    if not (math.isfinite(alpha) and math.isfinite(beta)):
        raise ValueError(f"std: {std!r} makes (a - mean) / std or (b - mean) / std overflow")
    mirror = alpha > 0  # all of [alpha, beta] above 0: draw on [-beta, -alpha] and negate
    if mirror:
        alpha, beta = -beta, -alpha
    lo_p, hi_p = _ndtr(alpha), _ndtr(beta)
    if not hi_p > lo_p:
        raise ValueError(f"b: [a, b] = [{a}, {b}] has no probability mass under N({mean}, {std}^2) in float64")
    if mean < a - 2 * std or mean > b + 2 * std:
        warnings.warn(
            "mean is more than 2 std from [a, b] in trunc_normal_. The distribution of values may be incorrect.",
            UserWarning,
            stacklevel=3,
        )
    if w.size == 0:
        return w
    p = _draw(rng, "uniform", w.shape, np.float64, xp)
    p = lo_p + (hi_p - lo_p) * p
    p = xp.clip(p, np.nextafter(0.0, 1.0), np.nextafter(1.0, 0.0))  # Phi^-1 of 0 or 1 is infinite
    z = _ndtri(p, xp)
    if mirror:
        z = -z
    # clipped in float64 to [lo, hi], the dtype's values inside [a, b], then rounded: rounding stays
    # in [lo, hi] (both representable), and an [a, b] past the dtype's range casts no value to inf
    # (clipped after the cast, a float16 fill with b = 1e6 was right but warned "overflow
    # encountered in cast": an error under -W error)
    w[...] = xp.clip(mean + std * z, float(lo), float(hi)).astype(w.dtype)
    return w


@_in_place
def constant_(w, val):
    """Fill ``w`` with ``val`` (ValueError naming it where the dtype cannot hold it)."""
    _target(w)
    val = _backend.real("val", val)
    _representable("val", val, w)
    w[...] = val
    return w


@_in_place
def ones_(w):
    """Fill with ones."""
    _target(w)
    w[...] = 1
    return w


@_in_place
def eye_(w):
    """The identity matrix in a 2-D ``w`` (rectangular: ones on the main diagonal), as torch.eye."""
    xp = _target(w)
    if w.ndim != 2:
        raise ValueError(f"w: eye_ needs a 2-dimensional array, got shape {w.shape}")
    _distinct_elements(w)  # (zeros then ones: a shared element kept a one off the diagonal)
    w[...] = 0
    n = min(w.shape)
    idx = xp.arange(n)
    w[idx, idx] = 1
    return w


@_in_place
def dirac_(w, groups=1):
    """The Dirac delta in a 3-, 4- or 5-D convolution weight ``(out, in, *kernel)``: a convolution
    with it is the identity on the first ``min(out / groups, in)`` channels of each of ``groups``
    groups (torch.nn.init.dirac_): a one at ``[g * out/groups + d, d, *(kernel // 2)]``."""
    _target(w)
    groups = _backend.integer("groups", groups, 1)
    if w.ndim not in (3, 4, 5):
        raise ValueError(f"w: dirac_ needs a 3, 4 or 5-dimensional array, got shape {w.shape}")
    if w.shape[0] % groups:
        raise ValueError(f"groups: must divide w's first dimension ({w.shape[0]}), got {groups}")
    _distinct_elements(w)  # (as eye_: zeros then ones, a shared element kept the one)
    per_group = w.shape[0] // groups
    centre = tuple(k // 2 for k in w.shape[2:])
    w[...] = 0
    for g in range(groups):
        for d in range(min(per_group, w.shape[1])):
            w[(g * per_group + d, d) + centre] = 1
    return w


@_checked
def sparse_(w, sparsity, std=0.01, *, rng=None):
    """A sparse 2-D ``w`` (Martens 2010; torch.nn.init.sparse_): N(0, std^2) values with exactly
    ``ceil(sparsity * rows)`` zeros in every column, at rows drawn without replacement."""
    xp = _target(w)
    if w.ndim != 2:
        raise ValueError(f"w: sparse_ needs a 2-dimensional array, got shape {w.shape}")
    if isinstance(sparsity, bool) or not isinstance(sparsity, numbers.Real):
        raise TypeError(f"sparsity: expected a real number, got {type(sparsity).__name__}")
    try:
        sparsity = float(sparsity)
    except OverflowError:  # (an int past float's range)
        raise ValueError(f"sparsity: must be in [0, 1], got an integer of {int(sparsity).bit_length()} bits") from None
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity: must be in [0, 1], got {sparsity}")
    std = _backend.nonnegative("std", std)
    _representable("std", std, w)
    rows, cols = w.shape
    if w.size == 0:
        return w
    gen = make_rng(rng, xp)  # one generator for the values and the zeros' rows
    _fill_normal_(w, std, gen)
    zeros = math.ceil(sparsity * rows)
    if zeros:
        # per column, the rows of the ``zeros`` smallest of independent uniform keys: a uniformly
        # random subset of that size, as torch's randperm(rows)[:zeros]
        keys = _draw(gen, "uniform", (rows, cols), np.float64, xp)
        order = xp.argsort(keys, axis=0)[:zeros]
        w[order, xp.arange(cols)[None, :]] = 0
    return w
