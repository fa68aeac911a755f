"""``MLP`` took a byte-swapped ``x`` (``>f8``: float64 values) but refused a byte-swapped ``params``,
``v`` or ``V`` ("params: expected float64, got >f8"). Either byte order is now read as its values
(a native copy), every result native; another dtype is still refused naming the argument."""

import numpy as np
import pytest

from optkern import hessian
from optkern.nn import MLP


def swapped(a):
    return a.astype(a.dtype.newbyteorder("S"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("norm", [None, "batch"])
def test_byte_swapped_params_v_and_V_are_their_values(dtype, norm):
    model = MLP([3, 5, 2], norm=norm, dtype=dtype)
    rng = np.random.default_rng(0)
    p = model.init_params(1)
    x, y = rng.standard_normal((6, 3)).astype(dtype), rng.integers(0, 2, 6)
    v = rng.standard_normal(model.num_params).astype(dtype)
    V = rng.standard_normal((2, model.num_params)).astype(dtype)
    ps, vs, Vs = swapped(p), swapped(v), swapped(V)
    assert not ps.dtype.isnative
    np.testing.assert_array_equal(model.predict(ps, x), model.predict(p, x))
    assert model.accuracy(ps, x, y) == model.accuracy(p, x, y)
    np.testing.assert_array_equal(model.loss(ps, x, y), model.loss(p, x, y))
    (l1, g1), (l2, g2) = model.loss_and_grad(ps, x, y), model.loss_and_grad(p, x, y)
    assert l1 == l2 and g1.dtype == np.dtype(dtype) and g1.dtype.isnative
    np.testing.assert_array_equal(g1, g2)
    for name in ("hvp", "ggn_vp"):
        got = getattr(model, name)(ps, x, y, vs)
        assert got.dtype == np.dtype(dtype) and got.dtype.isnative
        np.testing.assert_array_equal(got, getattr(model, name)(p, x, y, v))
    np.testing.assert_array_equal(model.jvp(ps, x, vs), model.jvp(p, x, v))
    for name in ("hvp_block", "ggn_block"):
        got = getattr(model, name)(ps, x, y, Vs)
        assert got.dtype == np.dtype(dtype) and got.dtype.isnative
        np.testing.assert_array_equal(got, getattr(model, name)(p, x, y, V))
    # the curvature operator over the model takes the swapped params too
    H = hessian.from_mlp(model, ps, x, y)
    np.testing.assert_allclose(H @ v, model.hvp(p, x, y, v), rtol=1e-6 if dtype == np.float32 else 1e-12)


def test_the_other_dtype_in_either_byte_order_is_refused_naming_it():
    model = MLP([3, 4, 2], dtype=np.float64)
    p = model.init_params(0)
    x, y = np.ones((4, 3)), np.array([0, 1, 0, 1])
    for bad in (p.astype(">f4"), p.astype("<f4")):
        with pytest.raises(TypeError, match=r"^params: expected float64, got [<>]?f"):
            model.loss(bad, x, y)
        with pytest.raises(TypeError, match=r"^v: expected float64"):
            model.hvp(p, x, y, bad)
        with pytest.raises(TypeError, match=r"^V: expected float64"):
            model.hvp_block(p, x, y, bad[None])
    # `out` is written, so it stays the model's native dtype (a swapped one is refused naming it)
    with pytest.raises(TypeError, match=r"^out: expected float64, got >f8"):
        model.hvp(p, x, y, p, out=np.empty(model.num_params, ">f8"))
