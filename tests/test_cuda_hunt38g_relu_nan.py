"""CUDA twin of tests/test_hunt38g_relu_nan.py: relu, relu' and relu'' at NaN, +-0, +-inf and a
subnormal on the GPU, the same bits as the CPU's (torch's values: that test)."""

import numpy as np
import pytest

from gpu import require_gpu, same_bits

cp, K = require_gpu()

from optkern.nn.activations import activation  # noqa: E402


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_at_nan_and_zeros_same_bits_as_the_cpu(dtype):
    z = np.array([np.nan, -0.0, 0.0, 1.0, -1.0, np.inf, -np.inf, 1e-45], dtype)
    for got, want, what in zip(
        activation("relu", cp.asarray(z), order=2), activation("relu", z, order=2), "f d1 d2".split()
    ):
        same_bits(cp.asnumpy(got), want, what)
