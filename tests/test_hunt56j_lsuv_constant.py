"""Hunt 56j: LSUV refuses an output whose variance no rescaling brings to 1, weights restored.

A layer whose output is constant on the batch (an all-zero ``x`` with zero biases, a dead layer) has
variance 0 at any scale. ``lsuv_`` divided its weight by ``sqrt(0 + eps)`` at every iteration: a
float64 MLP came back from ``lsuv_mlp_`` with weights 1e40 times larger and variances ``[0.0, 0.0]``,
no error; a float32 one overflowed to inf (NumPy's "overflow encountered in cast", then a NaN
variance blamed on ``forward``). A factor that takes the weights past their dtype's range is refused
the same way instead of writing inf.
"""

from __future__ import annotations

import numpy as np
import pytest

from optkern import init
from optkern.nn import MLP

ZERO = r"^forward: output 0 has variance 0 on x \(a constant output"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_lsuv_mlp_of_an_all_zero_batch_refused_params_kept(dtype, activation):
    m = MLP([3, 5, 2], activation=activation, dtype=dtype)
    p = m.init_params(0)
    p[m.layout[0]["b"][0]] = 0.25  # (a bias, zeroed by zero_bias: restored too)
    before = p.copy()
    with pytest.raises(ValueError, match=ZERO):
        init.lsuv_mlp_(m, p, np.zeros((8, 3), dtype), rng=0)
    np.testing.assert_array_equal(p, before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lsuv_of_a_constant_output_refused_weights_kept(dtype):
    w = np.random.default_rng(1).standard_normal((4, 3)).astype(dtype)
    before = w.copy()
    with pytest.raises(ValueError, match=ZERO):
        init.lsuv_([w], lambda x: [np.full((6, 4), 2.0, dtype)], np.ones((6, 3), dtype), rng=0)
    np.testing.assert_array_equal(w, before)


def test_lsuv_factor_past_the_dtype_range_refused():
    """A forward whose output variance stays 1e-30 whatever the weight: each rescaling multiplies by
    1e15, and float32 weights went to inf (NumPy's cast warning; without -W error, inf returned)."""
    w = np.full((4, 3), 0.5, np.float32)
    out = np.tile(np.array([1e-15, -1e-15]), 12).reshape(6, 4)  # (variance 1e-30)
    with pytest.raises(
        ValueError, match=r"^forward: output 0 has variance 1e-30: rescaling weights\[0\] by .* float32"
    ):
        init.lsuv_([w], lambda x: [out], np.ones((6, 3), np.float32), orthogonal_start=False, eps=1e-300)
    np.testing.assert_array_equal(w, np.full((4, 3), 0.5, np.float32))


def test_lsuv_still_reaches_unit_variance():
    """(the checks leave the ordinary path as it was: an MLP on a real batch reaches variance ~1)"""
    m = MLP([3, 7, 1, 2], activation="relu", dtype=np.float64)
    p = m.init_params(0)
    x = np.random.default_rng(2).standard_normal((64, 3))
    var = init.lsuv_mlp_(m, p, x, rng=0, tol=1e-3, max_iter=20)
    np.testing.assert_allclose(var, 1.0, atol=1e-3)
