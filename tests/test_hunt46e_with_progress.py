"""``hessian.with_progress(op, progress, total)``, public: a dense matrix or a SciPy ``LinearOperator``
-- what every estimator takes as ``op`` -- raised an unnamed "AttributeError: 'numpy.ndarray' object
has no attribute 'xp'"; ``total`` was passed on to ``progress`` unchecked (-1, 2.5, "x"). Now ``op``
is read as ``as_operator`` reads it (errors naming ``op``) and ``total`` is an integer >= 0."""

import numpy as np
import pytest

from optkern import hessian

sla = pytest.importorskip("scipy.sparse.linalg")

A = np.diag([1.0, 2.0, 3.0, 4.0])


@pytest.mark.parametrize(
    "op", [A, A.astype(np.float32), sla.aslinearoperator(A), pytest.param("sparse", id="sparse")], ids=str
)
def test_any_operator_an_estimator_takes_reports_its_products(op):
    if isinstance(op, str):
        op = pytest.importorskip("scipy.sparse").csr_matrix(A)
    ticks = []
    H = hessian.with_progress(op, lambda done, total: ticks.append((done, total)), 5)
    v = np.arange(1.0, 5.0)
    np.testing.assert_allclose(H.matvec(v), A @ v, rtol=1e-7)
    np.testing.assert_allclose(H.matmat(np.eye(4)[:, :2]), A[:, :2], rtol=1e-7)
    assert ticks == [(1, 5), (3, 5)]
    assert hessian.top_eigenvalues(H, 1).eigenvalues[0] == pytest.approx(4.0, rel=1e-6)
    assert hessian.with_progress(op, None, 5).shape == (4, 4)  # (an operator without progress, too)


@pytest.mark.parametrize(
    "op, total, exc, match",
    [
        ("A", 3, TypeError, r"^op: expected a CurvatureOperator, a square array or a LinearOperator, got str"),
        (np.ones((2, 3)), 3, ValueError, r"^op: expected a square matrix"),
        (A, -1, ValueError, r"^total: must be >= 0, got -1"),
        (A, 2.5, TypeError, r"^total: expected an integer, got float"),
        (A, "x", TypeError, r"^total: expected an integer, got str"),
    ],
)
def test_bad_arguments_are_refused_by_name(op, total, exc, match):
    with pytest.raises(exc, match=match):
        hessian.with_progress(op, lambda done, total: None, total)
