"""``hessian.cg``'s inputs made ready for its loop: the preconditioner (``M`` or ``precond_diag``) as one
``r -> M r`` function, and a float16 ``A`` read in float64 as SciPy's ``cg`` reads it (split from cg.py,
which kept the iteration)."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .. import _backend
from ._linear_operator import is_scipy_sparse
from ._products import real_array
from .operators import CurvatureOperator, _runs_scipy_matvec, _scipy_matvec, as_operator
from .symmetry import require_symmetric


def _preconditioner(M, precond_diag, n, xp, dtype) -> tuple[Callable | None, int]:
    """``(f, e)``: ``f(r) = M r / 2**e`` (None without a preconditioner; ``e`` is nonzero only for a
    ``precond_diag`` far from 1, see below). The caller undoes ``2**e`` on what scales with ``M``."""
    if M is not None and precond_diag is not None:
        raise ValueError("M, precond_diag: give at most one preconditioner")
    if precond_diag is not None:
        d = real_array(xp, precond_diag, "precond_diag")  # in its own dtype: 1 / d is taken in it
        if d.shape != (n,):
            raise ValueError(f"precond_diag: expected shape ({n},), got {tuple(d.shape)}")
        dmin = float(d.min()) if n else 1.0
        if not (dmin > 0.0) or not math.isfinite(float(d.max())):
            raise ValueError(f"precond_diag: must be positive and finite (a diagonal SPD preconditioner), min {dmin}")
        with np.errstate(over="ignore"):
            inv = 1.0 / d
        big = float(inv.max())
        if not math.isfinite(big):  # (a subnormal d: else "fn: returned NaN or Inf" blamed A)
            raise ValueError(f"precond_diag: its reciprocal overflows {np.dtype(dtype).name}, min {dmin}")
        e = math.frexp(big)[1]
        if -64 <= e <= 64:
            e = 0
        else:
            # CG's iterates are those of M = diag(1 / d) times any c > 0 (z, p, r.z scale by c, the step by
            # 1 / c): a power of two c (exact) puts 1 / d near 1. Unscaled, d = 1e200 made p ~ 1e-200 and
            # p.Ap underflow to 0, "negative curvature" (info -1) for an SPD A, and d = 1e300 with a float32
            # A a zero preconditioner (1 / d rounded to 0 in float32).
            inv = xp.ldexp(inv, -e)
        inv = inv.astype(dtype)  # (max below 2**64 once scaled: no overflow)
        if not float(inv.min()) > 0.0:
            # (entries spanning more than the dtype's range: 1 / d of [1, 1e300] for a float32 A has a 0, a
            # preconditioner only semidefinite, and once r lay in its null space cg raised "M: the
            # preconditioner is not positive definite (r.Mr = 0.0)", naming an M the caller never passed)
            raise ValueError(
                f"precond_diag: its reciprocal underflows {np.dtype(dtype).name} to 0 (entries from {dmin} to "
                f"{float(d.max())} span more than its range)"
            )
        return (lambda r: r * inv), e
    if M is None:
        return None, 0
    if callable(M) and not hasattr(M, "matvec"):
        # checked as from_hvp checks fn (and given a copy of r, see _on_copy): a complex M r lost its
        # imaginary part with only a warning, an integer one was truncated (then "not positive
        # definite"), None was "returned shape ()"
        return CurvatureOperator(M, n, dtype, xp, None, "M", check=("M", "M", "M")).matvec, 0
    M = require_symmetric(M, "M", "CG")
    op = as_operator(M, "M") if not hasattr(M, "matvec") else M
    m_xp = getattr(op, "xp", None) if isinstance(op, CurvatureOperator) else None
    if m_xp is not None and m_xp.__name__ != xp.__name__:
        # (its first product failed inside: NumPy's unnamed "Implicit conversion to a NumPy array is
        # not allowed", or "v: cannot be read as an array" naming M's own argument)
        raise TypeError(f"M: works on {m_xp.__name__} vectors, but A on {xp.__name__} vectors")
    shape = getattr(op, "shape", None)
    if shape is not None and tuple(shape) != (n, n):  # else the first product names its vector, not M
        raise ValueError(f"M: expected an operator of shape ({n}, {n}) like A, got {tuple(shape)}")
    if isinstance(op, CurvatureOperator):
        return op.matvec, 0
    if _runs_scipy_matvec(op):
        # (SciPy's matvec reshapes the product itself: one of another size raised NumPy's unnamed
        # "cannot reshape array"; checked as a callable M's products are, on a copy of r, in A's dtype)
        return CurvatureOperator(
            _scipy_matvec(op, n, "M.matvec"), n, dtype, xp, None, "M", check=("M.matvec",) * 3
        ).matvec, 0
    return _on_copy(op.matvec), 0


def z_exponent(xp, z, r) -> int:
    """``e`` such that ``M r / 2**e`` is within ``2**64`` of ``r`` in magnitude (0 where it is already, or
    where either is zero or not finite: the solve's own checks decide then), from the first ``z = M r``.
    CG's iterates are those of ``c M`` for any ``c > 0`` (``z``, ``p`` and ``r.z`` scale by ``c``, the
    step by ``1 / c``), and a power of two is exact: the same ``x``, bit for bit (``p`` and ``r.z``, which
    scale, are scaled back by the caller). Unscaled, ``M = 1e-200 I``
    made ``p.Ap`` underflow to 0 and an SPD system returned info -1, "negative curvature", with ``x = 0``;
    ``M = 1e200 I`` overflowed it, "A: the product is not finite"."""
    zmax = float(xp.abs(z).max()) if z.size else 0.0
    rmax = float(xp.abs(r).max()) if r.size else 0.0
    if not (math.isfinite(zmax) and math.isfinite(rmax) and zmax > 0.0 and rmax > 0.0):
        return 0
    e = math.frexp(zmax)[1] - math.frexp(rmax)[1]
    return e if abs(e) > 64 else 0


def _on_copy(f: Callable) -> Callable:
    """``r -> f(copy of r)``: the residual ``r`` is the solver's state. A user's preconditioner that
    scales its input in place (``np.divide(r, d, out=r)``) changed ``r`` itself, and ``cg`` returned a
    wrong ``x`` (error 1.6 on a 20 x 20 SPD system) as converged, info 0. (``CurvatureOperator``s give
    their functions a copy already.)"""
    return lambda r: f(r.copy())


def _half_as_double(A):
    """A float16 matrix (NumPy, CuPy, a torch tensor) as a float64 copy, anything else as it is: SciPy's
    ``cg``, whose contract this follows, solves its system in float64 (``make_system`` reads a matrix of
    a type other than float32 / float64 / complex as float64); it was refused, "expected a float32 or
    float64 matrix, got float16". (Not in ``as_operator``: the estimators other than CG follow no SciPy
    routine that reads float16.)"""
    if hasattr(A, "matvec") or is_scipy_sparse(A) or str(getattr(A, "dtype", "")) not in ("float16", "torch.float16"):
        return A
    return _backend.as_array(A, "A").astype(np.float64)
