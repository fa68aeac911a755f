"""CUDA twin of tests/test_hunt38b_tanh.py: tanh's f' and f'' from the pre-activation on the device
(rules::nnmath::tanh_sech2_ over CUDA's exp and tanh), within a few ulps of the mpmath reference."""

import numpy as np
import pytest

from gpu import require_gpu

cp, K = require_gpu()

from optkern.nn.activations import activation  # noqa: E402
from test_hunt38b_tanh import _ref  # noqa: E402


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_tanh_derivatives_on_the_gpu_within_a_few_ulps(dt):
    fi = np.finfo(dt)
    z = np.linspace(-40, 40, 801).astype(dt)
    _, d1, d2 = (cp.asnumpy(a) for a in activation("tanh", cp.asarray(z), order=2))
    w1, w2 = _ref(z)
    for got, want in ((d1, w1), (d2, w2)):
        normal = np.abs(want) >= fi.tiny
        err = np.abs(got.astype(np.float64) - want)[normal] / np.abs(want)[normal]
        assert err.max() <= 8 * fi.eps, (dt, float(err.max() / fi.eps))
