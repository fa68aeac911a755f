"""optkern.nn.MLP's inputs (38th hunt): bfloat16 inputs ``x`` (an ``ml_dtypes.bfloat16`` array or a
torch.bfloat16 tensor) and MSE targets ``y`` were refused ("x: expected real numbers (float or
integer), got bfloat16": ml_dtypes' bfloat16 is not of NumPy kind "f"), while float16 ones are cast
to the model's dtype; float32 and float64 hold every bfloat16 exactly, so they are cast too."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import torch

from optkern.nn import MLP

_BF16 = np.dtype(ml_dtypes.bfloat16)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("norm", [None, "batch"])
def test_bfloat16_inputs_are_cast_as_float16_ones_are(dtype, norm):
    m = MLP([3, 5, 2], "gelu", norm, dtype=dtype)
    p = m.init_params(1)
    x = np.random.default_rng(0).standard_normal((7, 3)).astype(_BF16)
    y = np.array([0, 1, 1, 0, 1, 0, 0])
    exact = x.astype(dtype)
    v = np.random.default_rng(2).standard_normal(m.num_params).astype(dtype)
    np.testing.assert_array_equal(m.loss(p, x, y), m.loss(p, exact, y))
    np.testing.assert_array_equal(m.loss_and_grad(p, x, y)[1], m.loss_and_grad(p, exact, y)[1])
    np.testing.assert_array_equal(m.hvp(p, x, y, v), m.hvp(p, exact, y, v))
    np.testing.assert_array_equal(m.predict(p, torch.from_numpy(exact).bfloat16()), m.predict(p, exact))
    assert m.accuracy(p, x, y) == m.accuracy(p, exact, y)


def test_bfloat16_mse_targets_are_cast():
    m = MLP([3, 4, 2], "tanh", loss="mse", dtype=np.float64)
    p = m.init_params(0)
    x = np.random.default_rng(0).standard_normal((6, 3))
    y = np.random.default_rng(1).standard_normal((6, 2)).astype(_BF16)
    np.testing.assert_array_equal(m.loss_and_grad(p, x, y)[1], m.loss_and_grad(p, x, y.astype(np.float64))[1])


def test_bfloat16_labels_for_cross_entropy_are_still_refused_by_name():
    m = MLP([3, 4, 2])
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(TypeError, match="^y: expected integer labels"):
        m.loss(m.init_params(0), x, np.zeros(2, _BF16))
