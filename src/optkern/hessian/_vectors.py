"""Vectors of the curvature estimators, safe at either end of the float range: ``vector_norm``
(scaled, and thread-count independent) and ``unit_vector`` (a start vector ``v / ||v||``)."""

from __future__ import annotations

import math

import numpy as np

from .. import _fixed_sums


def unit_vector(op, v, name: str = "v0"):
    """``v / ||v||``, a start vector of ``op`` (shaped and typed as its products take them); ValueError
    naming ``name`` when it is zero (it spans nothing) or not finite (every product would be NaN)."""
    v = op._vector(v, name, scale_free=True)
    big = float(op.xp.abs(v).max())
    if not math.isfinite(big) or big == 0.0:
        raise ValueError(f"{name}: must be a finite nonzero vector")
    # The direction is scale-free, but ||v|| of finite entries of 1e300 overflowed and of 1e-310
    # underflowed to 0: a valid start vector was refused as "not finite nonzero". Scaled first by a
    # power of two (exact: the same bits as v / ||v|| wherever that norm was representable).
    v = v / math.ldexp(1.0, math.frexp(big)[1] - 1)
    return v / _fixed_sums.norm(v)


_FLOOR64 = math.sqrt(float(np.finfo(np.float64).tiny)) / float(np.finfo(np.float64).eps)


def vector_norm(xp, v, axis=None):
    """``||v||`` (a float; ``axis``: the norms along it, an array of ``xp``), safe at either end of
    ``v``'s range. NumPy's and CuPy's norms square in ``v``'s dtype: entries of 1e200 (float64) or
    1e20 (float32) made it inf, of 1e-200 / 1e-25 zero, and Lanczos over ``c A`` then took every
    step for a breakdown (``top_eigenvalues``: eigenvalues wrong or the first one only). Where the
    direct norm is not finite or so small that squares may have underflowed, ``v`` is scaled by a
    power of two of its largest magnitude (exact) and the norm scaled back (LAPACK nrm2's idea).
    The whole vector's norm sums its squares in float64 by ``_fixed_sums`` (the same bits for any
    thread count, where NumPy's goes to BLAS); the norms along an axis are NumPy's / CuPy's
    reductions (no BLAS)."""
    if axis is None:
        with np.errstate(over="ignore", under="ignore"):
            r = _fixed_sums.norm(v)
        # (float64 squares: a float32 vector's never leave the range; a float64 one's may)
        if not math.isfinite(r) or r < _FLOOR64:
            big = float(xp.abs(v).max()) if v.size else 0.0
            if math.isfinite(big) and big > 0.0:
                e = math.frexp(big)[1]
                with np.errstate(over="ignore"):  # (a norm past float64's range: inf, as NumPy's)
                    return float(np.ldexp(_fixed_sums.norm(xp.ldexp(v, -e)), e))
        return r
    fi = np.finfo(v.dtype)
    floor = math.sqrt(float(fi.tiny)) / float(fi.eps)  # (squares above tiny / eps^2: underflow lost nothing)
    with np.errstate(over="ignore", under="ignore"):
        r = xp.linalg.norm(v, axis=axis)
    if bool(xp.all(xp.isfinite(r) & (r >= floor))):
        return r
    e = xp.frexp(xp.abs(v).max(axis=axis, keepdims=True))[1]  # (0 for a zero row: left as it is)
    with np.errstate(over="ignore"):
        return xp.ldexp(xp.linalg.norm(xp.ldexp(v, -e), axis=axis), xp.squeeze(e, axis=axis))


def in_range(xp, x, f, scaled_back: bool = True):
    """``f(x)``; where its result passed float64's range though ``x`` is finite (sums of c, c, -c,
    -c: inf - inf; 1e307-sized terms), ``f(x 2^-e)`` (``2^e`` above max |x|: an exact scaling)
    times ``2^e`` for an ``f`` linear in ``x``, or as it is (``scaled_back`` False: a span). Inf
    only where the result itself is; NaN / Inf in ``x`` left to the caller
    (``check_estimate`` names op). The one rule of the estimators' sums near the range's ends (trace.py's
    estimates, ``SpectralDensity.mean``, the omega-recurrence of partial reorthogonalization)."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = f(x)
    done = math.isfinite(out) if isinstance(out, float) else bool(xp.isfinite(out).all())
    if done or not bool(xp.isfinite(x).all()):
        return out
    e = math.frexp(float(xp.abs(x).max()))[1]
    out = f(xp.ldexp(x, -e))
    if not scaled_back:
        return out
    if isinstance(out, float):
        try:
            return math.ldexp(out, e)
        except OverflowError:  # (past the range: inf, which the callers refuse naming op; math.ldexp's
            # unnamed "OverflowError: math range error" escaped trace(diag(1e308, 1e308), "hutch++", 6))
            return math.copysign(math.inf, out)
    with np.errstate(over="ignore"):
        return xp.ldexp(out, e)
