"""Correctly rounded results computed exactly (with fractions), independent of any fma the machine
or NumPy has: the reference for passes that promise one rounding of a b + c."""

from __future__ import annotations

from fractions import Fraction

import numpy as np


def round_to(v: Fraction, dtype) -> np.generic:
    """v rounded to nearest (ties to even) in dtype (float32 or float64), finite results only."""
    dtype = np.dtype(dtype)
    near = dtype.type(float(v))  # within one ulp of the answer (float32: float64 first, then float32)
    best = None
    for c in (np.nextafter(near, dtype.type(-np.inf)), near, np.nextafter(near, dtype.type(np.inf))):
        key = (abs(Fraction(float(c)) - v), int(c.view(np.uint32 if dtype.itemsize == 4 else np.uint64)) & 1)
        if best is None or key < best[0]:
            best = (key, c)
    return best[1]


def fma(a, b, c) -> np.ndarray:
    """a * b + c with one rounding, elementwise, in the common dtype of the (finite) arrays."""
    a, b, c = np.broadcast_arrays(*(np.asarray(x) for x in (a, b, c)))
    dtype = np.result_type(a, b, c)
    out = np.empty(a.shape, dtype)
    for i, (x, y, z) in enumerate(zip(a.ravel(), b.ravel(), c.ravel())):
        out.flat[i] = round_to(Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z)), dtype)
    return out
