"""CUDA twin of tests/test_hunt45a_activation_tails.py: tanh, sigmoid and softplus on the device
(rules::nnmath::exp_em1_ / logistic_ over CUDA's exp and expm1) within the same ulps of mpmath down
to their underflow, subnormal outputs included, and the same special values."""

import numpy as np
import pytest

from gpu import require_gpu

cp, K = require_gpu()

from optkern.nn.activations import activation  # noqa: E402
from test_hunt45a_activation_tails import check_kind, grid  # noqa: E402


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["tanh", "sigmoid", "softplus"])
def test_within_a_few_ulps_down_to_underflow_on_the_gpu(kind, dt):
    z = grid(dt)
    got = [cp.asnumpy(a) for a in activation(kind, cp.asarray(z), order=2)]
    check_kind(kind, z, got, dt)


def test_special_values_on_the_gpu():
    for dt in (np.float32, np.float64):
        z = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30, -1e30], dt)
        for kind in ("tanh", "sigmoid", "softplus"):
            want = activation(kind, z, order=2)
            for k, g in enumerate(activation(kind, cp.asarray(z), order=2)):
                g = cp.asnumpy(g)
                np.testing.assert_array_equal(g, want[k], err_msg=f"{kind} {k}")
                if k == 0:  # (tanh(+-0) = +-0; f'' at 0 is 0 of either sign: CUDA's expm1(-0) is -0)
                    np.testing.assert_array_equal(np.signbit(g[1:]), np.signbit(want[k][1:]), err_msg=kind)
