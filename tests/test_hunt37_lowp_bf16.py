"""The bf16 stores of the low-precision step (cpp/lowp_bf16_avx512.hpp where the CPU has AVX-512,
the scalar loops elsewhere) at the special values: NaN, +-inf, finite values that round to inf or
saturate at bf16's largest, subnormals, -0 -- the states rounded stochastically, the param to
nearest even or stochastically, bit for bit as rules/lowp.hpp's scalar f32_to_bf16 and
f32_to_bf16_sr (their NumPy forms below). Sizes cover whole 32-lane passes and partial vectors."""

import numpy as np
import pytest

from optkern import _cpu, lowp

pytest.importorskip("ml_dtypes")
SIZES = [5, 256, 300]  # (300: nine passes of 32 and a last vector of 12 lanes)
SEED, STEP = 21, 3


def rne_bits(x):
    u = x.view(np.uint32).astype(np.uint64)
    out = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF
    return np.where((u & 0x7FFFFFFF) > 0x7F800000, (u >> 16) | 0x40, out).astype(np.uint16)


def sr_bits(x, r16):
    """f32_to_bf16_sr(x, rnd) with r16 = rnd >> 16, the bits it adds."""
    u = x.view(np.uint32).astype(np.uint64)
    a = u & 0x7FFFFFFF
    out = (u + r16) >> 16
    out = np.where((out & 0x7FFF) == 0x7F80, out - 1, out)
    out = np.where(a >= 0x7F7F8000, rne_bits(x), out)
    return np.where(a > 0x7F800000, (u >> 16) | 0x40, out).astype(np.uint16)


def words(offset, n, key):
    """Philox words offset .. offset + n - 1 of (key, STEP) (optkern/philox.hpp's mapping)."""
    out = np.empty(n, dtype=np.uint64)
    for j, g in enumerate(range(offset, offset + n)):
        out[j] = _cpu.philox4x32_10([(g >> 2) & 0xFFFFFFFF, g >> 34, STEP, 0], [key & 0xFFFFFFFF, key >> 32])[g & 3]
    return out


def special_values(rng, n, pool):
    x = rng.standard_normal(n).astype(np.float32)
    pick = rng.random(n) < 0.5
    x[pick] = rng.choice(np.array(pool, dtype=np.float32), size=int(pick.sum()))
    return x


F32_MAX = np.finfo(np.float32).max
BF16_MAX = np.uint32(0x7F7F0000).view(np.float32)
GRADS = [np.nan, np.inf, -np.inf, F32_MAX, -F32_MAX, 3.3961e38, 1e-40, -1e-42, -0.0, 0.0, 1e30]
STATES = [np.nan, np.inf, -np.inf, BF16_MAX, -BF16_MAX, 1e-40, -0.0, 0.0, 3.3e38]


# beta1 = 0, weight decay 1: the new first moment is the grad plus the master, up to F32_MAX (bf16
# grads alone keep the moments at or below bf16's largest value)
@pytest.mark.parametrize(("beta1", "wd"), [(0.0, 1.0), (0.9, 0.0)])
@pytest.mark.parametrize("sr", [False, True])
def test_bf16_stores_at_special_values_are_the_scalar_roundings(beta1, wd, sr):
    rng = np.random.default_rng(37 + int(10 * beta1) + sr)
    masters = [special_values(rng, n, [np.nan, np.inf, -np.inf, F32_MAX, 1e-41, -0.0]) for n in SIZES]
    gs = [lowp.to_half(special_values(rng, n, GRADS), "bfloat16", raw=True) for n in SIZES]
    s16 = [[lowp.to_half(special_values(rng, n, STATES), "bfloat16", raw=True) for n in SIZES] for _ in range(2)]
    x, flags = [1e-2, beta1, 0.999, 1e-8, wd], [False, False]

    def run(states, fmt):
        ps = [np.zeros(n, dtype=np.uint16) for n in SIZES]
        ms = [m.copy() for m in masters]
        with np.errstate(all="ignore"):
            _cpu.lowp_step("adam", x, flags, ps, gs, ms, states, None, "bfloat16", fmt, sr, SEED, STEP, 256)
        return ps, ms, states

    ref_p, ref_m, ref_s = run([[lowp.from_half(s, "bfloat16") for s in sk] for sk in s16], "float32")
    got_p, got_m, got_s = run([[s.copy() for s in sk] for sk in s16], "bfloat16")
    base = 0
    for i, n in enumerate(SIZES):
        np.testing.assert_array_equal(got_m[i].view(np.uint32), ref_m[i].view(np.uint32))
        w = words(base, n, SEED + 1)
        np.testing.assert_array_equal(got_s[0][i], sr_bits(ref_s[0][i], w >> 16), err_msg=f"state 0, tensor {i}")
        np.testing.assert_array_equal(got_s[1][i], sr_bits(ref_s[1][i], w & 0xFFFF), err_msg=f"state 1, tensor {i}")
        want_p = sr_bits(ref_m[i], words(base, n, SEED) >> 16) if sr else rne_bits(ref_m[i])
        np.testing.assert_array_equal(got_p[i], want_p, err_msg=f"param, tensor {i}")
        base += n


def test_the_special_values_reach_every_branch():
    """Those values reach the stores' rare branches: NaN, and a finite value at or above 0x7f7f8000
    (it rounds to inf either way): the master F32_MAX as the grad (weight decay 1, grad 0)."""
    m = np.array([F32_MAX, 1.0], dtype=np.float32)
    g = lowp.to_half(np.array([0.0, np.nan], dtype=np.float32), "bfloat16", raw=True)
    states = [[np.zeros(2, np.float32)] for _ in range(2)]
    x = [1e-2, 0.0, 0.999, 1e-8, 1.0]
    ps = [np.zeros(2, np.uint16)]
    with np.errstate(all="ignore"):
        _cpu.lowp_step("adam", x, [False, False], ps, [g], [m], states, None, "bfloat16", "float32", False, 1, 1, 256)
    bits = states[0][0].view(np.uint32)
    assert 0x7F7F8000 <= bits[0] < 0x7F800000
    assert np.isnan(states[0][0][1])
