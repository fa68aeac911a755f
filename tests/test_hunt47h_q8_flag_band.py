"""The vectorized 8-bit encoder (cpp/lowp_q8_avx512.hpp, lowp_q8_avx2.hpp) around the edges of its
flag band. The encoder computes a code's continuous index t' = y K_e + L_e without a division and
hands an element to the scalar quantize when t' lies within 0.5 - kTol (q8_fast.hpp: 4096 float32
ulps of 1) of a half-integer. Its AVX-512 form rounds t' once (one fused multiply-add), the AVX2
form twice: either way an element right at the band's edge may land on either side of it, and must
get the scalar quantize's code from both sides. test_lowp_q8.py probes the midpoints themselves (a
few ulps, inside the band); here also the floats around both edges of every midpoint's band (from
~30 ulps of y off the midpoint in the top decade to ~10^4 in the lowest).

Since the 56th session the division-free form is the rule itself (rules/lowp.hpp's dyn_encode_mag:
no flag, no scalar fix-up); these floats around every midpoint still pin the vector loops to it."""

import numpy as np
import pytest

from optkern import _cpu, lowp

BAND = 4096 * 2.0**-24  # 0.5 - kTol: the flag band's half-width in units of the code spacing
ULPS = 64  # floats either side of each band edge (and of each midpoint)


def around_band_edges(signed: bool) -> np.ndarray:
    """Between each pair of adjacent levels a < b: the floats near the midpoint and near both
    edges of its flag band, midpoint +- BAND (b - a), ULPS either side of each."""
    levels = np.unique(np.abs(lowp.decode_map(signed))).astype(np.float64)
    a, b = levels[:-1], levels[1:]
    mid = (a + b) / 2
    centres = np.concatenate([mid, mid - BAND * (b - a), mid + BAND * (b - a)]).astype(np.float32)
    bits = centres.view(np.int32)[:, None] + np.arange(-ULPS, ULPS + 1, dtype=np.int32)[None, :]
    v = bits.ravel().view(np.float32)
    return v[(v > 0) & (v <= 1)]


def codes_both_ways(g: np.ndarray, block: int) -> None:
    codes = np.empty(g.size, np.uint8)
    scales = np.empty(lowp.n_blocks(g.size, block), np.float32)
    _cpu.lowp_quantize_blockwise_reference(g, codes, scales, block)
    fast_c, fast_s = lowp.quantize_blockwise(g, block)
    np.testing.assert_array_equal(fast_s, scales)
    bad = np.flatnonzero(fast_c != codes)
    assert bad.size == 0, f"{bad.size} codes differ, first x = {g[bad[:5]]!r}: {fast_c[bad[:5]]} vs {codes[bad[:5]]}"


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("scale", [1.0, 0.37, 3.1e-5, 6.5e4, 0.999999, 1.0000001])
def test_q8_encode_across_the_flag_band(signed, scale):
    rng = np.random.default_rng(2026120647)
    block = 256
    v = around_band_edges(signed)
    rng.shuffle(v)
    nb = -(-v.size // (block - 1))
    v = np.concatenate([v, np.zeros(nb * (block - 1) - v.size, np.float32)]).reshape(nb, block - 1)
    s = np.float32(scale)
    g = np.empty((nb, block), np.float32)
    g[:, :-1] = v * s  # (rounded: y = x / scale then sits a rounding off the midpoint grid)
    g[:, -1] = s
    if signed:
        g[:, :-1] *= rng.choice(np.array([-1, 1], np.float32), size=(nb, block - 1))
        g[:, 0] = -np.abs(g[:, 0]) - np.float32(1e-38)  # every block signed
    codes_both_ways(g.ravel(), block)
