"""Regression tests of the curvature API used with a user's own products (hunt 29)."""

import numpy as np
import pytest

from optkern import hessian

D = np.array([3.0, -1.0, 2.0, 0.5, -4.0, 1.0])


def _op(**kw):
    return hessian.from_hvp(lambda v: D * v, D.size, **kw)


@pytest.mark.parametrize("scale", [1e300, 1e-310])
def test_a_finite_nonzero_start_vector_far_from_one_is_a_direction(scale):
    # ||v0|| overflowed / underflowed: refused as "must be a finite nonzero vector"
    v0 = np.full(D.size, scale)
    v0[1] = -v0[1]
    want = np.linalg.eigvalsh(np.diag(D))
    theta = hessian.lanczos(_op(), D.size, v0=v0, return_ritz=True)[2]
    np.testing.assert_allclose(theta, want, rtol=1e-12, atol=1e-12)
    assert hessian.top_eigenvalues(_op(), 1, v0=v0).eigenvalues[0] == pytest.approx(3.0, rel=1e-10)
    assert hessian.power_iteration(_op(), 1000, 1e-12, v0=v0).eigenvalue == pytest.approx(-4.0, rel=1e-4)


def test_start_vector_scaled_by_a_power_of_two_gives_the_same_bits():
    v0 = np.random.default_rng(0).standard_normal(D.size)
    a = hessian.lanczos(_op(), 4, v0=v0)[0]
    b = hessian.lanczos(_op(), 4, v0=v0 * 2.0**-900)[0]
    np.testing.assert_array_equal(a, b)


def test_matmat_refuses_a_complex_block_naming_V():
    # the user's matmat path cast it to float64, dropping the imaginary part with only a warning
    op = _op(matmat=lambda V: D[:, None] * V)
    with pytest.raises(TypeError, match="^V: expected real numbers"):
        op.matmat(np.ones((D.size, 2)) * (1 + 1j))


def test_into_that_returns_its_product_instead_of_writing_it_is_refused():
    # `out` was left uninitialized and read as the product: wrong Ritz values, no error
    op = _op(into=lambda v, out: D * v)
    with pytest.raises(TypeError, match="^into: returned a numpy.ndarray instead of writing"):
        hessian.lanczos(op, 3)


@pytest.mark.parametrize(
    "into",
    [lambda v, out: np.multiply(D, v, out=out), lambda v, out: out.__setitem__(Ellipsis, D * v)],
    ids=["returns-out", "returns-none"],
)
def test_into_returning_out_or_none_is_fine(into):
    theta = hessian.lanczos(_op(into=into), D.size, return_ritz=True)[2]
    np.testing.assert_allclose(theta, np.sort(D), atol=1e-12)


@pytest.mark.parametrize(
    "M, exc, msg",
    [
        (lambda r: r.astype(complex), TypeError, "M: returned complex128 entries"),
        (lambda r: (100 * r).astype(np.int64), TypeError, "M: returned int64 entries"),
        (lambda r: None, TypeError, "M: expected it to return a numpy array"),
        (lambda r: r * np.nan, ValueError, "M: returned a product with NaN or Inf"),
    ],
    ids=["complex", "int", "none", "nan"],
)
def test_cg_checks_a_callable_preconditioners_product(M, exc, msg):
    # complex: the imaginary part dropped with a warning and info 0; int: "not positive definite"
    A = np.diag(np.arange(1.0, 7.0))
    with pytest.raises(exc, match=msg):
        hessian.cg(A, np.ones(6), M=M)


def test_cg_refuses_a_diagonal_preconditioner_whose_reciprocal_overflows():
    # 1 / 1e-320 = inf: the error blamed the operator's products ("fn: ... NaN or Inf")
    op = hessian.from_hvp(lambda v: np.arange(1.0, 7.0) * v, 6)
    with pytest.raises(ValueError, match="^precond_diag: its reciprocal overflows float64"):
        hessian.cg(op, np.ones(6), precond_diag=np.full(6, 1e-320))


@pytest.mark.parametrize("scale", [1e200, 1e300, 1e-160, 1e-200, 1e-300])
def test_cg_solves_a_right_hand_side_far_from_one(scale):
    # r.r overflowed (1e200: x = 0 "converged", info 0) or underflowed (1e-200: the same; 1e-160:
    # x off by 1e-3, "converged")
    rng = np.random.default_rng(1)
    B = rng.standard_normal((7, 7))
    A = B @ B.T + np.eye(7)
    b = rng.standard_normal(7)
    want = np.linalg.solve(A, b)
    op = hessian.from_hvp(lambda v: A @ v, 7)
    seen = []
    res = hessian.cg(op, b * scale, x0=0.5 * want * scale, rtol=1e-10, callback=lambda x: seen.append(x.copy()))
    assert res.info == 0
    np.testing.assert_allclose(res.x / scale, want, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(res.residual / scale, b - A @ (res.x / scale), atol=1e-12)
    np.testing.assert_allclose(seen[-1], res.x)
    assert res.residual_norm / scale <= 1e-10 * np.linalg.norm(b) * 1.001
