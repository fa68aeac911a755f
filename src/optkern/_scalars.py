"""The checks of scalar arguments (hyper-parameters, sizes, flags), re-exported by ``_backend``:
each returns the value as a Python float / int / bool or raises TypeError / ValueError naming it."""

from __future__ import annotations

import math
import numbers

import numpy as np


def real(name: str, value) -> float:
    """A finite real number."""
    t = type(value)
    # (exact float / int pass the type test without numbers.Real's ABC check, ~0.5 us a call on
    # every hyper-parameter of every step; a bool is of type bool and takes the full test)
    if t is not float and t is not int and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    try:
        v = float(value)
    except OverflowError:  # an int beyond float's range
        raise ValueError(f"{name}: must be finite, got an integer beyond float range") from None
    if not math.isfinite(v):
        raise ValueError(f"{name}: must be finite, got {v}")
    return v


def in_range(name: str, value, lo=None, hi=None, *, lo_open=False, hi_open=False) -> float:
    """A finite real in [lo, hi] (ends open where asked); None means unbounded."""
    v = real(name, value)
    bad = (lo is not None and (v < lo or (lo_open and v == lo))) or (
        hi is not None and (v > hi or (hi_open and v == hi))
    )
    if bad:
        lb = "(" if lo_open or lo is None else "["  # infinities are never allowed: open ends
        rb = ")" if hi_open or hi is None else "]"
        lo_s = "-inf" if lo is None else repr(lo)
        hi_s = "inf" if hi is None else repr(hi)
        raise ValueError(f"{name}: must be in {lb}{lo_s}, {hi_s}{rb}, got {v!r}")
    return v


def positive(name: str, value) -> float:
    return in_range(name, value, 0.0, None, lo_open=True)


def nonnegative(name: str, value) -> float:
    return in_range(name, value, 0.0, None)


def finite_in(name: str, value: float, dtype, whose: str = "the arrays' dtype") -> float:
    """``value`` rounded to ``dtype`` (the arrays', as a kernel rounds it), or ValueError naming it
    where that is inf: an overflowing coefficient writes infs and NaNs (inf * 0) into every array.
    ``whose``: why the value meets ``dtype``, where not as the arrays' (float32_lr's float32 lr)."""
    with np.errstate(over="ignore", under="ignore"):
        r = float(np.dtype(dtype).type(value))
    if not math.isfinite(r):
        raise ValueError(f"{name}: {value!r} is not finite in {np.dtype(dtype).name} ({whose})")
    return r


def flag(name: str, value) -> bool:
    """A bool (Python or NumPy): a string like "no" or a list must not read as a choice."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__}")
    return bool(value)


INT64_MAX = 2**63 - 1


def integer(name: str, value, lo=None, hi=None) -> int:
    """An integer in [lo, hi] (None: unbounded; ``hi=INT64_MAX`` for what a native call takes as int64)."""
    if type(value) is not int and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}")  # (exact int: no ABC check)
    v = int(value)
    if lo is not None and v < lo:
        raise ValueError(f"{name}: must be >= {lo}, got {v}")
    if hi is not None and v > hi:
        raise ValueError(f"{name}: must be <= {hi}, got {v}")
    return v


def array_elements(name: str, n: int, dtype, shown=None, rows: int | None = None) -> int:
    """``n`` when one array of ``n`` elements of ``dtype`` (a NumPy dtype, or the string 'bfloat16'
    of a CuPy module) -- ``n`` per row of ``rows`` rows, where given (0 counted as 1) -- can exist:
    at most 2**63 - 1 bytes, NumPy's and CuPy's bound. Past it, a ValueError naming ``name`` and
    the most it takes (``shown``: the value as the caller gave it, a shape, ``n`` then the product of
    its nonzero dimensions: NumPy sizes a zero-size array by those too), checked before anything
    is built: the allocation raised NumPy's unnamed "array is too big"."""
    itemsize, label = (2, dtype) if isinstance(dtype, str) else (np.dtype(dtype).itemsize, np.dtype(dtype).name)
    most = INT64_MAX // (itemsize * max(rows or 1, 1))
    if rows is not None and rows > 1:
        label = f"{label} over {rows} rows"
    if n > most and shown is not None:  # (a shape: its element count bounded)
        raise ValueError(
            f"{name}: must hold <= {most} elements (2**63 - 1 bytes of {label}), "
            f"got {shown} ({n} in its nonzero dimensions)"
        )
    if n > most:
        raise ValueError(f"{name}: must be <= {most} (2**63 - 1 bytes of {label}), got {n}")
    return n
