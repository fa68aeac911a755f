"""Dot products whose bits do not depend on the thread count.

NumPy's ``dot`` / ``vdot`` / ``linalg.norm`` of 1-D vectors go to BLAS, and OpenBLAS splits a float64
vector of more than about 10,000 elements into one partial sum per thread: the same data gave other
last bits under ``OMP_NUM_THREADS=1`` and ``2`` (from_grad's products, start vectors, power
iteration's Rayleigh quotient, gradient concentration, L-BFGS's line search, Newton-CG's model
decrease -- each then steered later steps). These sums go through the native ``cg_curvature``
kernel instead: float64 over fixed chunks added in chunk order, on the CPU and on the GPU."""

from __future__ import annotations

import math

import numpy as np

from . import _backend


def _vector(v):
    """``v`` as the native kernel takes it: C-contiguous and aligned (a copy only where it is not)."""
    v = _backend.array_module(v).ascontiguousarray(v)
    if isinstance(v, np.ndarray) and not v.flags.aligned:
        v = v.copy()
    return v


def dot(a, b) -> float:
    """``a . b`` of two real 1-D NumPy or CuPy vectors of one float dtype and size, summed in
    float64 (a float32 sum is not rounded to float32: callers that need torch's float32 value
    round it themselves)."""
    a, b = _vector(a), _vector(b)
    return float(_backend.backend(("v", a)).cg_curvature(a, b, 0.0))


def norm(v) -> float:
    """``||v||``, its squares summed as :func:`dot`'s (no scaling: see ``hessian.operators.vector_norm``
    for vectors near the ends of float64's range)."""
    return math.sqrt(dot(v, v))
