"""Hunt 39g: quantize_block_fp on a block with no finite non-zero value (zeros, NaN, +-inf).

The module's rule for non-finite input (quantize_fixed_point, quantize_blockwise, to_half): NaN
stays NaN, +-inf is not refused; a grid quantizer saturates +-inf to its grid's ends. A block
floating-point block's grid is set by its largest finite magnitude; a block with none (only zeros
and specials) has no range to saturate to, yet it took the grid picked so that zeros stay zero
(step 2^-132 at 8 bits): +inf came back as ~2.33e-38 and -inf as -2^-126, an overflow turned into
a tiny finite value, silently. Now such a block is kept as it is (0, NaN and +-inf are exact in
any format); a block with finite values still saturates +-inf to its ends (SWALP's rule)."""

import numpy as np
import pytest

from optkern import lowp

SPECIALS = np.array([0.0, np.inf, -np.inf, np.nan, -0.0, 0.0, np.inf, 0.0], np.float32)


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
@pytest.mark.parametrize("bits", [2, 8, 24])
@pytest.mark.parametrize("block", [0, 8, 3])
def test_a_block_without_finite_non_zero_values_is_kept(rounding, bits, block):
    got = lowp.quantize_block_fp(SPECIALS, bits, block, rounding=rounding, seed=5)
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(SPECIALS))
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(SPECIALS))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(SPECIALS))
    assert (got[np.isfinite(SPECIALS)] == 0.0).all()


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_in_place_too(rounding):
    x = SPECIALS.copy()
    lowp.quantize_block_fp(x, 8, 4, rounding=rounding, out=x)
    np.testing.assert_array_equal(np.isinf(x), np.isinf(SPECIALS))
    np.testing.assert_array_equal(np.sign(x[np.isinf(x)]), np.sign(SPECIALS[np.isinf(SPECIALS)]))


def test_a_block_with_a_finite_value_still_saturates_inf_to_its_ends():
    """Blocks of 4: the first holds 1.0 (E = 0, step 2^-6 at 8 bits: ends -2, 127/64); the second
    only zeros and infs (kept)."""
    x = np.array([1.0, np.inf, -np.inf, np.nan, 0.0, np.inf, -np.inf, 0.0], np.float32)
    got = lowp.quantize_block_fp(x, 8, 4, rounding="nearest")
    np.testing.assert_array_equal(got[:3], np.array([1.0, 127 / 64, -2.0], np.float32))
    assert np.isnan(got[3])
    np.testing.assert_array_equal(got[4:], x[4:])


def test_a_subnormal_block_keeps_its_grid():
    """The smallest finite magnitude still sets a grid (only an all-zero block has none)."""
    x = np.array([1e-45, np.inf, 0.0, -np.inf], np.float32)  # absmax 2^-149
    got = lowp.quantize_block_fp(x, 8, 0, rounding="nearest")
    assert np.isfinite(got).all()
    assert got[0] == x[0]
