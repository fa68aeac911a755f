"""The total norm's parts shared by one process and the ranks of a distributed ``clip_grad_norm_``
(``comm=``): the scaled p-norm's partial sums, fold and root for p > ``_SCALED_P``, and the ranks'
exchange: every rank's partial sums gathered and folded as one process folds its own."""

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


def _scaled_parts(xp, grads, m, p: float):
    """(|g| / m)^p summed in float64 array by array: one part an array, in order (``m``: the largest
    |g| of every array the norm takes, where finite and positive; else the terms unscaled)."""
    scale = xp.where(xp.isfinite(m) & (m > 0), m, 1.0)
    parts = xp.zeros(len(grads), dtype=np.float64)
    for i, g in enumerate(grads):
        parts[i] = xp.sum((xp.abs(g).astype(np.float64) / scale) ** p)  # terms <= 1, the largest one 1
    return parts


def _fold(xp, parts):
    """``0 + parts[0] + parts[1] + ...`` in that order, as a 1-element float64 array: the one
    process's sum of its parts, and the ranks' gathered parts summed alike (the same additions)."""
    s = xp.zeros(1, dtype=np.float64)
    for i in range(parts.size):
        s += parts[i]
    return s


def _scaled_sum(xp, grads, m, p: float):
    """sum over ``grads`` of (|g| / m)^p in float64, array by array in order (``_scaled_parts``)."""
    return _fold(xp, _scaled_parts(xp, grads, m, p))


def _scaled_root(xp, s, m, p: float):
    """The norm from ``_scaled_sum``'s ``s``: m s^(1/p), or m itself where it is 0, inf or NaN."""
    ok = xp.isfinite(m) & (m > 0)
    return xp.where(ok, xp.where(ok, m, 1.0) * s ** (1.0 / p), m)


def _gathered(comm, xp, parts):
    """Every rank's ``parts`` in rank order, each padded with zeros to the longest (a zero adds
    nothing to a sum of terms >= 0, NaN or inf): two collectives, the count's and the parts'."""
    k = np.array([float(parts.size)])
    comm.allreduce(k, "max", check=False)
    send = xp.zeros(int(k[0]), dtype=np.float64)
    send[: parts.size] = parts
    return comm.allgather(send, check=False)


@np.errstate(all="ignore")  # (as _scaled_norm)
def _global_norm(buf, p: float, comm, grads=(), mod=None, local=None):
    """``buf`` (from ``_local_norm``: this rank's max |g| for p = inf, p > ``_SCALED_P`` and, on
    the CPU, other p than 1 and 2; on the GPU this rank's sum for p = 1 and 2, its norm for other
    p) becomes the norm over every rank's part, in place; returns it as a float for NumPy, None for
    CuPy (the value stays on the device). ``grads``: this rank's; ``mod``: their native module
    (None without grads); ``local``: the CPU's parts at p = 1 and 2 (``grad_norm_parts``).

    The one process sums its terms in parts (the native kernel's chunks; for p > ``_SCALED_P`` its
    arrays) and folds them in order; each rank takes the same parts of its own arrays, their
    terms scaled by the global max |g| as the one process scales them, the ranks gather them and
    fold them in rank order with the same fold and root: the one process's norm of the ranks'
    arrays in rank order, bit for bit whatever the values (the ranks' sums added, or their norms
    rooted and raised to p again, were an ulp or more off it). On the GPU, where the kernel's parts
    are not exposed, each rank's sum is one part (bit for bit where the float64 sums are exact;
    for p other than 1 and 2 the ranks' norms raised to p again, within a few ulps)."""
    from .distributed.communicator import as_communicator

    comm = as_communicator(comm)
    xp = _backend.array_module(buf)
    cpu = isinstance(buf, np.ndarray)
    if p == math.inf:
        comm.allreduce(buf, "max", check=False)
        return float(buf[0]) if cpu else None
    if p > _SCALED_P or (cpu and p not in (1.0, 2.0)):
        comm.allreduce(buf, "max", check=False)  # the global max |g|, which scales every rank's terms
    if p > _SCALED_P:
        parts = _scaled_parts(xp, grads, buf, p)
    elif cpu:
        empty = np.zeros(0)
        if p in (1.0, 2.0):
            parts = empty if mod is None else local
        else:
            parts = empty if mod is None else mod.grad_norm_parts(grads, p, buf)
    elif p in (1.0, 2.0):
        parts = buf.copy()
    else:  # the rank's norm by the power of two of the ranks' largest (rules/pnorm.hpp's scale)
        m = buf.copy()
        comm.allreduce(m, "max", check=False)
        ok = xp.isfinite(m) & (m > 0)
        scale = xp.where(ok, xp.ldexp(1.0, xp.frexp(xp.where(ok, m, 1.0))[1] - 1), 1.0)  # 2^e <= m
        parts = (buf / scale) ** p
    every = _gathered(comm, xp, parts)
    if p > _SCALED_P:
        buf[...] = _scaled_root(xp, _fold(xp, every), buf, p)
    elif cpu:
        _backend.backend(("out", buf)).grad_norm_finish(every, p, buf)
    else:
        s = _fold(xp, every)
        buf[...] = s if p == 1.0 else xp.sqrt(s) if p == 2.0 else scale * _root(xp, s, p)
    return float(buf[0]) if cpu else None


def _root(xp, s, p: float):
    """``s^(1/p)`` with 1 / p rounded and its rounding put back as rules::pnorm_root puts it,
    ``pow(s, q) (1 + ql ln s)``: the plain root moved by ln(s) / p of 1 / p's rounding."""
    q = 1.0 / p
    ql = float((1 - Fraction(p) * Fraction(q)) / Fraction(p))  # (exact, then rounded: the fma's)
    t = s**q
    good = xp.isfinite(s) & (s > 0)
    return xp.where(good, t + t * (ql * xp.log(xp.where(good, s, 1.0))), t)
