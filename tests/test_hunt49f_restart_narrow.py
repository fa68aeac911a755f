"""top_eigenvalues near its minimum basis: a restart keeping fewer Ritz vectors than the block narrows it.

With ``k = 1``, ``block_size = 4`` and ``max_basis = 6`` each thick restart kept 2 Ritz vectors and
multiplied one whole block of 4 before the basis was full again: a Krylov polynomial of degree one per
cycle, 7720 products at ``tol = 1e-6`` on a clustered top (scipy's eigsh with the same 10 vectors: 231)
and no convergence in 20000 on a flat one. The kept vectors' residuals span only 2 directions of the
pending block: rotated onto them, the block narrows to 2 and the freed rows hold multiplied vectors
(``BlockKrylov._narrow``): 972 and 2512 products. The references are the diagonals themselves (sorted
float64) and the true residuals ``||A u - theta u||`` of the returned Ritz vectors (the narrowing must
keep the residual bound exact).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as sla

from optkern.hessian import top_eigenvalues
from optkern.hessian.krylov import BlockKrylov


def _clustered(n: int = 2000) -> np.ndarray:
    # 20 eigenvalues within 2 % at the top, the rest at most 0.9
    return np.concatenate([1.0 + 1e-3 * np.arange(20)[::-1], np.linspace(0.0, 0.9, n - 20)])


def _flat(n: int = 2000) -> np.ndarray:
    # the top eigenvalue 1 and 29 more within 1 % below it
    return np.concatenate([[1.0], 1.0 - 1e-2 * np.arange(1, 30) / 30, np.linspace(0.0, 0.9, n - 30)])


def _diag(d: np.ndarray) -> sla.LinearOperator:
    # (products by the diagonal itself: a dense 2000 x 2000 matrix made the file slow)
    return sla.LinearOperator(
        (len(d), len(d)), matvec=lambda x: d * x.ravel(), matmat=lambda X: d[:, None] * X, dtype=np.float64
    )


def _check(d: np.ndarray, r, k: int, tol: float) -> None:
    ref = np.sort(d)[::-1][:k]
    assert r.converged, (r.steps, r.residuals)
    assert np.all(r.residuals <= tol * np.abs(r.eigenvalues))
    # Krylov-Bogoliubov: an eigenvalue within the residual of each Ritz value (the top ones: isolated enough)
    assert np.all(np.abs(r.eigenvalues - ref) <= r.residuals + 1e-15)
    U, th = r.eigenvectors, r.eigenvalues
    true = np.linalg.norm(d[:, None] * U - U * th, axis=0)
    _bounds(true, r.residuals, tol * np.abs(th))


def _bounds(true, res, bound, atol=1e-14):
    # the residuals returned bound the true ones (to the rounding of the basis, atol), above them by at most
    # what the dropped directions of narrowed restarts may add: a quarter of the least bound asked
    # (lanczos._narrow_budget)
    assert np.all(true <= res * (1 + 1e-2) + atol), (true, res)
    assert np.all(res <= true + 0.25 * bound.min() + atol), (true, res)


@pytest.mark.parametrize(("spectrum", "tol", "bound"), [(_clustered, 1e-6, 1500), (_flat, 1e-6, 4000)])
def test_minimum_basis_block_four_products(spectrum, tol, bound):
    # old: 7720 (clustered), 20000 without converging (flat); now 972 and 2512; eigsh (ncv=10): 231, 386
    d = spectrum()
    r = top_eigenvalues(_diag(d), k=1, block_size=4, max_basis=6, tol=tol, max_steps=20000, return_eigenvectors=True)
    assert r.steps <= bound, r.steps
    _check(d, r, 1, tol)


def test_narrowed_block_and_memory():
    d = _clustered(600)
    seen = []
    orig = BlockKrylov.step

    def spy(self):
        seen.append((self.b, self.m + 2 * self.b))  # (block width, basis rows in use with the product block)
        return orig(self)

    BlockKrylov.step = spy
    try:
        r = top_eigenvalues(_diag(d), k=2, block_size=4, max_basis=7, tol=1e-8, max_steps=6000)
    finally:
        BlockKrylov.step = orig
    assert r.converged
    np.testing.assert_allclose(r.eigenvalues, np.sort(d)[::-1][:2], rtol=0, atol=1e-12)
    widths = [w for w, _ in seen]
    # (the first blocks whole, then the 3 kept Ritz vectors' width, then fewer as pairs converge)
    assert widths[0] == 4 and 3 in widths and max(widths[widths.index(3) :]) <= 3, sorted(set(widths))
    assert max(rows for _, rows in seen) <= 7 + 2 * 4  # (the memory bound: max_basis + 2 block_size rows)


def test_narrowed_block_keeps_a_double_top():
    # 5 twice on top: narrowing to the kept vectors' width (>= k) keeps both copies
    d = np.concatenate([[5.0, 5.0], np.linspace(0.0, 4.9, 298)])
    r = top_eigenvalues(_diag(d), k=2, block_size=4, max_basis=6, max_steps=6000)
    assert r.converged
    np.testing.assert_allclose(r.eigenvalues, [5.0, 5.0], rtol=0, atol=1e-9)


@pytest.mark.parametrize("which", ["LA", "SA", "LM"])
def test_narrowed_block_dense_true_residuals(which):
    A = np.random.default_rng(11).standard_normal((150, 150))
    A = (A + A.T) / 2
    ev = np.linalg.eigvalsh(A)  # (float64 reference, independent of the Krylov code)
    k, b = 2, 5
    mb = k + b + 2 if which == "LM" else k + b
    r = top_eigenvalues(A, k=k, which=which, block_size=b, max_basis=mb, max_steps=8000, return_eigenvectors=True)
    assert r.converged, (r.steps, r.residuals)
    ref = {"LA": ev[::-1], "SA": ev, "LM": ev[np.argsort(-np.abs(ev), kind="stable")]}[which][:k]
    np.testing.assert_allclose(r.eigenvalues, ref, rtol=0, atol=1e-9)
    U, th = r.eigenvectors, r.eigenvalues
    true = np.linalg.norm(A @ U - U * th, axis=0)
    _bounds(true, r.residuals, np.maximum(1e-10 * np.abs(th), 1e-12), atol=1e-12)  # (||A|| ~ 17)


def test_progress_total_bounds_narrowed_blocks():
    # the total was max_steps' whole blocks (48 of 50 for b = 4); narrowed blocks of 2 or 1 went on to 50:
    # progress (50, 48)
    d = _flat(200)
    calls = []
    r = top_eigenvalues(
        _diag(d), 1, block_size=4, max_basis=6, max_steps=50, progress=lambda done, total: calls.append((done, total))
    )
    assert not r.converged and calls[-1][0] == r.steps == 50
    assert all(done <= total for done, total in calls) and {t for _, t in calls} == {50}
