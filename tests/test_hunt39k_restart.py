"""Thick-restart Lanczos and its Ritz vectors give the same bits for any thread count (39th hunt, k).

``BlockKrylov.restart`` formed the kept Ritz vectors as ``Sk.T @ Q[:m]`` and ``top_eigenvalues`` /
``lanczos(return_ritz=True)`` their eigenvectors as ``Q.T @ S``: BLAS GEMMs summing over the basis
size, which OpenBLAS splits by thread. At n = 70001 the eigenvalues and eigenvectors under
OPENBLAS_NUM_THREADS=1 differed from those under 2 (block_size 4 and 1, restarts happening). Each
run is a fresh interpreter per thread count; the printed bytes must agree (on a machine with one
CPU they agree trivially). The accuracy checks compare with a dense ``eigh`` at small n.
"""

import numpy as np
import pytest

from optkern import hessian
from optkern.hessian import _combine
from optkern.hessian.krylov import BlockKrylov
from thread_runs import on_diagonal_operators, outputs_by_threads

SCRIPT = on_diagonal_operators(
    """
        for b, mb in ((4, 60), (1, 80)):
            kw = dict(block_size=b, max_basis=mb, max_steps=300, tol=1e-30, return_eigenvectors=True)
            r = hessian.top_eigenvalues(op, 10, "LA", **kw)
            v = np.ascontiguousarray(r.eigenvectors)
            print([float(x).hex() for x in r.eigenvalues], hashlib.sha256(v.tobytes()).hexdigest()[:16])
        out = hessian.lanczos(op, 40, seed=1, return_ritz=True)
        print(hashlib.sha256(np.ascontiguousarray(out[-1]).tobytes()).hexdigest()[:16])
    """
)


@pytest.mark.spawns
def test_restarted_lanczos_bits_do_not_follow_the_thread_count():
    out = outputs_by_threads(SCRIPT)
    assert len(set(out.values())) == 1, out


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    ("m", "n", "k"), [(1, 1, 1), (5, 3, 2), (30, 2048, 7), (30, 5001, 30), (4, 4099, 9), (0, 10, 3)]
)
def test_combinations_match_the_matrix_product(m, n, k, dtype):
    """Widths off, on and across the native kernel's panels; ``k`` below, equal to and above ``m`` (in place)."""
    rng = np.random.default_rng(m * 1000 + n + k)
    Q = rng.standard_normal((max(m, k), n)).astype(dtype)
    S = rng.standard_normal((m, k)).astype(dtype)
    want = S.astype(np.float64).T @ Q[:m].astype(np.float64)
    tol = 1e-12 if dtype == np.float64 else 1e-4
    got = _combine.ritz_vectors(Q[:m], S)
    assert got.dtype == dtype and got.shape == (n, k) and got.flags.c_contiguous
    np.testing.assert_allclose(got, want.T, atol=tol * (1 + np.sqrt(m)))
    Q2 = Q.copy()
    _combine.combine_rows_(Q2, S)
    np.testing.assert_array_equal(Q2[:k], got.T)  # (the same sums, in place)
    np.testing.assert_array_equal(Q2[k:], Q[k:])


def _spectrum(n, seed, dtype):
    """Symmetric ``n x n`` with eigenvalues 3 0.9^i, every third negated (gaps of 10%), and its ``eigh``."""
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.standard_normal((n, n)))[0]
    lam = 3.0 * 0.9 ** np.arange(n) * np.where(np.arange(n) % 3 == 2, -1, 1)
    A = (U * lam) @ U.T
    return A.astype(dtype), np.linalg.eigh(A)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    ("k", "b", "max_basis", "which"), [(4, 1, 12, "LA"), (5, 4, 20, "LA"), (3, 2, 12, "LM"), (2, 1, 6, "SA")]
)
def test_restarted_lanczos_matches_eigh(k, b, max_basis, which, dtype, monkeypatch):
    calls = []
    restart = BlockKrylov.restart
    monkeypatch.setattr(
        BlockKrylov, "restart", lambda self, keep, *a: (calls.append(len(keep)), restart(self, keep, *a))[1]
    )
    n = 150
    A, (w, V) = _spectrum(n, seed=7 + k + b, dtype=dtype)
    order = {"LA": np.argsort(-w), "SA": np.argsort(w), "LM": np.argsort(-np.abs(w), kind="stable")}[which][:k]
    tol = 1e-10 if dtype == np.float64 else 1e-5
    r = hessian.top_eigenvalues(
        A, k, which, block_size=b, max_basis=max_basis, max_steps=3000, tol=tol, return_eigenvectors=True
    )
    assert calls, "no restart happened: the test does not reach the restart's combination"
    assert r.converged
    scale = 3.0 * (1e-9 if dtype == np.float64 else 2e-3)
    np.testing.assert_allclose(r.eigenvalues, w[order], atol=scale)
    X = np.asarray(r.eigenvectors, dtype=np.float64)
    assert X.shape == (n, k) and r.eigenvectors.dtype == dtype
    np.testing.assert_allclose(np.abs(np.sum(X * V[:, order], axis=0)), 1.0, atol=10 * scale)
    Af = A.astype(np.float64)
    assert np.linalg.norm(Af @ X - X * r.eigenvalues, axis=0).max() <= 10 * scale


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lanczos_ritz_vectors_match_the_basis_product(dtype):
    A, _ = _spectrum(60, seed=3, dtype=dtype)
    alpha, beta, Q, theta, X = hessian.lanczos(A, 25, seed=2, return_vectors=True, return_ritz=True)
    T = np.diag(alpha) + np.diag(beta[: len(alpha) - 1], 1) + np.diag(beta[: len(alpha) - 1], -1)
    S = np.linalg.eigh(T)[1]
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(X, np.asarray(Q, np.float64).T @ S, atol=tol)
