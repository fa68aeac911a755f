"""Restarted block ``top_eigenvalues`` (``block_size > 1``, small ``max_basis``): operator products against
eigsh's where a cycle multiplies many blocks (the documented 0.7-1.3x; at 1-3 blocks a cycle it is 3-23x,
documented under ``max_basis``, bench/eig_block_restart_table.py), the count of blocks a cycle takes, and
the eigenvalues against numpy.linalg.eigvalsh in float64 and float32 on odd sizes."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as sla

from optkern.hessian import top_eigenvalues
from optkern.hessian._restart import restart_count


def _spectrum(kind: str, n: int) -> np.ndarray:  # (bench/eig_restart_products.py's clustered and flat tops)
    if kind == "clustered":
        return np.concatenate([1.0 + 1e-3 * np.arange(20)[::-1], np.linspace(0.0, 0.9, n - 20)])
    return np.concatenate([[1.0], 1.0 - 1e-2 * np.arange(1, 30) / 30, np.linspace(0.0, 0.9, n - 30)])


def _counting(d: np.ndarray, count: list[int]) -> sla.LinearOperator:
    def matvec(x):
        count[0] += 1
        return d * x.ravel()

    def matmat(X):
        count[0] += X.shape[1]
        return d[:, None] * X

    return sla.LinearOperator((len(d), len(d)), matvec=matvec, matmat=matmat, dtype=np.float64)


@pytest.mark.parametrize("kind", ["clustered", "flat"])
@pytest.mark.parametrize(("k", "b", "p"), [(3, 2, 40), (10, 2, 40), (3, 1, 20), (10, 1, 40)])
def test_products_near_eigsh_with_many_blocks_a_cycle(kind, k, b, p):
    n, tol = 2000, 1e-6
    assert (p - restart_count(k, p, p, b)) // b >= 8  # (the regime this bound is documented for)
    d = _spectrum(kind, n)
    ours = [0]
    r = top_eigenvalues(_counting(d, ours), k=k, block_size=b, max_basis=p, tol=tol, max_steps=20000)
    assert r.converged and ours[0] == r.steps
    np.testing.assert_allclose(r.eigenvalues, np.sort(d)[::-1][:k], rtol=tol)
    theirs = [0]
    v0 = np.random.default_rng(0).uniform(-1.0, 1.0, n)
    sla.eigsh(_counting(d, theirs), k=k, which="LA", tol=tol, ncv=p + b, v0=v0, maxiter=100000)
    assert r.steps <= 1.5 * theirs[0], (r.steps, theirs[0])


@pytest.mark.parametrize(("k", "m", "cap", "b", "blocks"), [(3, 20, 20, 4, 2), (10, 20, 20, 4, 1), (3, 40, 40, 2, 10)])
def test_blocks_a_cycle(k, m, cap, b, blocks):
    # by hand: (3, 20, 4): half = max(3, min(16, 19 // 2 = 9)) = 9, (20 - 9) // 4 = 2 blocks, 12 kept
    assert (cap - restart_count(k, m, cap, b)) // b == blocks


def _random_symmetric(n: int, dtype, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    Qo = np.linalg.qr(rng.standard_normal((n, n)))[0]
    lam = np.concatenate([[4.0, 4.0, 3.9], rng.uniform(-3.0, 3.0, max(n - 3, 0))])[:n]
    A = (Qo * lam) @ Qo.T
    return ((A + A.T) / 2).astype(dtype)


@pytest.mark.parametrize("n", [1, 7, 1023])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("which", "block"), [("LA", 2), ("SA", 4)])
def test_eigenvalues_against_eigvalsh_odd_sizes(n, dtype, which, block):
    A = _random_symmetric(n, dtype, seed=n)
    ref = np.linalg.eigvalsh(A.astype(np.float64))
    ref = ref[::-1] if which == "LA" else ref
    k, b = min(3, n), min(block, n)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    r = top_eigenvalues(A, k=k, which=which, block_size=b, max_basis=k + b + 8, max_steps=40000, tol=tol)
    assert r.converged
    # (float32: the products' rounding, ~eps32 ||A||, bounds the accuracy; the residual bound tol |theta|)
    atol = 1e-9 if dtype == np.float64 else 5e-4
    np.testing.assert_allclose(r.eigenvalues, ref[:k], rtol=0, atol=atol)
