"""A dense matrix whose products overflow (float32 entries of 2e38): NumPy's ``A @ v`` warned "overflow
encountered in matmul", and under ``-W error`` (this suite's setting, and many a caller's) that
RuntimeWarning escaped from ``power_iteration``, ``trace``, ``cg`` and ``matvec`` itself, where the
library's contract (optkern/hessian/__init__.py) is a ValueError naming the operator, as ``from_mlp``'s
products give (their NumPy warnings silenced, ``mlp_operator._ieee_quiet``). Now the dense
operator's products are taken without NumPy's warnings: the non-finite product is refused by name."""

import warnings

import numpy as np
import pytest

from optkern import hessian

BIG = np.full((3, 3), 2e38, np.float32)

ESTIMATORS = {
    "power_iteration": (lambda A: hessian.power_iteration(A), "op"),
    "trace": (lambda A: hessian.trace(A, num_matvecs=4), "op"),
    "hutch++": (lambda A: hessian.trace(A, "hutch++", num_matvecs=4), "op"),
    "spectral_density": (lambda A: hessian.spectral_density(A, steps=3), "op"),
    "top_eigenvalues": (lambda A: hessian.top_eigenvalues(A, 1), "op"),
    "lanczos": (lambda A: hessian.lanczos(A, 3), "op"),
    "cg": (lambda A: hessian.cg(A, np.ones(3, np.float32)), "A"),
}


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_an_overflowing_dense_product_is_a_value_error_naming_the_operator(name):
    run, who = ESTIMATORS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=rf"^{who}: "):
            run(BIG)


def test_the_dense_products_are_inf_without_a_warning():
    op = hessian.as_operator(BIG)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isinf(op.matvec(np.ones(3, np.float32))).all()
        assert np.isinf(op.matmat(np.ones((3, 2), np.float32))).all()
        assert np.isinf(op @ np.ones(3, np.float32)).all()


@pytest.mark.parametrize("dtype, big", [(np.float32, 1e38), (np.float64, 1e308)])
def test_from_grad_product_past_the_range_is_a_value_error_naming_grad_fn(dtype, big):
    """``from_grad``'s difference quotient ``(g+ - g-) / 2h`` of a product past the dtype's range
    (diag(1..5) times 1e38 in float32): NumPy's "overflow encountered in divide" escaped under
    ``-W error``, not the ValueError naming ``grad_fn`` its non-finite products get."""
    d = np.arange(1.0, 6.0).astype(dtype)
    op = hessian.from_grad(lambda x: d * x, np.ones(5, dtype))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"^grad_fn: "):
            op.matvec(np.full(5, big, dtype))
        # (in range: the product as before)
        np.testing.assert_allclose(op.matvec(np.ones(5, dtype)), d, rtol=1e-2 if dtype == np.float32 else 1e-8)
