"""``hessian.cg``'s ``precond_diag`` of large entries (56th hunt, f).

CG's iterates are the same for ``M = diag(1 / d)`` and ``c M`` (any ``c > 0``), but the solve used
``1 / d`` as it was:

- ``d = 1e200`` (float64): directions ``p ~ 1e-200``, ``p.Ap`` underflowed to 0 and an SPD system
  returned ``info = -1``, "negative curvature", with ``x = 0``.
- a float64 ``d = 1e300`` with a float32 ``A``: ``1 / d`` rounded to 0 in float32, and the solve raised
  "M: the preconditioner is not positive definite (r.Mr = 0.0)", naming an ``M`` never passed.

Now ``1 / d`` is scaled by a power of two (exact: the same iterates) where it is far from 1; entries
that span more than the dtype's range (``[1, 1e300]`` for float32) are refused naming ``precond_diag``
before any product, and entries whose reciprocal is subnormal but nonzero still solve."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as sla

from optkern import hessian

A32 = np.diag(np.arange(1.0, 6.0)).astype(np.float32)
B32 = np.ones(5, np.float32)


@pytest.mark.parametrize(
    "d", [np.array([1.0, 2.0, 3.0, 4.0, 1e300]), np.array([1e60, 1.0, 1.0, 1.0, 1.0])], ids=["last", "first"]
)
def test_a_reciprocal_that_underflows_is_refused_naming_precond_diag(d):
    calls = []
    A = hessian.from_hvp(lambda v: calls.append(1) or A32 @ v, 5, np.float32)
    with pytest.raises(ValueError, match=r"^precond_diag: its reciprocal underflows float32 to 0"):
        hessian.cg(A, B32, precond_diag=d)
    assert not calls  # (before any product)


def test_subnormal_reciprocals_still_solve():
    d = np.array([1.0, 2.0, 3.0, 4.0, 1e39])  # (1 / 1e39: subnormal in float32, not 0)
    r = hessian.cg(A32, B32, precond_diag=d, maxiter=50)
    x_ref, info = sla.cg(A32.astype(np.float64), np.ones(5), M=np.diag(1.0 / d), maxiter=50)
    assert r.info == 0 == info
    np.testing.assert_allclose(r.x, x_ref, rtol=1e-5)
    np.testing.assert_allclose(r.x, 1.0 / np.arange(1.0, 6.0), rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c", [1e-300, 1e-100, 1e-30, 1e30, 1e100, 1e200, 1e300])
def test_a_scaled_diagonal_gives_the_iterates_of_the_unscaled_one(c, dtype):
    """``precond_diag = c * d``: the same solve as ``d`` (bit for bit where ``c`` is a power of two) and
    as SciPy's float64 ``cg`` with ``M = diag(1 / d)``."""
    rng = np.random.default_rng(7)
    n = 23
    B = rng.standard_normal((n, n))
    A = (B @ B.T + n * np.eye(n)).astype(dtype)
    b = rng.standard_normal(n).astype(dtype)
    d = np.diag(A).astype(np.float64)
    if dtype == np.float32 and not 1e-38 < c < 1e38:
        d = d.astype(np.float64)  # (the float64 diagonal: its scale past float32's, 1 / (c d) too)
    want = hessian.cg(A, b, precond_diag=d, rtol=1e-6)
    got = hessian.cg(A, b, precond_diag=c * d, rtol=1e-6)
    assert got.info == want.info == 0 and not got.negative_curvature
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(got.x, want.x, rtol=tol, atol=tol * float(np.abs(want.x).max()))
    # the solution (float64 residual, to the tolerance asked) and SciPy's float64 cg with M = diag(1 / d)
    A64, b64 = A.astype(np.float64), b.astype(np.float64)
    assert np.linalg.norm(b64 - A64 @ got.x) <= (1e-6 if dtype == np.float64 else 1e-5) * np.linalg.norm(b64)
    x_ref, info = sla.cg(A64, b64, M=np.diag(1.0 / d), rtol=1e-10)
    assert info == 0
    np.testing.assert_allclose(got.x, x_ref, atol=1e-5 * float(np.abs(x_ref).max()))
    two = 2.0 ** round(np.log2(c))  # a power of two: the same bits
    same = hessian.cg(A, b, precond_diag=two * d, rtol=1e-6)
    np.testing.assert_array_equal(same.x, want.x)
    assert same.iterations == want.iterations


def _system(dtype, n=19, seed=3):
    rng = np.random.default_rng(seed)
    B = rng.standard_normal((n, n))
    A = (B @ B.T + n * np.eye(n)).astype(dtype)
    return A, rng.standard_normal(n).astype(dtype), 1.0 / np.diag(A).astype(np.float64)


MS = {
    "callable": lambda c, w, dtype: lambda r: (c * w).astype(dtype) * r,
    "matrix": lambda c, w, dtype: np.diag(c * w).astype(dtype),
    "LinearOperator": lambda c, w, dtype: sla.aslinearoperator(np.diag(c * w).astype(dtype)),
}


@pytest.mark.parametrize("how", sorted(MS))
# (down to 2**-900: M r itself stays normal for residuals down to the tolerance -- at 2**-1000 the user's
# products are subnormal and lose bits before the solve sees them)
@pytest.mark.parametrize("e", [-900, -700, -200, -65, 65, 200, 700, 1000])
def test_a_preconditioner_of_any_scale_gives_the_iterates_of_the_unscaled_one(how, e):
    """``M = 2**e diag(1 / diag(A))`` (float64): the iterates of ``e = 0``, bit for bit. ``M = 1e-200 I``-like
    scales returned info -1, "negative curvature", with x = 0 (p.Ap underflowed); ``1e200``-like ones
    raised "A: the product is not finite"."""
    A, b, w = _system(np.float64)
    want = hessian.cg(A, b, M=MS[how](1.0, w, np.float64), rtol=1e-8)
    c = 2.0**e
    got = hessian.cg(A, b, M=MS[how](c, w, np.float64), rtol=1e-8)
    assert got.info == want.info == 0 and not got.negative_curvature
    assert got.iterations == want.iterations
    np.testing.assert_array_equal(got.x, want.x)
    np.testing.assert_array_equal(got.residual, want.residual)


@pytest.mark.parametrize("c", [1e-30, 1e30])
def test_a_float32_preconditioner_of_large_scale_solves(c):
    A, b, w = _system(np.float32)
    got = hessian.cg(A, b, M=lambda r: np.float32(c) * (w.astype(np.float32) * r), rtol=1e-5)
    assert got.info == 0 and not got.negative_curvature
    A64, b64 = A.astype(np.float64), b.astype(np.float64)
    assert np.linalg.norm(b64 - A64 @ got.x) <= 1e-4 * np.linalg.norm(b64)
