"""An 8-bit block holding +-inf: its finite values must survive (C++ defect, fixed).

The block scale is the largest |x| that is not NaN (``lowp::abs_bits`` in
``cpp/include/optkern/lowp_storage.hpp``, and the AVX2 / AVX-512 ``block_scale`` of
``cpp/lowp_q8_avx2.hpp`` / ``cpp/lowp_q8_avx512.hpp``, and the CUDA reduction that mirrors it): an
inf makes the scale inf, every finite value encodes as x / inf = 0 -> code 0, and decodes as
0 * inf = NaN. A float32 Adam step whose grad^2 overflows (|g| > ~1.8e19, finite grads, no inf
anywhere) keeps every other element finite (the overflowed one stops moving: m / sqrt(inf) = 0);
the 8-bit Adam turns the whole block of params -- 256 by default -- into NaN on the next step.

Fix: count +-inf as 0 in the block's absmax, as NaN already is
(``abs_bits``: ``a >= 0x7f800000u ? 0u : a``, the same test in both SIMD ``block_scale`` versions and
the CUDA reduction); ``dyn_encode_mag`` already clamps x / scale > 1 to 1, so an inf then stores as
the top code of its sign (the block's largest finite magnitude) and the finite values keep the
documented round-trip bound.
"""

import numpy as np
import pytest

from optkern import lowp, optim
from q8_rule import quantize_rule


@pytest.mark.parametrize("block", [64, 256])
@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_finite_values_next_to_an_inf_keep_the_round_trip_bound(block, bad):
    rng = np.random.default_rng(2027)
    x = rng.standard_normal(block + 7).astype(np.float32)  # (a full block and a partial one)
    x[3] = bad
    codes, scales = quantize_rule(x, block)
    y = lowp.dequantize_blockwise(codes, scales, block)
    finite = np.isfinite(x)
    assert np.isfinite(y[finite]).all()
    absmax = np.abs(x[:block][finite[:block]]).max()  # the block's largest finite magnitude
    err = np.abs(y[:block] - x[:block])[finite[:block]]
    assert err.max() <= 0.45 / 64 * absmax * (1 + 4e-4)  # (a signed block: the documented bound, its band)


def test_8bit_adam_keeps_the_block_finite_when_one_second_moment_overflows():
    """Finite grads; float32 and bfloat16-state Adam keep every param finite."""
    rng = np.random.default_rng(7)
    p0 = rng.standard_normal(256).astype(np.float32)
    g = rng.standard_normal(256).astype(np.float32)
    g[5] = 1e22  # (1 - beta2) g^2 overflows float32: v = inf for this element only
    for state_dtype in ("float32", "bfloat16"):  # (the reference behaviour, asserted as it is today)
        p = p0.copy()
        opt = optim.Adam([p], lr=0.01, state_dtype=state_dtype)
        for _ in range(3):
            opt.step([g])
        assert np.isfinite(p).all(), state_dtype
    p = p0.copy()
    opt = optim.Adam([p], lr=0.01, state_dtype="int8")
    for _ in range(3):
        opt.step([g])
    assert np.isfinite(p).all()  # (before the fix: all 256 NaN after the second step)
