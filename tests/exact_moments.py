"""Exact statistics of float64 samples for the normalization tests: the mean and the biased variance
as fractions.Fraction, from the values' integer mantissas summed as Python integers (fast enough for a
few hundred thousand values), and rstd = 1 / sqrt(var + eps) correctly rounded to float64 (integer
square roots), with the distance of a float64 from them in ulps."""

import math
from fractions import Fraction

import numpy as np


def exact_moments(vals):
    """(mean, biased variance, unbiased variance) of float64 ``vals`` as exact Fractions."""
    v = np.ascontiguousarray(vals, dtype=np.float64).ravel()
    mant, ex = np.frexp(v)  # v = mant 2^ex, mant in [0.5, 1): mant 2^53 an exact integer
    ints = (mant * 2.0**53).astype(np.int64)
    ex = ex.astype(np.int64) - 53
    e0 = int(ex.min())
    s1 = s2 = 0
    for sh in np.unique(ex - e0).tolist():
        sel = ints[ex - e0 == sh].tolist()
        s1 += sum(sel) << sh
        s2 += sum(i * i for i in sel) << (2 * sh)
    n = v.size
    scale = Fraction(2) ** e0
    m2 = (Fraction(s2) - Fraction(s1 * s1, n)) * scale * scale
    return Fraction(s1, n) * scale, m2 / n, m2 / (n - 1)


def rsqrt_exact(var: Fraction, eps: float) -> Fraction:
    """1 / sqrt(var + eps) to 2^-120 relative (integer square root of the scaled value)."""
    a = var + Fraction(eps)
    k = 240 - (a.numerator.bit_length() - a.denominator.bit_length())
    k += k & 1  # even: sqrt(a 2^k) = sqrt(a) 2^(k/2)
    num, den = (a.numerator << k, a.denominator) if k >= 0 else (a.numerator, a.denominator << -k)
    root = math.isqrt(num // den)  # sqrt(a) 2^(k/2), to 2^-120 relative
    return Fraction(2 ** (k // 2), root)


def ulps(got, exact: Fraction) -> float:
    """|got - exact| in ulps of exact rounded to float64."""
    return float(abs(Fraction(float(got)) - exact) / Fraction(float(np.spacing(abs(float(exact))))))
