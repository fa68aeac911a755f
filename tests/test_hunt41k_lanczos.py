"""Eigenvalues at or near zero converge in ``top_eigenvalues`` (41st hunt, k).

The rule was ``residual <= tol * max(|theta|, tiny)``: for theta ~ 0 the bound is ~0, below what the
residual estimate ``||R s_last||`` can reach (its rounding, about eps ||A||), so a zero eigenvalue --
a flat direction, what "SA" at a minimum looks for -- ran every ``max_steps`` product and came back
``converged=False`` with a residual of 1e-18. The bound now has a floor proportional to ``||A||``
(estimated by the largest |Ritz value| / projected entry seen), so the decisions stay scale-free.
"""

import numpy as np
import pytest

from optkern import hessian

EPS = float(np.finfo(np.float64).eps)


def _flat(*small, n=300):
    # a few eigenvalues at / near zero below a cluster in [1, 2] (||A|| = 2)
    return np.diag(np.r_[np.asarray(small, dtype=np.float64), np.linspace(1.0, 2.0, n)])


@pytest.mark.parametrize("small", [(0.0,), (0.0, 0.0, 0.0), (2e-14,), (-2e-14,)])
@pytest.mark.parametrize("block_size,max_basis", [(1, None), (2, None), (1, 40)])
def test_eigenvalue_at_or_near_zero_converges_early_and_right(small, block_size, max_basis):
    A = _flat(*small)
    r = hessian.top_eigenvalues(A, 1, "SA", block_size=block_size, max_basis=max_basis)
    assert r.converged, (r.residuals, r.steps)
    assert r.steps <= 100, r.steps  # (n = 303, max_steps 200: it ran them all)
    # an eigenvalue within the residual (Krylov-Bogoliubov); the smallest is min(small)
    assert abs(r.eigenvalues[0] - min(small)) <= 16 * EPS * 2.0, r.eigenvalues


def test_zero_among_the_largest_algebraic_of_a_negative_semidefinite_operator():
    A = -_flat(0.0)
    r = hessian.top_eigenvalues(A, 1, "LA")
    assert r.converged and r.steps <= 100, (r.residuals, r.steps)
    assert abs(r.eigenvalues[0]) <= 16 * EPS * 2.0


@pytest.mark.parametrize("c", [1e-10, 1e10, 2.0**-300, 2.0**300])
@pytest.mark.parametrize("small", [(0.0,), (2e-14,), (1e-3,)])
def test_scaled_operator_gives_the_same_decisions(c, small):
    A = _flat(*small)
    for which in ("SA", "LA"):
        r1 = hessian.top_eigenvalues(A, 2, which)
        rc = hessian.top_eigenvalues(c * A, 2, which)
        assert (rc.converged, rc.steps) == (r1.converged, r1.steps), (which, r1.steps, rc.steps)
        assert r1.converged
        np.testing.assert_allclose(rc.eigenvalues / c, r1.eigenvalues, rtol=1e-9, atol=64 * EPS * 2.0)


@pytest.mark.parametrize("seed", range(6))
def test_what_converged_still_converges_to_the_eigenvalues(seed):
    """Random spectra with small eigenvalues among them: a converged pair is within its tolerance of the
    eigenvalue (relative, or eps ||A|| absolute where that is larger: what the products resolve)."""
    rng = np.random.default_rng(seed)
    n = 120
    lam = rng.standard_normal(n)
    lam[:4] = [0.0, 1e-9, -1e-12, 3e-15]
    Qm, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = (Qm * lam) @ Qm.T
    A = (A + A.T) / 2
    nrm = float(np.abs(lam).max())
    exact = np.sort(lam)
    for which, k, ref in (
        ("SA", 2, exact[:2]),
        ("LA", 2, exact[::-1][:2]),
        ("LM", 1, exact[np.argsort(-np.abs(exact))][:1]),
    ):
        for b in (1, 2):
            r = hessian.top_eigenvalues(A, k, which, block_size=b, max_steps=n, seed=seed)
            assert r.converged, (which, b, r.residuals)
            err = np.abs(r.eigenvalues - ref)
            assert np.all(err <= np.maximum(1e-9 * np.abs(ref), 1e3 * EPS * nrm)), (which, b, err)


def test_rank_deficient_psd_operator_flat_directions_by_sa():
    """A PSD 'Hessian at a minimum' ``J^T J`` with half its directions flat: "SA" gives ~0, converged,
    before ``max_steps`` (one Krylov space sees one of the repeated zeros; the first converges)."""
    rng = np.random.default_rng(3)
    n = 400
    J = rng.standard_normal((n // 2, n))
    A = J.T @ J
    nrm = float(np.linalg.eigvalsh(A).max())
    r = hessian.top_eigenvalues(A, 1, "SA")
    assert r.converged and r.steps < 180  # (max_steps: 200), (r.residuals, r.steps)
    assert abs(r.eigenvalues[0]) <= 1e3 * EPS * nrm
