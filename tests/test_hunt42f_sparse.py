"""SciPy sparse matrices as curvature operators: ``hessian.cg`` follows ``scipy.sparse.linalg.cg``'s
contract, whose ``A`` (and ``M``) may be a sparse array, and the estimators take what ``cg`` takes.
A sparse matrix was refused by all of them ("expected a CurvatureOperator, a square array or a
LinearOperator, got csr_matrix")."""

import numpy as np
import pytest

sp = pytest.importorskip("scipy.sparse")
sla = pytest.importorskip("scipy.sparse.linalg")
from optkern import hessian  # noqa: E402

FORMATS = ["csr_matrix", "csr_array", "csc_array", "coo_matrix", "dia_array", "lil_matrix"]


def spd(n=30, seed=0):
    """A sparse SPD matrix (tridiagonal plus a random symmetric sprinkle) and its dense copy."""
    rng = np.random.default_rng(seed)
    main = 4.0 + rng.uniform(0, 1, n)
    A = sp.diags([main, -np.ones(n - 1), -np.ones(n - 1)], [0, 1, -1]).tocsr()
    R = sp.random(n, n, density=0.05, random_state=seed, format="csr") * 0.1
    A = (A + R + R.T).tocsr()
    return A, A.toarray()


@pytest.mark.parametrize("fmt", FORMATS)
def test_cg_takes_a_sparse_matrix_as_scipy_does(fmt):
    A, D = spd()
    S = getattr(sp, fmt)(A)
    b = np.random.default_rng(1).standard_normal(D.shape[0])
    got = hessian.cg(S, b, rtol=1e-10)
    want, info = sla.cg(S, b, rtol=1e-10)
    assert got.info == info == 0
    np.testing.assert_allclose(got.x, np.linalg.solve(D, b), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(got.x, want, rtol=1e-8, atol=1e-10)
    # the same iterates as the dense matrix (the same products to rounding)
    dense = hessian.cg(D, b, rtol=1e-10)
    assert got.iterations == dense.iterations
    np.testing.assert_allclose(got.x, dense.x, rtol=1e-12, atol=1e-14)


def test_cg_takes_a_sparse_preconditioner():
    A, D = spd()
    b = np.ones(D.shape[0])
    M = sp.diags(1.0 / A.diagonal())
    got = hessian.cg(A, b, M=M, rtol=1e-10)
    want = hessian.cg(D, b, M=M.toarray(), rtol=1e-10)
    assert got.info == 0 and got.iterations == want.iterations
    np.testing.assert_allclose(got.x, want.x, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_estimators_take_a_sparse_matrix(dtype):
    A, D = spd()
    S, D = A.astype(dtype), D.astype(dtype)
    top = hessian.top_eigenvalues(S, 3, block_size=2)
    assert top.eigenvalues.dtype == np.float64
    np.testing.assert_allclose(top.eigenvalues, hessian.top_eigenvalues(D, 3, block_size=2).eigenvalues, rtol=1e-5)
    ev = np.linalg.eigvalsh(D.astype(np.float64))
    np.testing.assert_allclose(top.eigenvalues, ev[::-1][:3], rtol=1e-4 if dtype == np.float32 else 1e-9)
    assert hessian.trace(S, "hutch++", 3 * D.shape[0]).estimate == pytest.approx(np.trace(D.astype(np.float64)))
    a, b = hessian.lanczos(S, 5)
    a2, b2 = hessian.lanczos(D, 5)
    np.testing.assert_allclose(a, a2, rtol=1e-5)
    np.testing.assert_allclose(b, b2, rtol=1e-5)
    sd = hessian.spectral_density(S, 2, steps=10, grid=50)
    np.testing.assert_allclose(sd.nodes, hessian.spectral_density(D, 2, steps=10, grid=50).nodes, rtol=1e-5)
    pw = hessian.power_iteration(S, max_iter=500)
    assert pw.eigenvalue == pytest.approx(ev[-1], rel=1e-4)
    op = hessian.as_operator(S)
    assert op.dtype == dtype and op.shape == D.shape
    assert op.matvec(np.ones(D.shape[0])).dtype == dtype
    assert op.matmat(np.ones((D.shape[0], 2))).shape == (D.shape[0], 2)


def test_a_sparse_matrix_that_is_not_symmetric_is_refused_where_symmetry_is_needed():
    n = 6
    S = sp.csr_matrix(np.diag(np.arange(1.0, n + 1)) + np.diag(np.full(n - 1, 3.0), 1))
    with pytest.raises(ValueError, match="^A: a sparse matrix that is not symmetric"):
        hessian.cg(S, np.ones(n))
    with pytest.raises(ValueError, match="^op: a sparse matrix that is not symmetric"):
        hessian.top_eigenvalues(S, 1)
    with pytest.raises(ValueError, match="^M: a sparse matrix that is not symmetric"):
        hessian.cg(np.eye(n), np.ones(n), M=S)
    # a trace needs no symmetry (as for a dense matrix)
    assert hessian.trace(S, "hutch++", 3 * n).estimate == pytest.approx(n * (n + 1) / 2)


@pytest.mark.parametrize(
    "S, exc, match",
    [
        # (an integer matrix is taken as float64, as SciPy's cg takes it: tests/test_hunt46j_cg_leftovers.py)
        (sp.csr_matrix(np.eye(3, dtype=np.complex128)), TypeError, "^A: expected a float32 or float64 matrix"),
        (sp.csr_matrix(np.eye(3, dtype=np.longdouble)), TypeError, "^A: expected a float32 or float64 matrix"),
        (sp.csr_matrix(np.ones((3, 4))), ValueError, r"^A: expected a square matrix .* got shape \(3, 4\)"),
        (sp.csr_matrix((0, 0)), ValueError, "^A: expected a square matrix of at least 1 x 1"),
    ],
)
def test_bad_sparse_matrices_are_refused_naming_the_argument(S, exc, match):
    with pytest.raises(exc, match=match):
        hessian.cg(S, np.ones(S.shape[0]))
    with pytest.raises(exc, match=match.replace("A:", "op:")):
        hessian.trace(S)


def test_a_sparse_matrix_with_nan_is_refused_naming_op():
    S = sp.csr_matrix(np.diag([1.0, np.nan, 2.0]))
    with pytest.raises(ValueError, match="^op: the operator's products are not finite"):
        hessian.top_eigenvalues(S, 1)
    with pytest.raises(ValueError, match="^op: the operator's products are not finite"):
        hessian.trace(S)


def test_a_sparse_matrix_is_not_densified_by_the_estimators():
    """The estimators look for a distributed operator inside composite ones (``_lockstep.lockstep_of``:
    their ``args``, ``A`` and ``B``); SciPy before 1.14 gave every sparse matrix an ``A`` property,
    ``toarray()``: the n x n dense copy, made at every estimator call (n = 1e6: 8 TB)."""
    seen = []

    class OldScipyCSR(sp.csr_matrix):
        @property
        def A(self):
            seen.append("A")
            return self.toarray()

    A, D = spd()
    S = OldScipyCSR(A)
    assert hessian.top_eigenvalues(S, 1).converged
    assert hessian.cg(S, np.ones(D.shape[0])).info == 0
    hessian.trace(S, "hutch++", 9)
    assert seen == []
