"""The half formats' spellings and views for :mod:`optkern.lowp` (bfloat16 as ``ml_dtypes.bfloat16``
or raw uint16 bits, float16 as ``np.float16``): which format an array or a ``dtype`` argument names,
and the view a result is returned as. Public names are importable from :mod:`optkern.lowp`."""

from __future__ import annotations

import numpy as np

from . import _backend

HALF_DTYPES = ("bfloat16", "float16")


def _option(name: str, value, options: tuple) -> str:
    """``value``, one of the strings ``options``: TypeError naming ``name`` for a non-string (an
    array would make ``value in options`` ambiguous), ValueError for another string."""
    expected = " or ".join(map(repr, options))
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected {expected}, got {type(value).__name__}")
    if value not in options:
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return value


def _half_dtype(dtype, name: str = "dtype") -> str:
    """'bfloat16' or 'float16' for ``dtype`` spelt as that string, a NumPy dtype or a scalar type
    (``np.float16``, ``ml_dtypes.bfloat16`` and their dtypes): the spellings of both directions
    (``to_half`` took only the strings while ``from_half`` took dtypes too, through ``str``).
    TypeError naming ``name`` for what is no dtype (``np.dtype(None)`` would read as float64), a
    ValueError for another dtype, a byte-swapped half among them (other bits than the kernels')."""
    if isinstance(dtype, str):
        return _option(name, dtype, HALF_DTYPES)
    if not (isinstance(dtype, np.dtype) or (isinstance(dtype, type) and issubclass(dtype, np.generic))):
        # (a torch dtype shown as itself: its type's name, "dtype", read as a NumPy dtype refused)
        got = repr(dtype) if type(dtype).__module__ == "torch" else type(dtype).__name__
        raise TypeError(f"{name}: expected 'bfloat16' or 'float16' (a string, NumPy dtype or scalar type), got {got}")
    dt = np.dtype(dtype)
    if dt == np.float16:  # (native order: '>f2' is not equal)
        return "float16"
    if _backend.is_bfloat16(dt):
        return "bfloat16"
    raise ValueError(f"{name}: expected 'bfloat16' or 'float16' (or its NumPy dtype), got {dt.str}")


def bfloat16_dtype():
    """``ml_dtypes.bfloat16`` as a NumPy dtype, or None when ml_dtypes is not installed."""
    try:
        import ml_dtypes
    except ImportError:
        return None
    return np.dtype(ml_dtypes.bfloat16)


def half_format(a, dtype=None, name: str = "a") -> str:
    """'bfloat16' or 'float16' for a 2-byte array: from its dtype, or from ``dtype``
    when ``a`` holds raw uint16 bits. Raises TypeError otherwise (naming ``name``)."""
    dt = np.dtype(getattr(a, "dtype", np.float64))
    dtype = None if dtype is None else _half_dtype(dtype)
    if dt == np.float16:
        fmt = "float16"
    elif _backend.is_bfloat16(dt):
        fmt = "bfloat16"
    elif dt == np.uint16:
        if dtype is None:
            raise TypeError("dtype: a uint16 array holds raw bits; pass dtype='bfloat16' or 'float16'")
        fmt = dtype
    else:
        raise TypeError(f"{name}: expected a float16, bfloat16 or uint16 array, got {dt}")
    if dtype is not None and dtype != fmt:
        raise TypeError(f"dtype: array is {fmt}, but dtype={dtype!r} was given")
    return fmt


def bits(a, dtype=None) -> np.ndarray:
    """The uint16 view of a half array (no copy)."""
    half_format(a, dtype)
    return a.view(np.uint16)


def _wrap(out_bits: np.ndarray, fmt: str, raw: bool):
    if raw:
        return out_bits
    if fmt == "bfloat16" and _backend.is_cupy(out_bits):
        return out_bits  # (no bfloat16 in CuPy: its raw bits)
    if fmt == "float16":
        return out_bits.view(np.float16)
    bf = bfloat16_dtype()
    return out_bits if bf is None else out_bits.view(bf)
