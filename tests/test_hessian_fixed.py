"""``hessian.from_mlp(..., fixed=True)``: the curvature at the params and batches of the first
product, each batch's forward pass computed once. Products equal the default operator's bit for
bit (the same operations in the same order), over several batches, a layer block and ``matmat``;
later in-place changes to the params or the data are not seen; bad input is refused as before."""

import numpy as np
import pytest

from optkern import hessian
from optkern.nn import MLP

SETUPS = [
    dict(sizes=[6, 9, 4], activation="tanh", norm=None, loss="cross_entropy"),
    dict(sizes=[5, 7, 8, 3], activation="gelu", norm="batch", loss="cross_entropy"),
    dict(sizes=[4, 6, 2], activation="softplus", norm="layer", loss="mse"),
]


def _problem(setup, dtype, seed=0, batches=2):
    rng = np.random.default_rng(seed)
    model = MLP(dtype=dtype, **setup)
    p = model.init_params(seed) + dtype(0.1) * rng.standard_normal(model.num_params).astype(dtype)
    out = setup["sizes"][-1]
    data = []
    for b in range(batches):
        x = rng.standard_normal((5 + 3 * b, setup["sizes"][0])).astype(dtype)
        y = (
            rng.integers(0, out, x.shape[0])
            if setup["loss"] == "cross_entropy"
            else rng.standard_normal((x.shape[0], out)).astype(dtype)
        )
        data.append((x, y))
    return model, p, data, rng


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["hessian", "ggn"])
@pytest.mark.parametrize("setup", SETUPS)
def test_fixed_products_equal_the_live_operator_bit_for_bit(setup, kind, dtype):
    model, p, data, rng = _problem(setup, dtype)
    for block in (None, "layer2"):
        live = hessian.from_mlp(model, p, kind=kind, batches=data, block=block)
        fixed = hessian.from_mlp(model, p, kind=kind, batches=data, block=block, fixed=True)
        for _ in range(3):  # the first product computes the points, the others reuse them
            v = rng.standard_normal(live.shape[0]).astype(dtype)
            np.testing.assert_array_equal(fixed.matvec(v), live.matvec(v))
        V = rng.standard_normal((live.shape[0], 3)).astype(dtype)
        np.testing.assert_array_equal(fixed.matmat(V), live.matmat(V))


def test_fixed_operator_keeps_the_first_products_point():
    model, p, data, rng = _problem(SETUPS[1], np.float64)
    fixed = hessian.from_mlp(model, p, kind="hessian", batches=data, fixed=True)
    v = rng.standard_normal(model.num_params)
    before = fixed.matvec(v)
    p0, x0 = p.copy(), data[0][0].copy()
    p += 0.5  # an optimizer stepping in place
    data[0][0][...] = 0.0
    np.testing.assert_array_equal(fixed.matvec(v), before)
    live_then = hessian.from_mlp(model, p0, kind="hessian", batches=[(x0, data[0][1]), data[1]])
    np.testing.assert_array_equal(before, live_then.matvec(v))
    assert not np.array_equal(hessian.from_mlp(model, p, kind="hessian", batches=data).matvec(v), before)


def test_fixed_operator_takes_the_params_at_its_first_product_not_at_construction():
    model, p, data, rng = _problem(SETUPS[0], np.float64)
    fixed = hessian.from_mlp(model, p, kind="ggn", batches=data, fixed=True)
    p *= 2.0
    v = rng.standard_normal(model.num_params)
    np.testing.assert_array_equal(fixed.matvec(v), hessian.from_mlp(model, p, kind="ggn", batches=data).matvec(v))


def test_fixed_operator_refuses_bad_input():
    model, p, data, _ = _problem(SETUPS[0], np.float32)
    with pytest.raises(TypeError, match="^fixed: expected True or False"):
        hessian.from_mlp(model, p, kind="ggn", batches=data, fixed="yes")
    fixed = hessian.from_mlp(model, p, kind="ggn", batches=data, fixed=True)
    live = hessian.from_mlp(model, p, kind="ggn", batches=data)
    v64 = np.linspace(-1, 1, model.num_params)  # (the operator converts to its dtype, as the live one does)
    np.testing.assert_array_equal(fixed.matvec(v64), live.matvec(v64))
    with pytest.raises(ValueError, match="shape"):
        fixed.matvec(np.ones(model.num_params + 1, np.float32))
    # (refused when the operator is built, as the live one is: it was raised at the first product)
    with pytest.raises(ValueError, match=r"^x: expected shape"):
        hessian.from_mlp(model, p, kind="ggn", x=data[0][0][:, :3], y=data[0][1], fixed=True)
