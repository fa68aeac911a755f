"""hessian.cg leftovers: the curvature p.Ap near float64's max, and integer matrices (SciPy's cg takes them)."""

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as sla

from optkern import _cpu, hessian, threads

BIG = 1.7e308


@pytest.mark.parametrize("precond", [False, True])
def test_indefinite_curvature_near_the_max_is_summed_in_range(precond):
    # p.Ap = 1.7e308 + 1.7e308 - 1.7e308 (in range): the plain sum overflowed at its second term, and
    # the solve raised "A: the product is not finite (p.Ap = inf)" for an operator of finite products.
    A = np.diag([BIG, BIG, -BIG])
    b = np.ones(3)
    kw = {"precond_diag": np.ones(3)} if precond else {}  # (the unfused passes: cg_curvature)
    res = hessian.cg(A, b, stop_on_negative_curvature=False, maxiter=1, **kw)
    # one step along p = b: alpha = b.b / p.Ap = 3 / 1.7e308
    alpha = 3.0 / BIG
    assert res.iterations == 1
    np.testing.assert_allclose(res.x, alpha * b, rtol=1e-15)


def test_the_kernels_curvature_is_in_range_and_thread_independent():
    n = 1023
    p = np.ones(n)
    y = np.full(n, BIG)
    y[1::2] = -BIG  # partial sums near n/2 * 1.7e308 in the lanes; the whole sum is 1.7e308 (n odd)
    expected = BIG
    assert _cpu.cg_curvature(p, y, 0.0) == pytest.approx(expected, rel=1e-12)
    x, r, pp = np.zeros(n), np.ones(n), p.copy()
    pAp, rr = _cpu.cg_iteration_(x, r, pp, y, float(n), 0.0, 0.0, False)
    assert pAp == pytest.approx(expected, rel=1e-12) and np.isfinite(rr)
    np.testing.assert_allclose(x, n / pAp)
    # the scaled redo sums chunk by chunk in order: the same bits on one thread as on two
    big = np.full(300 * n - 1, BIG)  # (several chunks, alternating: the whole sum is BIG again)
    big[1::2] = -BIG
    ones = np.ones(big.size)
    with threads.limit_threads(1):
        one = _cpu.cg_curvature(ones, big, 0.0)
    with threads.limit_threads(2):
        two = _cpu.cg_curvature(ones, big, 0.0)
    assert one == pytest.approx(BIG, rel=1e-12) and one == two


def test_a_curvature_past_the_max_is_still_inf():
    p = np.ones(4)
    y = np.full(4, BIG)
    assert _cpu.cg_curvature(p, y, 0.0) == np.inf
    with pytest.raises(ValueError, match=r"^A: "):
        hessian.cg(np.diag([BIG] * 4), np.ones(4), maxiter=2)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_])
@pytest.mark.parametrize("sparse", [False, True])
def test_integer_matrices_are_solved_in_float64_as_scipy(dtype, sparse):
    # refused, "A: expected a float32 or float64 matrix, got int64", where SciPy's cg solved it
    M = np.array([[4, 1, 0], [1, 3, 1], [0, 1, 2]]) if dtype is not np.bool_ else np.eye(3)
    A = M.astype(dtype)
    A = sp.csr_matrix(A) if sparse else A
    b = np.array([1.0, 2.0, 3.0])
    res = hessian.cg(A, b, rtol=1e-12)
    assert res.info == 0 and res.x.dtype == np.float64
    ref, info = sla.cg(A, b, rtol=1e-12)
    assert info == 0
    np.testing.assert_allclose(res.x, np.linalg.solve(M.astype(np.float64), b), rtol=1e-10)
    np.testing.assert_allclose(res.x, ref, rtol=1e-10)


def test_an_integer_matrix_is_checked_for_symmetry():
    with pytest.raises(ValueError, match="^A: a dense matrix that is not symmetric"):
        hessian.cg(np.array([[1, 5], [0, 2]]), np.ones(2))
    with pytest.raises(ValueError, match="^A: a sparse matrix that is not symmetric"):
        hessian.cg(sp.csr_matrix(np.array([[1, 5], [0, 2]])), np.ones(2))


def test_other_dtypes_are_still_refused_naming_a():
    with pytest.raises(TypeError, match="^A: expected a float32 or float64 matrix, got complex128"):
        hessian.cg(np.eye(2, dtype=np.complex128), np.ones(2))
