"""top_eigenvalues' thick restart near its minimum basis keeps the next-wanted Ritz vectors the room allows.

With ``k = 17``, ``block_size = 4`` and ``max_basis = 22`` a restart kept exactly the 17 wanted Ritz
vectors: one slot of the basis stayed unused each cycle and the 17th eigenvalue (0.609, next to an 18th
at 0.535) converged by that small gap alone: ``converged=False`` after 3000 products although the
eigenvalues were right to 1e-13 (scipy's eigsh with the same 26 vectors: ~90 products). Keeping the
18th Ritz vector as well (``krylov.restart_count``: the kept count fills the room the next whole
blocks leave) converges it in about 540.
"""

from __future__ import annotations

import numpy as np
import pytest

from optkern.hessian import top_eigenvalues
from optkern.hessian.krylov import restart_count


def _random_symmetric(seed: int, n: int = 37) -> np.ndarray:
    A = np.random.default_rng(seed).standard_normal((n, n))
    return (A + A.T) / 2


@pytest.mark.parametrize("seed", [5, 7])
def test_minimum_basis_converges_within_budget(seed):
    A = _random_symmetric(seed)
    r = top_eigenvalues(A, k=17, block_size=4, max_basis=22, max_steps=800)
    ref = np.sort(np.linalg.eigvalsh(A))[::-1][:17]  # (float64 reference, independent of the Krylov code)
    assert r.converged, (r.steps, r.residuals.max())
    assert r.steps <= 800
    np.testing.assert_allclose(r.eigenvalues, ref, rtol=0, atol=1e-11)
    # (the residuals returned bound the true ones ||A u - theta u|| of the Ritz vectors, above them by at
    # most what narrowed restarts may add, a quarter of the tolerance's bound: krylov.BlockKrylov._narrow)
    r2 = top_eigenvalues(A, k=17, block_size=4, max_basis=22, max_steps=800, return_eigenvectors=True)
    U, th = r2.eigenvectors, r2.eigenvalues
    true = np.linalg.norm(A @ U - U * th, axis=0)
    assert np.all(true <= r2.residuals * (1 + 1e-3) + 1e-13)
    assert np.all(r2.residuals <= true + 0.25e-10 * np.abs(th) + 1e-13)
    assert np.all(true <= 1e-10 * np.abs(th) + 1e-13)


def test_minimum_basis_sa_block_three():
    # (kept 11 of 15 before, one slot unused: 1005 products; now 12: 420)
    A = _random_symmetric(2)
    r = top_eigenvalues(A, k=11, which="SA", block_size=3, max_basis=15, max_steps=600)
    ref = np.sort(np.linalg.eigvalsh(A))[:11]
    assert r.converged, (r.steps, r.residuals.max())
    np.testing.assert_allclose(r.eigenvalues, ref, rtol=0, atol=1e-11)


@pytest.mark.parametrize(("k", "cap", "b"), [(17, 22, 4), (5, 20, 4), (5, 16, 3), (1, 20, 1), (10, 14, 2), (4, 9, 5)])
def test_restart_count_fills_the_room(k, cap, b):
    for m in range(cap - b + 1, cap + 1):  # (a full basis: m + b > cap)
        count = restart_count(k, m, cap, b)
        assert k <= count <= cap - b  # (the wanted ones, and room for the pending block's product)
        assert count < m
        assert (cap - count) % b == 0  # (the next cycle's whole blocks end exactly at cap)


@pytest.mark.parametrize(("k", "m", "cap", "b", "want"), [(17, 21, 22, 4, 18), (10, 13, 14, 2, 12), (5, 17, 20, 4, 12)])
def test_restart_count_worked_cases(k, m, cap, b, want):
    # by hand: (17, 22, 4) kept 17 before, one slot idle a cycle; 18 fills it (22 - 18 = one block of 4)
    assert restart_count(k, m, cap, b) == want
