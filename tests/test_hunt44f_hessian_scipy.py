"""A SciPy LinearOperator whose matvec returns a product of the wrong size: refused naming the
argument in every estimator (SciPy's own reshape raised NumPy's unnamed "cannot reshape array"),
while the products SciPy itself takes (any shape holding n entries) still run."""

import numpy as np
import pytest

from optkern import hessian as H

sla = pytest.importorskip("scipy.sparse.linalg")

N = 5
D = np.diag(np.arange(1.0, N + 1))


def _estimators(L, name="op"):
    """(label, call) of every estimator on ``L``; ``name``: the argument the error must name."""
    b = np.ones(N)
    return [
        ("trace", lambda: H.trace(L, num_matvecs=4)),
        ("hutch++", lambda: H.trace(L, method="hutch++", num_matvecs=6)),
        ("lanczos", lambda: H.lanczos(L, 3)),
        ("top_eigenvalues", lambda: H.top_eigenvalues(L, 1)),
        ("power_iteration", lambda: H.power_iteration(L)),
        ("cg", lambda: H.cg(L, b)),
        ("spectral_density", lambda: H.spectral_density(L, steps=3, grid=16)),
        ("gradient_concentration", lambda: H.gradient_concentration(L, b, 1)),
        ("as_operator.matvec", lambda: H.as_operator(L, name).matvec(b)),
        ("as_operator.matmat", lambda: H.as_operator(L, name).matmat(np.ones((N, 2)))),
    ]


@pytest.mark.parametrize(
    "product, shape",
    [
        (lambda v: np.ones(N + 1), (N + 1,)),
        (lambda v: np.ones((N, N)), (N, N)),
        (lambda v: np.ones(N - 1), (N - 1,)),
        (lambda v: 1.0, ()),
    ],
    ids=["n+1", "n x n", "n-1", "scalar"],
)
def test_wrong_size_product_is_refused_naming_the_argument(product, shape):
    L = sla.LinearOperator((N, N), matvec=product, dtype=np.float64)
    with pytest.raises(ValueError, match="cannot reshape"):
        L.matvec(np.ones(N))  # (SciPy's own: the message that reached the estimators)
    for label, call in _estimators(L):
        arg = "A" if label == "cg" else "op"
        with pytest.raises(ValueError, match=rf"^{arg}\.matvec: returned shape {re_shape(shape)}, expected \({N},\)"):
            call()


def re_shape(shape):
    return str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")


def test_cg_leaves_x0_unwritten_when_the_product_is_refused():
    L = sla.LinearOperator((N, N), matvec=lambda v: np.ones(N + 1), dtype=np.float64)
    x0 = np.full(N, 0.5)
    with pytest.raises(ValueError, match=r"^A\.matvec: "):
        H.cg(L, np.ones(N), x0=x0)
    assert (x0 == 0.5).all()


@pytest.mark.parametrize(
    "wrap",
    [lambda y: y, lambda y: y[:, None], lambda y: y[None, :], lambda y: list(y), lambda y: y.astype(np.float32)],
    ids=["(n,)", "(n, 1)", "(1, n)", "list", "float32"],
)
def test_products_scipy_takes_still_run_and_agree_with_the_dense_matrix(wrap):
    # SciPy's matvec reshapes any product of n entries to (n,): so does the wrapped operator
    L = sla.LinearOperator((N, N), matvec=lambda v: wrap(D @ np.ravel(v)), dtype=np.float64)
    op = H.as_operator(L)
    v = np.arange(1.0, N + 1)
    np.testing.assert_allclose(op.matvec(v), D @ v, rtol=1e-6)
    assert H.top_eigenvalues(L, 1).eigenvalues[0] == pytest.approx(N, rel=1e-5)
    assert H.cg(L, D @ v, rtol=1e-10).x == pytest.approx(v, rel=1e-5)


def test_one_by_one_operator_returning_a_scalar_runs_as_in_scipy():
    L = sla.LinearOperator((1, 1), matvec=lambda v: 3.0 * float(np.ravel(v)[0]), dtype=np.float64)
    assert L.matvec(np.ones(1)).tolist() == [3.0]
    assert H.as_operator(L).matvec(np.ones(1)).tolist() == [3.0]
    assert H.top_eigenvalues(L, 1).eigenvalues[0] == pytest.approx(3.0)


def test_a_subclass_overriding_matvec_is_called_through_it():
    class Doubling(sla.LinearOperator):
        def __init__(self):
            super().__init__(np.float64, (N, N))

        def _matvec(self, v):
            raise AssertionError("the overriding matvec is the product")

        def matvec(self, v):
            return 2.0 * np.ravel(v)

    assert H.as_operator(Doubling()).matvec(np.ones(N)).tolist() == [2.0] * N


@pytest.mark.parametrize(
    "product, err, match",
    [
        (lambda v: np.ones(N + 1), ValueError, r"^M\.matvec: returned shape \(6,\), expected \(5,\)"),
        (lambda v: 1.0, ValueError, r"^M\.matvec: returned shape \(\), expected \(5,\)"),
        (lambda v: np.ones(N, np.int64), TypeError, r"^M\.matvec: returned int64 entries"),  # (truncated)
    ],
)
def test_cg_preconditioner_linear_operator_products_are_checked_naming_M(product, err, match):
    # (SciPy's reshape raised "cannot reshape array of size 6 into shape (5,)"; an integer product,
    # refused from a callable M, was taken from a LinearOperator M and reported "not positive definite")
    M = sla.LinearOperator((N, N), matvec=product, dtype=np.float64)
    x0 = np.full(N, 0.25)
    with pytest.raises(err, match=match):
        H.cg(D, np.ones(N), x0=x0, M=M)
    assert (x0 == 0.25).all()


def test_cg_preconditioner_linear_operator_that_scipy_takes_still_preconditions():
    inv = 1.0 / np.diag(D)
    for wrap in (lambda y: y, lambda y: y[:, None], lambda y: np.multiply(y, 1.0, out=y)):
        M = sla.LinearOperator((N, N), matvec=lambda r, w=wrap: w(inv * np.ravel(r)), dtype=np.float64)
        r = H.cg(D, np.arange(1.0, N + 1), M=M, rtol=1e-12)
        assert r.info == 0 and r.iterations == 1  # (the exact inverse: one step)
        np.testing.assert_allclose(r.x, np.ones(N), rtol=1e-12)
