"""Hunt 32, curvature numerics: defects found by checking optkern.hessian's estimators against exact
answers on operators of known spectrum (and the MLP's products against a float64 torch reference).

* ``top_eigenvalues`` with thick restarts (``max_basis``) on a small space: a basis of
  ``max_basis + block_size >= n`` vectors, restarted, pushed more vectors than the space holds; the
  lost directions became zero rows, which were multiplied and entered the projected matrix as
  Ritz value 0 -- returned, "converged", with a zero eigenvector.
* ``spectral_density``'s default ``sigma`` (1% of the nodes' range) on a spectrum that is one point
  up to rounding (``Q I Q^T``: nodes 1 ulp apart): a width of 1e-18, a grid of 2 distinct points
  and a density that integrated to 19.9, not 1; on ``1e14 I`` the 1e-3 width fell below float64's
  spacing there, and the density was all zeros.
* ``power_iteration`` normalized ``A v`` by NumPy's norm, the square root of a sum of squares in the
  vector's dtype: for a float32 operator of eigenvalues near 1e-25 it underflowed to 0 (eigenvalue
  0.0 returned as "converged" at the first step), near 1e-22 to subnormals (500 iterations, 0.6%
  off, not converged), and near 1e19 it overflowed (ValueError: "products are not finite").
* ``power_iteration`` and ``top_eigenvalues`` started from a Rademacher (+-1) vector, which is exactly
  orthogonal, with probability 1/2, to an eigenvector such as ``(e1 - e2) / sqrt(2)`` (two parameters
  entering a loss through their sum: ``[[1, 1], [1, 1]]``); the Krylov space then never holds it:
  power iteration returned 0.0 for the sharpness 2 of ``[[1, 1], [1, 1]]``, top_eigenvalues 1.0 for
  the top eigenvalue 5, both "converged", for about half of the seeds. (PyHessian and ARPACK start
  from continuous random vectors.)
* ``trace`` summed each Hutchinson sample ``z^T A z`` of a float32 operator in float32, down the
  columns of a probe block (a running sum, not NumPy's pairwise one): on a diagonal float32 operator
  of 2**20 entries, where every sample is the trace exactly, each was off by about 1e-5 relative
  (stderr 0), 300 times the rounding of a float32 pairwise sum.
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


@pytest.mark.parametrize("scale", [1.0, 1e14])
def test_default_sigma_of_a_single_point_spectrum_up_to_rounding(scale):
    """The density of ``scale * Q Q^T`` (the identity up to rounding) integrates to 1."""
    n = 20
    Q = np.linalg.qr(np.random.default_rng(0).standard_normal((n, n)))[0]
    A = scale * (Q @ Q.T)
    d = hessian.spectral_density(A, num_probes=6, steps=n, grid=200)
    assert d.sigma > 1e-6 * scale  # (not a width of the nodes' rounding)
    assert np.trapezoid(d.density, d.grid) == pytest.approx(1.0, abs=5e-3)
    assert d.grid[0] < scale < d.grid[-1] and len(np.unique(d.grid)) == 200


def test_default_sigma_of_an_exact_multiple_of_the_identity():
    d = hessian.spectral_density(1e14 * np.eye(5), num_probes=1, steps=5, grid=200)
    assert np.trapezoid(d.density, d.grid) == pytest.approx(1.0, abs=5e-3)
    d = hessian.spectral_density(np.eye(5), num_probes=1, steps=5, grid=200)
    assert d.sigma == 1e-3  # (as documented: a range of 0 below magnitude 1)


@pytest.mark.parametrize("scale", [1e-25, 1e-22, 1.0, 1e19])
def test_power_iteration_on_a_float32_operator_of_tiny_or_huge_eigenvalues(scale):
    A = (np.diag([3.0, 2.0, 1.0]) * scale).astype(np.float32)
    r = hessian.power_iteration(A, max_iter=500, tol=1e-6)
    assert r.converged and r.iterations < 100
    assert r.eigenvalue == pytest.approx(3.0 * scale, rel=1e-5, abs=0)
    assert np.linalg.norm(r.eigenvector.astype(np.float64)) == pytest.approx(1.0, rel=1e-6)


def test_power_iteration_finds_the_top_eigenvalue_of_a_pair_for_every_seed():
    """The Hessian of ``(w1 + w2)^2 / 2``: eigenvalues 2 and 0, the top eigenvector ``(1, 1) / sqrt(2)``."""
    A = np.ones((2, 2))
    wrong = [s for s in range(64) if abs(hessian.power_iteration(A, seed=s).eigenvalue - 2.0) > 1e-6]
    assert wrong == []


def test_top_eigenvalue_with_an_eigenvector_of_two_equal_entries_for_every_seed():
    n = 50
    u = np.zeros(n)
    u[:2] = [1.0, -1.0]
    u /= np.sqrt(2.0)
    A = 5.0 * np.outer(u, u) + np.diag(np.r_[0.0, 0.0, np.linspace(0.1, 1.0, n - 2)])
    wrong = []
    for s in range(32):
        r = hessian.top_eigenvalues(A, 1, seed=s)
        if not (r.converged and abs(r.eigenvalues[0] - 5.0) < 1e-8):
            wrong.append(s)
    assert wrong == []


def test_hutchinson_samples_of_a_float32_operator_are_summed_in_float64():
    n = 1 << 20
    d = np.random.default_rng(0).uniform(0.0, 1.0, n).astype(np.float32)
    op = hessian.from_hvp(lambda v: d * v, n, np.float32, matmat=lambda V: d[:, None] * V)
    r = hessian.trace(op, num_matvecs=4)
    exact = float(d.astype(np.float64).sum())  # (z_i^2 d_i = d_i: every sample is the trace)
    np.testing.assert_allclose(r.samples, exact, rtol=1e-9)
    assert r.estimate == pytest.approx(exact, rel=1e-9)
