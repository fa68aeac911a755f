"""Hunt 39i: the 8-bit blockwise quantizer stored +-inf as 0 in a block with no finite non-zero value
(its scale, the largest finite |x|, was 0: every code 0). Next to finite values an inf saturates to
its sign's top code, the block's largest finite magnitude (hunt 27); alone it lost the overflow:
8-bit Adam whose second moment overflowed (v = inf) in an otherwise zero block stored v = 0 and
then stepped by m / eps (~1e27), where float32 Adam stops that element (m / sqrt(inf) = 0).
Now such a block's scale is +-FLT_MAX (the shared rule, lowp::scale_of): +-inf saturates to
+-FLT_MAX, zeros and NaN (which the 8-bit map has no code for) stay 0, every scale finite."""

import numpy as np
import pytest

from optkern import _cpu, lowp, optim
from q8_rule import quantize_rule

BIG = np.finfo(np.float32).max


def _specials(n):
    x = np.zeros(n, np.float32)
    x[[1, n // 2]] = np.inf
    x[3] = np.nan
    return x


@pytest.mark.parametrize("n", [64, 61, 256])  # (a full SIMD block, a scalar tail, a larger block)
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_an_inf_alone_in_its_block_saturates_to_the_largest_float32(n, sign):
    x = _specials(n) * np.float32(sign)
    x[3] = np.nan
    codes, scales = quantize_rule(x, 64)
    y = lowp.dequantize_blockwise(codes, scales, 64)
    assert np.isfinite(scales).all()
    inf = np.isinf(x)
    np.testing.assert_array_equal(y[inf], np.float32(sign) * BIG)
    assert (y[~inf] == 0.0).all()


def test_both_signs_and_the_reference_loop_agree():
    x = np.zeros(64 * 4 + 5, np.float32)
    x[[0, 70]] = [np.inf, -np.inf]  # (block 0: +inf alone; block 1: -inf alone)
    x[130:132] = [np.inf, -np.inf]  # (block 2: both signs)
    x[200] = 1.5  # (block 3: next to a finite value, as before: its top code)
    x[199] = np.inf
    codes, scales = quantize_rule(x, 64)
    rc, rs = np.empty_like(codes), np.empty_like(scales)
    _cpu.lowp_quantize_blockwise_reference(x, rc, rs, 64)
    np.testing.assert_array_equal(codes, rc)
    np.testing.assert_array_equal(scales.view(np.uint32), rs.view(np.uint32))
    np.testing.assert_array_equal(scales[:4], [BIG, -BIG, -BIG, 1.5])
    y = lowp.dequantize_blockwise(codes, scales, 64)
    np.testing.assert_array_equal(y[[0, 70, 130, 131, 199, 200]], [BIG, -BIG, BIG, -BIG, 1.5, 1.5])


def test_8bit_adam_does_not_step_by_m_over_eps_after_the_second_moment_overflows():
    g = np.zeros(256, np.float32)
    g[5] = 1e22  # ((1 - beta2) g^2 overflows: v = inf, alone in a block of zeros)
    p = np.zeros(256, np.float32)
    opt = optim.Adam([p], lr=0.01, state_dtype="int8")
    opt.step([g])
    assert np.isinf(opt.state_dict()["state"][0]["exp_avg_sq_scale"][0]) is np.False_
    opt.step([np.zeros(256, np.float32)])
    assert np.isfinite(p).all()
    assert np.abs(p).max() < 1.0  # (before: p[5] ~ -5e27, a step of m / eps)
