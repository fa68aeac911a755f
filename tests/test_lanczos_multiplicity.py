"""``top_eigenvalues`` of an operator with a repeated eigenvalue (5, three times) and k = 3.

A Krylov space from one start vector holds one eigenvector per distinct eigenvalue: when its space is
exhausted (a breakdown, or a last beta of rounding size) every Ritz pair in it has a zero residual.
The check made then (with check_every=1 at once) stopped with the pairs of that subspace, "converged":
[5, 2, 1] where scipy's eigsh gives [5, 5, 5], though the docstring promises that an invariant subspace
does not stop it (the lost direction is replaced by a random one, as ARPACK does). Now it also waits for
the most wanted Ritz pair of the sequence begun there (``BlockKrylov.fresh_pairs``), which finds each
further copy in the rest of the space.

Without such a subspace (5, 5, 5, 4, 4 and many distinct smaller eigenvalues) one start vector may
converge with a copy missing: documented, and ``block_size`` >= the multiplicity finds them.
"""

import numpy as np
import pytest

from optkern.hessian import top_eigenvalues

N = 30


def _operator(spectrum, seed=0):
    Q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((len(spectrum), len(spectrum))))
    return (Q * np.asarray(spectrum, np.float64)) @ Q.T


SPECTRA = {
    # the start vector's Krylov space holds 5, 2 and 1 only: it is exhausted after 3 steps
    "few distinct": np.r_[5.0, 5, 5, 1, 2, np.ones(N - 5)],
    # exhausted after 28 steps (28 distinct eigenvalues): the two other copies of 5 come after
    "many distinct": np.r_[5.0, 5, 5, np.arange(N - 3) / N],
    "zeros": np.r_[5.0, 5, 5, np.zeros(N - 3)],
}


@pytest.mark.parametrize("which", ["LA", "LM", "SA"])
@pytest.mark.parametrize("block_size", [1, 2])
@pytest.mark.parametrize("check_every", [1, 2, 5])
@pytest.mark.parametrize("name", list(SPECTRA))
def test_every_copy_of_a_repeated_eigenvalue(name, check_every, block_size, which):
    sign = -1.0 if which == "SA" else 1.0
    A = sign * _operator(SPECTRA[name])
    r = top_eigenvalues(A, k=3, which=which, check_every=check_every, block_size=block_size)
    np.testing.assert_allclose(r.eigenvalues, sign * np.array([5.0, 5, 5]), rtol=1e-9)
    assert r.converged


@pytest.mark.parametrize("check_every", [1, 5])
def test_start_vector_with_few_eigen_directions(check_every):
    """A start vector in an invariant subspace of a diagonal operator (the default ones too)."""
    A = np.diag(np.r_[5.0, 5, 5, np.arange(N - 3) / N])
    for v0 in (np.ones(N), np.r_[1.0, 0, 0, np.ones(N - 3)], None):
        r = top_eigenvalues(A, k=3, check_every=check_every, v0=v0)
        np.testing.assert_allclose(r.eigenvalues, [5.0, 5, 5], rtol=1e-9)


def test_agrees_with_eigsh():
    sla = pytest.importorskip("scipy.sparse.linalg")
    for name, spectrum in SPECTRA.items():
        A = _operator(spectrum, seed=1)
        want = np.sort(sla.eigsh(A, k=4, which="LA")[0])[::-1]
        got = top_eigenvalues(A, k=4, check_every=1).eigenvalues
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, err_msg=name)


def test_eigenvectors_span_the_eigenspace():
    A = _operator(SPECTRA["few distinct"])
    r = top_eigenvalues(A, k=3, check_every=1, return_eigenvectors=True)
    U = r.eigenvectors
    np.testing.assert_allclose(U.T @ U, np.eye(3), atol=1e-10)
    np.testing.assert_allclose(A @ U, 5 * U, atol=1e-9)


def test_operators_without_a_breakdown_stop_as_before():
    """A spectrum of distinct eigenvalues never exhausts its Krylov space early: the extra wait does not
    apply, and the top pairs converge well before n products."""
    n = 300
    A = _operator(np.random.default_rng(2).standard_normal(n), seed=2)
    for which in ("LA", "SA", "LM"):
        r = top_eigenvalues(A, k=3, which=which, check_every=1)
        assert r.converged and r.steps < n
        want = np.linalg.eigvalsh(A)
        order = {"LA": -want, "SA": want, "LM": -np.abs(want)}[which]
        np.testing.assert_allclose(r.eigenvalues, want[np.argsort(order, kind="stable")][:3], rtol=1e-9)


def test_repeated_eigenvalues_without_an_invariant_subspace_need_blocks():
    """The documented limit: no subspace is exhausted, and one start vector may miss a copy; a block of
    at least the multiplicity finds them."""
    A = _operator(np.r_[5.0, 5, 5, 4, 4, np.random.default_rng(0).uniform(0, 1, N - 5)])
    for check_every in (1, 5):
        r = top_eigenvalues(A, k=3, check_every=check_every, block_size=3)
        np.testing.assert_allclose(r.eigenvalues, [5.0, 5, 5], rtol=1e-9)
