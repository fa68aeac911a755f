"""Hutch++ and block ``top_eigenvalues`` give the same bits for any thread count (39th hunt, h).

Hutch++ took its sketch basis from ``np.linalg.qr`` and its projections and ``tr(Q^T A Q)`` from
BLAS GEMMs, block Lanczos orthogonalized its blocks by GEMMs: OpenBLAS splits those reductions by
thread, and at n = 70001 the float64 Hutch++ estimate was 17.118156745885052 under
OPENBLAS_NUM_THREADS=1 and 17.118156745885038 under 2 (ranks of a distributed operator with other
BLAS thread counts then diverged). Each run below is a fresh interpreter per thread count; the
printed bytes must agree (on a machine with one CPU they agree trivially). The accuracy checks
compare with the QR-based estimate of the same probes and with a dense ``eigh``.
"""

import numpy as np
import pytest

from optkern import hessian
from optkern.hessian._probes import rademacher
from thread_runs import on_diagonal_operators, outputs_by_threads

SCRIPT = on_diagonal_operators(
    """
        t = hessian.trace(op, "hutch++", num_matvecs=61, seed=3)
        print(float(t.estimate).hex(), hashlib.sha256(t.samples.tobytes()).hexdigest()[:16])
        r = hessian.top_eigenvalues(op, 3, which="LM", block_size=4, max_steps=40, tol=1e-30)
        print([float(x).hex() for x in r.eigenvalues])
    """
)


@pytest.mark.spawns
def test_hutchpp_and_block_lanczos_bits_do_not_follow_the_thread_count():
    out = outputs_by_threads(SCRIPT)
    assert len(set(out.values())) == 1, out


def _probes(n, m, seed, dtype):
    return np.stack([rademacher(n, seed=seed, index=i, dtype=dtype, xp=np) for i in range(m - m // 3)], axis=1)


def _full_rank_seed(n, m, dtype):
    """The first seed whose sketch probes are independent (7 random signs in 5 columns often are not:
    the basis then holds directions that rounding picks, and estimates differ by more than rounding)."""
    s = m // 3
    return next(k for k in range(100) if s >= n or np.linalg.matrix_rank(_probes(n, m, k, dtype)[:, :s]) == s)


def _qr_hutchpp(A, m, seed, dtype):
    """The QR-based Hutch++ of the same probes (the reference: any orthonormal basis of the sketch gives
    the same estimate up to rounding), in float64."""
    s = m // 3
    Z = _probes(A.shape[0], m, seed, dtype).astype(np.float64)
    Q = np.linalg.qr(A @ Z[:, :s])[0]
    G = Z[:, s:] - Q @ (Q.T @ Z[:, s:])
    return np.trace(Q.T @ A @ Q) + np.mean(np.sum(G * (A @ G), axis=0))


def _sym(n, rank, seed, dtype=np.float64):
    """A random symmetric matrix of ``rank``, eigenvalues +-3 0.9^i (gaps of 10%: Lanczos converges)."""
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.standard_normal((n, n)))[0][:, :rank]
    lam = 3.0 * 0.9 ** np.arange(rank) * np.where(np.arange(rank) % 3 == 2, -1, 1)
    return ((U * lam) @ U.T).astype(dtype)


TOL = {np.float64: 1e-10, np.float32: 2e-4}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("n", "m"), [(1, 3), (1, 30), (7, 6), (7, 15), (1023, 30), (1023, 301)])
def test_hutchpp_matches_the_qr_based_estimate_and_the_exact_trace(n, m, dtype):
    A = _sym(n, n, seed=n + m, dtype=dtype)
    seed = _full_rank_seed(n, m, dtype)
    t = hessian.trace(A, "hutch++", num_matvecs=m, seed=seed)
    exact = float(np.trace(A.astype(np.float64)))
    scale = float(np.abs(np.linalg.eigvalsh(A.astype(np.float64))).sum())
    if m // 3 >= n:
        assert t.estimate == pytest.approx(exact, abs=TOL[dtype] * scale)
    else:
        ref = _qr_hutchpp(A.astype(np.float64), m, seed, dtype)
        assert t.estimate == pytest.approx(ref, abs=TOL[dtype] * scale)
        assert t.num_matvecs == m and len(t.samples) == m - 2 * (m // 3)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("n", "rank", "m"), [(7, 1, 15), (1023, 3, 30), (1023, 10, 33), (64, 0, 30)])
def test_hutchpp_of_a_rank_deficient_operator_is_exact(n, rank, m, dtype):
    """A sketch wider than the rank: its dependent columns (zero for A = 0) leave the basis; the rest
    spans the range, so the estimate is the trace, with projected samples of rounding size."""
    A = _sym(n, rank, seed=rank, dtype=dtype) if rank else np.zeros((n, n), dtype)
    t = hessian.trace(A, "hutch++", num_matvecs=m, seed=1)
    exact = float(np.trace(A.astype(np.float64)))
    assert t.estimate == pytest.approx(exact, abs=TOL[dtype] * max(rank, 1) * 3)
    assert np.all(np.abs(t.samples) <= TOL[dtype] * max(rank, 1) * 3)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_hutchpp_of_a_coordinate_operator_is_exact(dtype):
    """diag(2, 0, ..., 0): every sketch column is a multiple of e1 (rank 1 of s columns)."""
    n = 1023
    d = np.zeros(n, dtype)
    d[0] = 2.0
    op = hessian.from_hvp(lambda v: d * v, n, dtype, matmat=lambda V: d[:, None] * V)
    t = hessian.trace(op, "hutch++", num_matvecs=30, seed=2)
    assert t.estimate == pytest.approx(2.0, abs=TOL[dtype] * 4)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("n", "rank", "k", "b"), [(7, 7, 3, 3), (1023, 1023, 4, 3), (1023, 2, 2, 4), (40, 5, 5, 2)])
def test_block_lanczos_matches_eigh(n, rank, k, b, dtype):
    A = _sym(n, rank, seed=11 + n, dtype=dtype)
    w = np.linalg.eigvalsh(A.astype(np.float64))
    want = w[np.argsort(-np.abs(w), kind="stable")][:k]
    r = hessian.top_eigenvalues(A, k, which="LM", block_size=b, tol=1e-8 if dtype == np.float64 else 1e-4)
    got = np.asarray(r.eigenvalues, dtype=np.float64)
    assert np.sort(np.abs(got)) == pytest.approx(np.sort(np.abs(want)), abs=TOL[dtype] * 30 * np.abs(w).max())
