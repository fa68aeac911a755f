"""The AVX-512 8-bit encoder in fixed point (cpp/lowp_q8_avx512.hpp: encode_fixed's floor of
2^16 (t + 0.5 + 2^-12), bytes2's narrowing, the 64-value loop handing a block's last n % 64 to the
16-value loop with its flags at the right offset) against the scalar quantize, on blocks whose
lengths end in every mix of 64-, 16- and 8-value groups and a scalar rest, filled with values at
and around the map's code midpoints (the flagged elements), signed and unsigned, in-process and
with OPTKERN_NO_AVX512_VBMI=1 (the 16-value loop alone)."""

import numpy as np
import pytest

from child_pytest import run_pytest
from optkern import lowp
from test_lowp_q8 import boundary_values, encode_through_step, reference

BLOCK = 256
# last-block lengths: 64-groups, then 16-, 8-groups and a rest of 1..7 in every combination
TAILS = [1, 7, 8, 15, 16, 24, 31, 64, 65, 72, 80, 88, 93, 128 + 24 + 7, 192 + 16 + 8 + 5, 255]


def midpoints(signed: bool) -> np.ndarray:
    """The exact midpoints between adjacent codes (as float32): the fast index flags each of them
    for the scalar quantize, which rounds the tie by the documented rule."""
    levels = np.unique(np.abs(lowp.decode_map(signed))).astype(np.float64)
    return ((levels[1:] + levels[:-1]) / 2).astype(np.float32)


def blocks_ending_in(tail: int, signed: bool, rng: np.random.Generator) -> np.ndarray:
    """Three full blocks and a last one of `tail` values from boundary_values, every 5th an exact
    midpoint (so each group of 8 holds a flagged value), each block's absmax 1 (scale 1: x / scale
    is the value itself)."""
    v = boundary_values(signed)
    v = v[np.abs(v) <= 1]
    g = rng.choice(v, 3 * BLOCK + tail).astype(np.float32)
    mids = midpoints(signed) * (rng.choice(np.array([-1, 1], np.float32), 1) if signed else np.float32(1))
    g[::5] = rng.choice(mids, g[::5].size)
    for b in range(4):
        g[b * BLOCK + rng.integers(0, min(BLOCK, g.size - b * BLOCK))] = -1.0 if signed else 1.0
    return g


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("tail", TAILS)
def test_q8_encode_of_blocks_ending_in_every_group_mix(tail, signed):
    rng = np.random.default_rng(5070 + tail + 1000 * signed)
    for _ in range(3):  # other draws put the flagged values in other groups
        g = blocks_ending_in(tail, signed, rng)
        got_c, got_s = encode_through_step(g, BLOCK)
        want_c, want_s = reference(g, BLOCK)
        np.testing.assert_array_equal(got_s, want_s)
        np.testing.assert_array_equal(got_c, want_c)


def test_the_16_value_loop_too():
    """The same tests with OPTKERN_NO_AVX512_VBMI=1: the encoder without the 64-value loop."""
    from optkern import _backend

    if _backend.cpu.build_info()["lowp_loops"] != "avx512-vbmi":
        pytest.skip("this CPU has no AVX512_VBMI: the tests above ran its encoder")
    r = run_pytest([__file__], {"OPTKERN_NO_AVX512_VBMI": "1"}, "not the_16_value_loop_too")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert " passed" in r.stdout
