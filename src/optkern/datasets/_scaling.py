"""Standardizing a data file's features by one set of rows (the training rows: no validation
row's value may reach the training inputs)."""

from __future__ import annotations

import numpy as np

from ._errors import DataError


def _minus(x: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """``x - lo`` as float64 for integer ``x`` (``lo``: one integer per column, x's dtype), rounded
    once: converted first, int64/uint64 columns near 2**63 that differ by less than float64's
    spacing there (2**63 + 0..39) became one value, and the column all zeros. The difference
    is formed modulo 2**64 in uint64 (exact: its magnitude is below 2**64), its sign by comparing."""
    xu, lu = x.astype(np.uint64), lo.astype(np.uint64)  # (two's complement: wraps negative int64)
    up = (xu - lu).astype(np.float64)
    down = (lu - xu).astype(np.float64)
    return np.where(x >= lo, up, -down)


def _standardized(x: np.ndarray, rows, parts, dtype, name: str) -> list:
    """``x[p]`` for each index array ``p`` in ``parts``, every column standardized by the mean and
    standard deviation of ``x[rows]`` alone (no other row's value reaches the result), as ``dtype``.
    A column constant on ``rows`` (max == min) is only centred, on that value (the mean of equal
    values (7 / 11) can miss them by an ulp, and the std's residue ~1e-17 scaled such a column to
    +-1). The mean is taken of each column less its minimum on ``rows``: of 1 + k * 2**-52 (or
    1e300 times that) the sum's rounding was as large as the spread, and standardized values were
    off by 0.05; a second pass corrects the mean by the residues' mean. Each column is first scaled
    by a power of two that brings its peak on ``rows`` to [0.5, 1) (exact, and it does not change
    the result), so values near 1e300 (or past float32's 3e38) cannot overflow the difference, the
    variance or the cast; in long double where x is (its values past float64's range made the peak
    inf, the column 0). Integer columns are shifted by their minimum in integer arithmetic."""
    integer = x.dtype.kind in "iu"
    ft = np.float64 if integer else np.result_type(x.dtype, np.float64)
    xr = x[rows]
    lo, hi = xr.min(0), xr.max(0)
    const = hi == lo
    base = lo

    def shift(a: np.ndarray) -> np.ndarray:  # (integers: exact, so each column's minimum on rows is 0)
        return _minus(a, base) if integer else a.astype(ft)

    xr = shift(xr)
    lo = np.zeros(lo.shape, ft) if integer else lo.astype(ft)
    peak = np.abs(xr).max(0)
    e = np.where(const | ~np.isfinite(peak), 0, np.frexp(peak)[1])  # (constant columns: centred only)
    lo = np.ldexp(lo, -e)
    d = np.ldexp(xr, -e) - lo
    mu = d.mean(0)
    mu = mu + (d - mu).mean(0)
    sd = np.where(const, 1, np.sqrt(np.square(d - mu).mean(0)))
    sd = np.where(sd > 0, sd, 1)
    mu = np.where(const, 0, mu)
    out = []
    for p in parts:
        with np.errstate(over="ignore", invalid="ignore"):
            zp = (((np.ldexp(shift(x[p]), -e) - lo) - mu) / sd).astype(dtype)
        if not np.all(np.isfinite(zp)):  # (a validation value past the training rows' range by ~1e38)
            raise DataError(f"{name}: features overflow {np.dtype(dtype)} when standardized by the training rows")
        out.append(zp)
    return out
