"""The schedules' arithmetic where an intermediate leaves float64's range while the value does not.

Each form is the plain formula (torch's, bit for bit) wherever its intermediates stay in range, and
a range-safe one only past that: ``cosine(lr=1e308)`` doubled ``lr - eta_min`` before halving it
(inf from step 1, refused as an overflow, where every value is at most ``lr``), and ``lr * gamma **
n`` took ``gamma ** n`` to 0 (or inf) where the product is a normal float (``exponential(1e300,
0.1)`` at step 400: 0 for 1e-100; torch's ExponentialLR multiplies by gamma step by step and keeps
it)."""

from __future__ import annotations

import math
import sys

from .base import power

#: the smallest normal float64: a ``gamma ** n`` below it has lost bits (or is 0)
_TINY = sys.float_info.min


def cos_between(lo: float, hi: float, t, period) -> float:
    """``lo + (hi - lo) * (1 + cos(pi t / period)) / 2`` (torch's CosineAnnealingLR closed form):
    the factor halved before the product, which is the same bits (halving is exact) but never
    doubles ``hi - lo`` past float64's top."""
    return lo + (hi - lo) * ((1.0 + math.cos(math.pi * t / period)) / 2.0)


def between(start: float, end: float, frac: float) -> float:
    """``start + (end - start) * frac`` for ``frac`` in [0, 1]; where ``end - start`` overflows
    (``linear(1e308, -1e308, n)``: NaN at step 0, inf after), the same line as
    ``start * (1 - frac) + end * frac``, whose terms stay in range."""
    span = end - start
    if -math.inf < span < math.inf:
        return start + span * frac
    return start * (1.0 - frac) + end * frac


def scaled_power(lr: float, gamma: float, n: int) -> float:
    """``lr * gamma ** n`` (``lr``, ``gamma`` > 0, ``n`` >= 0): the plain product where ``gamma ** n``
    is a normal float, else ``gamma ** n`` as powers of at most 2**512 each (``pow``'s, within an
    ulp), their mantissas multiplied and binary exponents summed apart, joined with ``lr``'s at the
    end: a few ulp off the exact product, inf only where it is past float64's top, 0 below its bottom."""
    p = power(gamma, n)
    if _TINY <= p < math.inf:
        return lr * p
    bits = n * math.log2(gamma)  # (the power's binary exponent, about)
    if abs(bits) > _REACH:  # (no lr brings it back into range)
        return math.inf if bits > 0 else 0.0
    chunk = max(1, int(512 / abs(math.log2(gamma))))  # (gamma ** chunk within 2**+-513: a normal float)
    m, e = math.frexp(lr)
    while n:
        c = min(n, chunk)
        m, k = math.frexp(m * gamma**c)  # (the mantissa kept in [0.5, 1): no under- or overflow)
        e += k
        n -= c
    try:
        return math.ldexp(m, e)
    except OverflowError:  # (past float64's top: the schedule refuses it as an overflow)
        return math.inf


#: the binary exponents a power can reach while some lr (2**-1074 .. 2**1024) keeps the product finite and
#: nonzero, with a margin
_REACH = 2200.0


def scaled_real_power(c: float, base: float, p: float, bits: float | None = None) -> float:
    """``c * base ** p`` (``base`` >= 0, ``base ** p`` <= 1: a decay; ``c`` of either sign,
    ``polynomial``'s ``lr - end`` is negative where it rises to ``end``): the plain product where
    ``base ** p`` is a normal float (or 0 exactly: a zero base or factor), else 2 to the product's
    binary logarithm, its terms summed apart (``bits``: ``log2(base)`` where ``base`` itself is past
    float64's top), taken of ``|c|`` and the sign put back (``log2`` of a negative ``c`` raised an
    unnamed "math domain error"): within ~1e-12 relative there (log2's error times the exponent's
    size)."""
    q = base**p
    if q >= _TINY or base == 0.0 or c == 0.0:
        return c * q
    x = math.log2(abs(c)) + p * (math.log2(base) if bits is None else bits)
    if x < -1100.0:  # (below the smallest subnormal, 2**-1074)
        return math.copysign(0.0, c)
    e = math.floor(x)
    return math.copysign(math.ldexp(2.0 ** (x - e), e), c)


def inverse_power(lr: float, k: float, t: int, p: float) -> float:
    """``lr * (1 + k t) ** -p`` (inverse_time; ``lr``, ``p`` > 0, ``k`` >= 0), range-safe
    (``scaled_real_power``): ``(1e10) ** -40`` was 0 where ``1e300 * 1e-400`` is 1e-100, and ``1 + k t``
    past float64's top (inf) made every value 0."""
    b = 1.0 + k * t
    bits = None if b < math.inf else math.log2(k) + math.log2(t)  # (the 1 is below an ulp of k t)
    return scaled_real_power(lr, b, -p, bits)
