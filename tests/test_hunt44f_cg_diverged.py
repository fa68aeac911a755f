"""hessian.cg on a singular system without a solution (b outside A's range, no damping): in float32
the iterates grow past the range and the error blamed A's product ("A: the product is not finite
(p.Ap = nan)") for an operator whose every product is finite. It now says that CG diverged and why."""

import numpy as np
import pytest

from optkern import hessian as H
from optkern.nn import MLP


def _singular_ggn():
    """A float32 Gauss-Newton operator of rank 6 on 51 parameters (tanh saturated at huge params:
    only the last layer's curvature is left), with finite products, and its dense matrix."""
    model = MLP([4, 6, 3], activation="tanh", dtype=np.float32)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    y = rng.integers(0, 3, 5)
    op = H.from_mlp(model, np.full(model.num_params, 1e30, np.float32), x, y, kind="ggn")
    dense = op.matmat(np.eye(op.shape[0], dtype=np.float32))
    return op, dense


@pytest.mark.parametrize("as_dense", [False, True], ids=["from_mlp", "dense"])
@pytest.mark.parametrize("precond", [None, "diag", "M"])
def test_divergence_is_reported_as_such_not_as_a_non_finite_product(as_dense, precond):
    op, dense = _singular_ggn()
    n = op.shape[0]
    assert np.isfinite(dense).all() and np.linalg.matrix_rank(dense.astype(np.float64)) < n
    b = np.ones(n, np.float32)
    assert np.isfinite(op.matvec(b)).all()
    kw = {None: {}, "diag": {"precond_diag": np.ones(n, np.float32)}, "M": {"M": lambda r: r}}[precond]
    with pytest.raises(
        ValueError, match=r"^A: CG diverged at iteration \d+: .*float32's range.*positive definite gives it one\)"
    ):
        H.cg(dense if as_dense else op, b, **kw)
    # the advice holds: with damping the system has a solution, which CG finds
    r = H.cg(dense if as_dense else op, b, damping=1e-2, rtol=1e-4, **kw)
    assert r.info == 0
    resid = dense.astype(np.float64) @ r.x + 1e-2 * r.x - 1.0
    assert np.abs(resid).max() < 1e-3


def test_a_nan_product_is_still_blamed_on_the_product():
    # (the iterates near 1: not a divergence)
    A = np.diag(np.arange(1.0, 6.0, dtype=np.float32))
    A[2, 2] = np.nan
    with pytest.raises(ValueError, match=r"^A: the product is not finite"):
        H.cg(A, np.ones(5, np.float32))
    with pytest.raises(ValueError, match=r"^A: the product is not finite"):
        H.cg(A, np.ones(5, np.float32), precond_diag=np.ones(5, np.float32))


@pytest.mark.parametrize("precond", [None, "diag", "M"])
def test_float64_divergence_names_no_kernel_argument(precond):
    # A + damping I = diag(6, 4, 3, 2, 0, 1.5): singular, b = 1 outside its range. The iterates
    # overflowed float64 after 49 iterations and the direction kernel refused the step's beta:
    # "beta: must be finite, got inf", an argument cg has not
    A = np.diag([5.0, 3.0, 2.0, 1.0, -1.0, 0.5])
    kw = {None: {}, "diag": {"precond_diag": np.ones(6)}, "M": {"M": lambda r: r}}[precond]
    with pytest.raises(ValueError, match=r"^A: CG diverged at iteration \d+: .*float64's range"):
        H.cg(A, np.ones(6), damping=1.0, **kw)
    r = H.cg(A, np.ones(6), damping=1.5, **kw)  # (positive definite: solved)
    assert r.info == 0
    np.testing.assert_allclose(r.x, 1.0 / (np.diag(A) + 1.5), rtol=1e-4)
