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

import numpy as np

from . import _backend

__all__ = ["uniform", "rademacher"]

_UINT64_MAX = (1 << 64) - 1


def _shape(shape) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        out = tuple(_backend.integer("shape", int(s) if isinstance(s, np.integer) else s, lo=0) for s in shape)
    except TypeError:
        raise TypeError(f"shape: expected an int or a tuple of ints, got {shape!r}") from None
    return out


def _u64(name: str, value) -> int:
    v = _backend.integer(name, int(value) if isinstance(value, np.integer) else value, lo=0)
    if v > _UINT64_MAX:
        raise ValueError(f"{name}: must be < 2**64, got {v}")
    return v


def _prepare(shape, seed, offset, dtype, like):
    shape = _shape(shape)
    seed = _u64("seed", seed)
    offset = _u64("offset", offset)
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise TypeError(f"dtype: expected float32 or float64, got {dt}")
    if offset + math.prod(shape) > _UINT64_MAX + 1:
        raise ValueError("offset: offset + size overflows the 64-bit counter")
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
