"""CUDA twin of tests/test_hunt43g_gelu_tails.py: GELU's f, f', f'' on the device (rules::nnmath::gelu_terms
over CUDA's erfc and exp) within a few ulps of the mpmath reference down to their underflow."""

import numpy as np
import pytest

from gpu import require_gpu

cp, K = require_gpu()

from optkern.nn.activations import activation  # noqa: E402
from test_hunt43g_gelu_tails import check_within_ulps  # noqa: E402


@pytest.mark.parametrize("dt, ulps", [(np.float32, 1.0), (np.float64, 8.0)])
def test_gelu_on_the_gpu_within_a_few_ulps(dt, ulps):
    z = np.concatenate([np.linspace(-40, 40, 401), [-37.6, -13.2, -7.5, -0.7518]]).astype(dt)
    got = [cp.asnumpy(a) for a in activation("gelu", cp.asarray(z), order=2)]
    check_within_ulps(z, got, dt, ulps)


def test_gelu_extremes_on_the_gpu():
    for dt in (np.float32, np.float64):
        z = np.array([-np.inf, np.inf, 0.0, -0.0], dt)
        f, d1, d2 = (cp.asnumpy(a) for a in activation("gelu", cp.asarray(z), order=2))
        np.testing.assert_array_equal(f, np.array([0, np.inf, 0, 0], dt))
        np.testing.assert_array_equal(d1, [0, 1, 0.5, 0.5])
        np.testing.assert_array_equal(d2, np.array([0, 0, 1, 1]) * dt(np.sqrt(2 / np.pi)))
