"""Hunt 32, curvature numerics: defects found by checking optkern.hessian's estimators against exact
answers on operators of known spectrum (and the MLP's products against a float64 torch reference).

* ``top_eigenvalues`` with thick restarts (``max_basis``) on a small space: a basis of
  ``max_basis + block_size >= n`` vectors, restarted, pushed more vectors than the space holds; the
  lost directions became zero rows, which were multiplied and entered the projected matrix as
  Ritz value 0 -- returned, "converged", with a zero eigenvector.
"""

from __future__ import annotations

import numpy as np
import pytest

from optkern import hessian


@pytest.mark.parametrize("which", ["SA", "LA"])
@pytest.mark.parametrize(
    "n,k,b,max_basis,max_steps", [(5, 1, 2, 4, 8), (5, 1, 2, 4, 20), (12, 5, 4, 10, 40), (8, 2, 3, 6, 30)]
)
def test_thick_restart_on_a_space_the_basis_nearly_fills(which, n, k, b, max_basis, max_steps):
    """diag(1..5), k=1, "SA", block_size=2, max_basis=4, max_steps=8 gave eigenvalue 0.0 (not in the
    spectrum), converged=True, with an all-zero eigenvector."""
    ev = np.linspace(1.0, 5.0, n)
    Q = np.linalg.qr(np.random.default_rng(n).standard_normal((n, n)))[0]
    A = (Q * ev) @ Q.T
    r = hessian.top_eigenvalues(
        A, k, which, block_size=b, max_basis=max_basis, max_steps=max_steps, return_eigenvectors=True
    )
    want = np.sort(ev)[:k] if which == "SA" else np.sort(ev)[::-1][:k]
    np.testing.assert_allclose(r.eigenvalues, want, rtol=0, atol=1e-9)
    assert r.converged
    U = r.eigenvectors
    np.testing.assert_allclose(np.linalg.norm(U, axis=0), 1.0, atol=1e-9)
    np.testing.assert_allclose(A @ U, U * r.eigenvalues, atol=1e-8)
