"""CUDA twin of tests/test_hunt39g_block_fp_inf.py: on the device too, a block-floating-point block
with no finite non-zero value (zeros, NaN, +-inf) is kept as it is (+inf was ~2.3e-38), and a
block with finite values still saturates +-inf to its grid's ends; the same bits as on the CPU."""

import numpy as np
import pytest

from gpu import require_gpu, same_bits
from optkern import lowp

cp, _cuda = require_gpu()

X = np.array([0.0, np.inf, -np.inf, np.nan, 1.0, np.inf, -np.inf, 0.0, 0.0, np.inf, 0.0, -np.inf], np.float32)


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
@pytest.mark.parametrize("block", [0, 4])
def test_a_block_without_finite_non_zero_values_keeps_its_infs(rounding, block):
    got = cp.asnumpy(lowp.quantize_block_fp(cp.asarray(X), 8, block, rounding=rounding, seed=9))
    same_bits(got, lowp.quantize_block_fp(X, 8, block, rounding=rounding, seed=9), f"block={block}")
    if block == 4:
        np.testing.assert_array_equal(got[:4], [0.0, np.inf, -np.inf, np.nan])
        np.testing.assert_array_equal(got[5:7], [127 / 64, -2.0])
        np.testing.assert_array_equal(got[8:], [0.0, np.inf, 0.0, -np.inf])
