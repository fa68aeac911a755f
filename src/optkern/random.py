"""Counter-based random numbers (Philox4x32-10) that are the same on CPU and GPU.

Element ``i`` of a C-ordered result is drawn from the global index
``g = offset + i``: its 32-bit word is lane ``g % 4`` of Philox4x32-10 with
counter ``(g // 4, 0)`` (low 64 bits; upper 64 zero) and key ``seed``
(split into two 32-bit words, low first), exactly as curand's
``curand_init(seed, 0, 0)`` / ``curand4`` stream. float64 uniforms take
two words per element (counter ``g // 2``, lanes ``2 (g % 2)`` and
``2 (g % 2) + 1``). Hence ``uniform(n, seed=s, offset=k)`` equals
``uniform(n + k, seed=s)[k:]``, and consecutive calls can continue one stream
by advancing ``offset`` by the number of elements drawn.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from . import _backend

__all__ = ["uniform", "rademacher"]

_UINT64_MAX = (1 << 64) - 1


def _shape(shape, name: str = "shape", itemsize: int = 1) -> tuple[int, ...]:
    """``shape`` (an int or a sequence of ints >= 0) as a tuple, small enough for an array of
    ``itemsize``-byte elements; TypeError / ValueError naming ``name`` (NumPy's would not)."""
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (shape,)
    elif getattr(shape, "ndim", None) == 0 and getattr(shape, "dtype", None) is not None:
        # a 0-d integer array is a size, as NumPy's (np.empty(np.array(3)), Generator.uniform(size=...)):
        # iterating it raised "iteration over a 0-d array", named as a bad shape
        if shape.dtype.kind in "iu":
            shape = (shape.item(),)
    try:
        if isinstance(shape, (str, bytes)):
            raise TypeError
        out = tuple(_backend.integer(name, s, 0, _backend.INT64_MAX) for s in shape)
    except TypeError:
        raise TypeError(f"{name}: expected an int or a tuple of ints, got {shape!r}") from None
    # NumPy sizes an array by its nonzero dimensions (a zero-size (2**62, 4, 0) is "too big" too)
    if math.prod(s for s in out if s) * itemsize > _backend.INT64_MAX:
        raise ValueError(f"{name}: {out} spans more than 2**63 - 1 bytes")
    return out


def _float_dtype(dtype, allowed=None) -> np.dtype:
    """``dtype`` as a floating NumPy dtype (one of ``allowed`` when given), else TypeError naming
    dtype. None is refused: ``np.dtype(None)`` would be a silent float64."""
    try:
        dt = None if dtype is None else np.dtype(dtype)
    except (TypeError, ValueError):
        dt = None
    if dt is None or not np.issubdtype(dt, np.floating) or (allowed is not None and dt not in allowed):
        want = " or ".join(np.dtype(a).name for a in allowed) if allowed else "a floating dtype"
        raise TypeError(f"dtype: expected {want}, got {repr(dtype) if dt is None else dt}")
    return dt


def _u64(name: str, value) -> int:
    v = _backend.integer(name, int(value) if isinstance(value, np.integer) else value, lo=0)
    if v > _UINT64_MAX:
        raise ValueError(f"{name}: must be < 2**64, got {v}")
    return v


def _seed_offset(seed, offset, size: int, what: str = "size") -> tuple[int, int]:
    """``seed`` and ``offset`` as integers in [0, 2**64), the stream's indices ``offset .. offset +
    size - 1`` below 2**64 too (``what`` names the size in the message); the checks of every Philox
    stream's arguments (here and optkern.norm.dropout)."""
    seed, offset = _u64("seed", seed), _u64("offset", offset)
    if offset + size > _UINT64_MAX + 1:
        raise ValueError(f"offset: offset + {what} overflows the 64-bit counter")
    return seed, offset


def _prepare(shape, seed, offset, dtype, like):
    dt = _float_dtype(dtype, (np.float32, np.float64))
    shape = _shape(shape, itemsize=dt.itemsize)
    seed, offset = _seed_offset(seed, offset, math.prod(shape))
    if like is not None and _backend.is_cupy(like):
        import cupy

        return cupy.empty(shape, dtype=dt), _backend.cuda_module(), seed, offset
    if like is not None and not isinstance(like, np.ndarray):
        raise TypeError(f"like: expected a numpy or cupy array, got {type(like).__name__}")
    return np.empty(shape, dtype=dt), _backend.cpu, seed, offset


@_backend.on_array_device
def uniform(shape, seed: int, offset: int = 0, dtype=np.float32, like=None):
    """Uniform samples in [0, 1) from the Philox4x32-10 stream ``(seed, offset)``.

    Args:
      shape: int or tuple of ints.
      seed: key, an integer in [0, 2**64).
      offset: index of the first element in the stream, in [0, 2**64).
      dtype: float32 (24 random bits per value) or float64 (53 bits).
      like: a CuPy array to get a CuPy result on its device (CuPy's current
        stream); None or a NumPy array gives a NumPy result.

    Returns:
      An array of ``shape``; identical on CPU and GPU for the same arguments.
    """
    out, mod, seed, offset = _prepare(shape, seed, offset, dtype, like)
    mod.random_uniform_(out, seed, offset)
    return out


@_backend.on_array_device
def rademacher(shape, seed: int, offset: int = 0, dtype=np.float32, like=None):
    """Rademacher signs (+1 or -1, each with probability 1/2) from ``(seed, offset)``.

    The sign of element ``i`` is the top bit of its 32-bit Philox word (see the
    module docstring), so float32 and float64 results hold the same signs.
    Arguments as for :func:`uniform`. Useful for Hutchinson trace probes.
    """
    out, mod, seed, offset = _prepare(shape, seed, offset, dtype, like)
    mod.random_rademacher_(out, seed, offset)
    return out
