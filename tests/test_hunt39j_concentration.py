"""``gradient_concentration`` gives the same bits for any thread count (39th hunt, j).

It re-orthonormalized the Ritz vectors by ``np.linalg.qr``: LAPACK's Householder updates go through
BLAS's gemv, which OpenBLAS splits over ``n`` by thread, and at n = 70001 with 40 float64 columns (the
script's) the fraction was 0x1.f435ef94e65a7p-12 under OPENBLAS_NUM_THREADS=1 and ...a3p-12 under 2
(ranks of a distributed operator with other BLAS thread counts then diverged). Each run below is a
fresh interpreter per thread count; the printed bytes must agree (on a machine with one CPU they
agree trivially). The accuracy checks compare with the QR-based fraction and with a dense ``eigh``.
"""

import numpy as np
import pytest

from optkern import hessian
from thread_runs import on_diagonal_operators, outputs_by_threads

SCRIPT = on_diagonal_operators(
    """
        rng = np.random.default_rng(5)
        g = rng.standard_normal(n).astype(dt)
        for k in (24, 40):
            V = rng.standard_normal((n, k)).astype(dt)
            print(float(hessian.gradient_concentration(op, g, k, eigenvectors=V)).hex())
        print(float(hessian.gradient_concentration(op, g, 4, max_steps=60)).hex())
    """
)


@pytest.mark.spawns
def test_concentration_bits_do_not_follow_the_thread_count():
    out = outputs_by_threads(SCRIPT)
    assert len(set(out.values())) == 1, out


def _qr_fraction(V, g):
    """The QR-based fraction in float64 (the reference: any orthonormal basis of the span gives it)."""
    U = np.linalg.qr(V.astype(np.float64))[0]
    g = g.astype(np.float64)
    return float(np.sum((U.T @ g) ** 2) / (g @ g))


TOL = {np.float64: 1e-12, np.float32: 2e-5}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("n", "k"), [(1, 1), (5, 5), (12, 1), (12, 7), (3001, 24), (3001, 70)])
def test_fraction_matches_the_qr_based_one(n, k, dtype):
    rng = np.random.default_rng(n + k)
    A = np.diag(rng.standard_normal(n)).astype(dtype)
    V = rng.standard_normal((n, k)).astype(dtype)
    V[:, -1] += 3.0 * V[:, 0]  # (not orthogonal: the pass has work to do)
    g = rng.standard_normal(n).astype(dtype)
    want = _qr_fraction(V, g)
    assert hessian.gradient_concentration(A, g, k, eigenvectors=V) == pytest.approx(want, abs=TOL[dtype])
    if k == n:
        assert want == pytest.approx(1.0, abs=TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("n", "k"), [(9, 2), (40, 5), (300, 3)])
def test_fraction_matches_the_eigh_projector(n, k, dtype):
    rng = np.random.default_rng(n)
    U = np.linalg.qr(rng.standard_normal((n, n)))[0]
    lam = np.concatenate([10.0 * 0.7 ** np.arange(k), np.linspace(-1.0, 1.0, n - k)])  # (a gap after k)
    A = ((U * lam) @ U.T).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)
    w, E = np.linalg.eigh(A.astype(np.float64))
    top = E[:, np.argsort(-w)[:k]]
    gd = g.astype(np.float64)
    want = float(np.sum((top.T @ gd) ** 2) / (gd @ gd))
    got = hessian.gradient_concentration(A, g, k, tol=1e-10 if dtype == np.float64 else 1e-5)
    assert got == pytest.approx(want, abs=1e-9 if dtype == np.float64 else 1e-4)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dependent_columns_are_refused_at_the_first(dtype):
    rng = np.random.default_rng(1)
    n = 3001
    A = np.eye(n, dtype=dtype)
    g = rng.standard_normal(n).astype(dtype)
    V = rng.standard_normal((n, 5)).astype(dtype)
    bad = V.copy()
    bad[:, 3] = bad[:, 0] - 2.0 * bad[:, 2]
    with pytest.raises(ValueError, match=r"^eigenvectors: columns 0..4 .*column 3 is in the span"):
        hessian.gradient_concentration(A, g, 5, eigenvectors=bad)
    bad = V.copy()
    bad[:, 2] = 0.0
    with pytest.raises(ValueError, match=r"column 2 is zero"):
        hessian.gradient_concentration(A, g, 5, eigenvectors=bad)
    # a column at an angle well above sqrt(eps) from the others' span is a direction: measured
    near = V.copy()
    near[:, 1] = near[:, 0] + (1e-5 if dtype == np.float64 else 3e-2) * near[:, 1]
    want = _qr_fraction(near, g)
    assert hessian.gradient_concentration(A, g, 5, eigenvectors=near) == pytest.approx(want, abs=10 * TOL[dtype])


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("k", [1, 3])
def test_given_eigenvectors_are_not_written(order, k):
    rng = np.random.default_rng(2)
    V = np.array(rng.standard_normal((50, k)) * 3.0, order=order)
    before = V.copy()
    hessian.gradient_concentration(np.eye(50), rng.standard_normal(50), k, eigenvectors=V)
    np.testing.assert_array_equal(V, before)
