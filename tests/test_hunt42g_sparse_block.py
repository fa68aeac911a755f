"""A curvature operator times a SciPy sparse block: ``H @ S`` (and ``H.matmat(S)``, ``H.dot(S)``,
``H * S``) was refused as "V: expected real numbers, got an array of dtype object" (NumPy's asarray
of a sparse matrix is a 0-d object array). SciPy's ``LinearOperator.matmat`` hands a sparse block
to the operator unconverted, and a matrix-backed one returns the dense product; an operator known
by its products gives the dense ``(n, k)`` product of the block's values."""

import numpy as np
import pytest

sp = pytest.importorskip("scipy.sparse")
from optkern import hessian  # noqa: E402

D = np.diag(np.arange(1.0, 6.0)) + 0.1


def operators(dtype):
    A = D.astype(dtype)
    yield hessian.from_hvp(lambda v: A @ v, 5, dtype)  # (checked products, column by column)
    yield hessian.from_hvp(lambda v: A @ v, 5, dtype, matmat=lambda V: A @ V)
    yield hessian.as_operator(A)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fmt", ["csr_matrix", "csc_array", "coo_matrix", "lil_matrix"])
def test_operator_times_a_sparse_block_is_the_dense_product(dtype, fmt):
    S = getattr(sp, fmt)(sp.random(5, 3, density=0.5, random_state=0, format="csr"))
    want = D @ S.toarray()
    tol = 1e-6 if dtype == np.float32 else 1e-12
    for H in operators(dtype):
        for got in (H @ S, H.matmat(S), H.dot(S), H * S):
            assert isinstance(got, np.ndarray) and got.shape == (5, 3) and got.dtype == dtype
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
        # a sparse column: the (n, 1) product, as for a dense (n, 1) column
        col = getattr(sp, fmt)(S.toarray()[:, :1])
        got = H @ col
        assert got.shape == (5, 1)
        np.testing.assert_allclose(got, want[:, :1], rtol=tol, atol=tol)


def test_a_sparse_block_of_the_wrong_shape_is_refused_naming_it():
    H = hessian.as_operator(D)
    with pytest.raises(ValueError, match=r"^V: expected shape \(5, k\), got \(4, 3\)"):
        H.matmat(sp.csr_matrix(np.ones((4, 3))))
    with pytest.raises(TypeError, match=r"^V: expected real numbers"):
        H.matmat(sp.csr_matrix(np.ones((5, 2), complex)))
