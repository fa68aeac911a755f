"""Standardizing a data file's features by one set of rows (the training rows: no validation
row's value may reach the training inputs)."""

from __future__ import annotations

import numpy as np

from ._errors import DataError


def _standardized(x: np.ndarray, rows, parts, dtype, name: str) -> list:
    """``x[p]`` for each index array ``p`` in ``parts``, every column standardized by the mean and
    standard deviation of ``x[rows]`` alone (no other row's value reaches the result), as ``dtype``.
    A column constant on ``rows`` (max == min) is only centred: the mean of equal values (7 / 11)
    can miss them by an ulp, and the std's rounding residue (~1e-17) scaled such a column to +-1.
    Each column is first divided by its peak on ``rows`` (which does not change the result), so
    values near 1e300 (or past float32's 3e38) cannot overflow the variance or the cast; in long
    double where x is (its values past float64's range made the peak inf, the column 0)."""
    ft = np.result_type(x.dtype, np.float64)
    xr = x[rows].astype(ft)
    const = xr.max(0) == xr.min(0)
    peak = np.abs(xr).max(0)
    scale = np.where(const | ~(peak > 0), 1, peak)
    z = xr / scale
    mu = np.where(const, xr[0], z.mean(0))
    sd = np.where(const, 1, z.std(0))
    sd = np.where(sd > 0, sd, 1)
    out = []
    for p in parts:
        with np.errstate(over="ignore", invalid="ignore"):
            zp = ((x[p].astype(ft) / scale - mu) / sd).astype(dtype)  # (constant columns: scale, sd 1)
        if not np.all(np.isfinite(zp)):  # (a validation value past the training rows' range by ~1e38)
            raise DataError(f"{name}: features overflow {np.dtype(dtype)} when standardized by the training rows")
        out.append(zp)
    return out
