"""top_eigenvalues against ARPACK (scipy's eigsh) on known spectra: accuracy and operator products (51st hunt, e).

``Q^T diag(l) Q`` operators (``Q`` three random Householder reflections: every entry nonzero): a top
of 30 eigenvalues 1e-3 apart (flat), 20 of them (clustered) and a well-separated geometric top. With
its defaults ``top_eigenvalues`` stopped at 200 products with ``converged=False`` on the flat top
(k = 5: errors ~1e-7 where eigsh reached 1e-10); the default basis now restarts. Each returned
eigenvalue must lie within the stated tolerance of numpy.linalg.eigh's, and the products within a
stated factor of eigsh's for the same tolerance and start vector (eigsh's default ncv; with
restarts, eigsh's ncv = max_basis: the vectors multiplied per cycle)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import scipy.sparse.linalg as sla

from optkern import hessian


def _spectrum(kind: str, n: int) -> np.ndarray:
    rest = np.linspace(0.0, 0.9, n)
    if kind == "flat":
        return np.concatenate([1.0 - 1e-3 * np.arange(30), rest[30:]])
    if kind == "clustered":
        return np.concatenate([1.0 + 1e-3 * np.arange(20), rest[20:]])
    return np.concatenate([2.0 * 0.8 ** np.arange(10), rest[10:]])  # (separated: ratios 0.8)


class _Rotated:
    """``Q diag(l) Q^T`` with ``Q`` a product of three random Householder reflections: dense (every entry
    nonzero) yet O(n) per product (a dense GEMV under multithreaded BLAS took seconds on a loaded VM)."""

    def __init__(self, kind: str, n: int, seed: int):
        rng = np.random.default_rng(seed)
        self.l = _spectrum(kind, n)
        self.U = [u / np.linalg.norm(u) for u in rng.standard_normal((3, n))]

    def _q(self, X, order):  # the reflections in ``order``, first applied first
        for u in order:
            X = X - 2.0 * np.outer(u, u @ X) if X.ndim == 2 else X - 2.0 * u * (u @ X)
        return X

    def apply(self, X):
        # Q = H3 H2 H1 (each reflection symmetric): Q^T diag(l) Q
        Y = (self.l * self._q(X, self.U).T).T
        return self._q(Y, self.U[::-1])

    def dense(self):
        return self.apply(np.eye(len(self.l)))


@functools.cache
def _problem(kind: str, n: int, seed: int):
    M = _Rotated(kind, n, seed)
    A = M.dense()
    assert abs(A).min() > 0 and np.abs(A - A.T).max() < 1e-14
    return M, np.sort(np.linalg.eigh((A + A.T) / 2)[0])[::-1]


def _counted(M):
    count = [0]

    def matvec(x):
        count[0] += 1
        return M.apply(np.ravel(x))

    def matmat(X):
        count[0] += X.shape[1]
        return M.apply(X)

    n = len(M.l)
    return sla.LinearOperator((n, n), matvec=matvec, matmat=matmat, dtype=np.float64), count


def _eigsh_products(A, k, tol, v0, ncv=None):
    op, count = _counted(A)
    w = sla.eigsh(op, k=k, which="LA", tol=tol, v0=v0, ncv=ncv, maxiter=100000, return_eigenvectors=False)
    return count[0], np.sort(w)[::-1]


def _check(A, truth, k, tol, factor, ncv=None, **kw):
    op, count = _counted(A)
    r = hessian.top_eigenvalues(op, k=k, tol=tol, **kw)
    v0 = np.random.default_rng(0).uniform(-1.0, 1.0, len(A.l))  # (top_eigenvalues' default start, seed 0)
    theirs, _ = _eigsh_products(A, k, tol, v0, ncv)
    assert r.converged
    assert count[0] == r.steps
    # converged: residual <= tol |theta|, so an eigenvalue lies within that of each theta (truth to eigh's eps)
    np.testing.assert_allclose(r.eigenvalues, truth[:k], rtol=tol, atol=1e-13)
    assert r.steps <= factor * theirs, (r.steps, theirs)
    return r.steps, theirs


@pytest.mark.parametrize("kind, tol", [("flat", 1e-6), ("flat", 1e-10), ("clustered", 1e-10), ("separated", 1e-10)])
def test_default_converges_within_eigsh_products(kind, tol):
    A, truth = _problem(kind, 401, seed=1)
    _check(A, truth, 5, tol, factor=1.0)


@pytest.mark.parametrize("kind", ["flat", "clustered"])
def test_restarted_within_twice_eigsh_same_basis(kind):
    # max_basis = 16 multiplied vectors per cycle against eigsh's ncv = 16 (b = 1: eigsh's own shape)
    A, truth = _problem(kind, 401, seed=1)
    _check(A, truth, 5, 1e-8, factor=2.0, ncv=16, max_basis=16, max_steps=20000)


def test_default_still_exact_on_a_small_whole_space():
    # n below the default basis: no restart, at most n products, the eigenvalues exact
    A, truth = _problem("flat", 150, seed=3)
    op, count = _counted(A)
    r = hessian.top_eigenvalues(op, k=5, tol=1e-12)
    assert r.converged and r.steps <= 150
    np.testing.assert_allclose(r.eigenvalues, truth[:5], rtol=1e-12, atol=1e-13)


def test_explicit_max_steps_keeps_its_meaning():
    # max_steps given without max_basis: no restart, the basis up to max_steps, stopped there unconverged
    A, _ = _problem("flat", 401, seed=1)
    op, count = _counted(A)
    r = hessian.top_eigenvalues(op, k=5, max_steps=40)
    assert not r.converged and r.steps == count[0] == 40
