"""The total norm's parts shared by one process and the ranks of a distributed ``clip_grad_norm_``
(``comm=``): the scaled p-norm's sum and root for p > ``_SCALED_P``, and the ranks' reduction."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from . import _backend

#: Above this p the total norm is taken as ``m * (sum (|g| / m)^p)^(1/p)`` with ``m = max |g|``.
#: The plain ``sum |g|^p`` (torch's at any p) leaves float64's normal range beyond it for float32
#: values (1.4e-45^p .. 3.4e38^p): it overflowed to inf, so clipping zeroed the gradients ([0.5,
#: 0.5, 3] at p=2000), or underflowed to a zero norm. The native kernel's sum for other p up to 6
#: is of ``|g| 2^-e`` (``2^e <= max |g|``: exact, rules/pnorm.hpp): float64 gradients past 1e51 no
#: longer overflow it, and the norm is within about an ulp of the exact one at any scale (the
#: unscaled root was 20-35 ulps off for gradients of 1e+-30). In float64: for p = 1, 2 and inf the
#: norm is torch's to the bit; for other p it may differ from torch's (a float32 norm of per-array
#: float32 norms) by an ulp of float32.
_SCALED_P = 6.0


def _scaled_sum(xp, grads, m, p: float):
    """sum over ``grads`` of (|g| / m)^p in float64, array by array in order (``m``: the largest |g|
    of every array the norm takes, where finite and positive; else the terms unscaled)."""
    scale = xp.where(xp.isfinite(m) & (m > 0), m, 1.0)
    s = xp.zeros(1, dtype=np.float64)
    for g in grads:
        s += xp.sum((xp.abs(g).astype(np.float64) / scale) ** p)  # terms <= 1, the largest one 1
    return s


def _scaled_root(xp, s, m, p: float):
    """The norm from ``_scaled_sum``'s ``s``: m s^(1/p), or m itself where it is 0, inf or NaN."""
    ok = xp.isfinite(m) & (m > 0)
    return xp.where(ok, xp.where(ok, m, 1.0) * s ** (1.0 / p), m)


@np.errstate(all="ignore")  # (as _scaled_norm)
def _global_norm(buf, p: float, comm, grads=()):
    """``buf`` (this rank's norm; for p = 2 its square, for p > ``_SCALED_P`` its max |g|) becomes
    the norm over every rank's part, in place; returns it as a float for NumPy, None for CuPy (the
    value stays on the device). ``grads``: this rank's (p > ``_SCALED_P`` sums their terms again)."""
    from .distributed.communicator import as_communicator

    comm = as_communicator(comm)
    if p == math.inf:
        comm.allreduce(buf, "max", check=False)
    elif p > _SCALED_P:
        # every rank's terms scaled by the global max |g|, summed, the ranks' sums added and rooted
        # once: the one process's _scaled_norm where the float64 sums are exact (the ranks' norms,
        # rooted then raised to p again, were off it by the roots' rounding)
        xp = _backend.array_module(buf)
        comm.allreduce(buf, "max", check=False)
        s = _scaled_sum(xp, grads, buf, p)
        comm.allreduce(s, "sum", ordered=True, check=False)
        buf[...] = _scaled_root(xp, s, buf, p)
    elif p in (1.0, 2.0):  # (p = 2: buf holds this rank's ||g||^2, _local_norm's grad_sq_norm)
        comm.allreduce(buf, "sum", ordered=True, check=False)  # one number: ordered costs nothing, every rank agrees
        if p == 2.0:
            _backend.array_module(buf).sqrt(buf, out=buf)
    else:  # the ranks' norms scaled as the native kernel scales its terms (rules/pnorm.hpp)
        xp = _backend.array_module(buf)
        m = buf.copy()
        comm.allreduce(m, "max", check=False)
        ok = xp.isfinite(m) & (m > 0)
        scale = xp.where(ok, xp.ldexp(1.0, xp.frexp(xp.where(ok, m, 1.0))[1] - 1), 1.0)  # 2^e <= m
        buf /= scale
        buf **= p
        comm.allreduce(buf, "sum", ordered=True, check=False)
        buf[...] = scale * _root(xp, buf, p)
    return float(buf[0]) if isinstance(buf, np.ndarray) else None


def _root(xp, s, p: float):
    """``s^(1/p)`` with 1 / p rounded and its rounding put back as rules::pnorm_root puts it,
    ``pow(s, q) (1 + ql ln s)``: the plain root moved by ln(s) / p of 1 / p's rounding."""
    q = 1.0 / p
    ql = float((1 - Fraction(p) * Fraction(q)) / Fraction(p))  # (exact, then rounded: the fma's)
    t = s**q
    good = xp.isfinite(s) & (s > 0)
    return xp.where(good, t + t * (ql * xp.log(xp.where(good, s, 1.0))), t)
