"""``MLP.hvp_block`` / ``ggn_block`` with k = 0 directions (``V`` of shape ``(0, n)``): an empty
``(0, n)`` result of V's dtype, as NumPy's products and the curvature operators' ``matmat`` of no
columns give, after the same checks of every other argument (it was a ValueError "k >= 1")."""

import numpy as np
import pytest

from optkern import hessian
from optkern.nn import MLP


def _make(dtype, norm=None, sizes=(7, 9, 3), n=11):
    model = MLP(list(sizes), activation="tanh", norm=norm, dtype=dtype)
    rng = np.random.default_rng()
    p = (model.init_params(0) + 0.1 * rng.standard_normal(model.num_params)).astype(dtype)
    return model, p, rng.standard_normal((n, sizes[0])).astype(dtype), rng.integers(0, sizes[-1], n)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("method", ["hvp_block", "ggn_block"])
@pytest.mark.parametrize("norm", [None, "batch", "layer"])
def test_no_directions_empty_result(method, dtype, norm):
    model, p, x, y = _make(dtype, norm)
    n = model.num_params
    got = getattr(model, method)(p, x, y, np.zeros((0, n), dtype))
    assert type(got) is np.ndarray and got.shape == (0, n) and got.dtype == dtype
    # (the k rows of a larger V are those of their own single products: k = 0 is the empty end of it)
    V = np.random.default_rng().standard_normal((1, n)).astype(dtype)
    assert getattr(model, method)(p, x, y, V).shape == (1, n)


@pytest.mark.parametrize("method", ["hvp_block", "ggn_block"])
def test_no_directions_still_checks_the_rest(method):
    model, p, x, y = _make(np.float64)
    n = model.num_params
    V = np.zeros((0, n))
    with pytest.raises(TypeError, match="^V"):
        getattr(model, method)(p, x, y, np.zeros((0, n), np.float32))
    with pytest.raises(ValueError, match="^V"):
        getattr(model, method)(p, x, y, np.zeros((0, n + 1)))
    with pytest.raises(ValueError, match="^x"):
        getattr(model, method)(p, x[:, :3].copy(), y, V)
    with pytest.raises(ValueError, match="^params"):
        getattr(model, method)(p[:-1].copy(), x, y, V)
    with pytest.raises(TypeError, match="^params"):
        getattr(model, method)(list(p), x, y, V)


def test_operator_matmat_no_columns_agrees():
    model, p, x, y = _make(np.float64)
    op = hessian.from_mlp(model, p, x, y)
    assert op.matmat(np.zeros((model.num_params, 0))).shape == (model.num_params, 0)
    assert model.hvp_block(p, x, y, np.zeros((0, model.num_params))).shape == (0, model.num_params)
