"""The fused 8-bit Adam block (cpp/lowp_q8_fused.hpp): on an AVX512_VBMI CPU each whole 8-bit block
of a multiple of 64 values is decoded, updated by Adam's element function and its new absmax taken
in one loop body; a tensor's last, shorter block and other CPUs take the separate passes. Both must
give what the fp32 optimizer gives: the master bit for bit as functional.adam_ computes it from the
decoded old states, and the new codes and scales as quantize_blockwise makes them from its new
fp32 states. Checked for every block size the step takes, tensors ending in a partial block,
first moments whose blocks are all >= 0 or all <= 0 (the unsigned map for m), all-zero blocks
(scale 0), inf / NaN states (the exact scale's pass), AMSGrad's third state, the UnitBc2 form, in
process and with OPTKERN_NO_AVX512_VBMI=1 (no fused block)."""

import math

import numpy as np
import pytest

from child_pytest import run_pytest
from optkern import _cpu, functional, lowp
from q8_rule import quantize_rule

pytest.importorskip("ml_dtypes")
LR, B1, EPS = 1e-2, 0.9, 1e-8


def unit_step(beta2):
    """The first step whose float32 bc2_sqrt is 1 (the UnitBc2 form from there on)."""
    t = 1
    while np.float32(math.sqrt(1.0 - beta2**t)) != 1.0:
        t += 1
    return t


def bits(x):
    return np.ascontiguousarray(x).view(np.uint32)


def old_states(rng, sizes, block, K, m_sign, special):
    """Random old states for K moments, quantized: m signed (or >= 0 / <= 0 by m_sign), the others
    >= 0; `special`: each tensor's first block all zero."""
    states = []
    for k in range(K):
        vals = [rng.standard_normal(n).astype(np.float32) * np.float32(1e-3) for n in sizes]
        if k > 0 or m_sign:
            vals = [np.abs(v) * np.float32(1e-2 if k else m_sign) for v in vals]
        if special:
            for v in vals:
                v[:block] = 0.0  # (a whole block of zeros: scale 0)
        states.append([quantize_rule(v, block) for v in vals])
    return states


def run_case(seed, sizes, block, t, beta2=0.999, amsgrad=False, m_sign=0.0, special=False):
    rng = np.random.default_rng(seed)
    K = 3 if amsgrad else 2
    ps = [lowp.to_half(rng.standard_normal(n).astype(np.float32), "bfloat16", raw=True) for n in sizes]
    masters = [lowp.from_half(p, "bfloat16") for p in ps]
    g32 = [rng.standard_normal(n).astype(np.float32) * np.float32(1e-2) for n in sizes]
    if special:  # zero grads on the zero blocks; v = inf (g^2 overflows) and a NaN in the next block
        for g in g32:
            g[:block] = 0.0
            g[block + 1 : block + 3] = np.float32(3e38)
            g[block + 5] = np.nan
    gs = [lowp.to_half(g, "bfloat16", raw=True) for g in g32]
    states = old_states(rng, sizes, block, K, m_sign, special)
    old_scales = [[s.copy() for _, s in st] for st in states]
    codes = [[c.copy() for c, _ in st] for st in states]
    scales = [[s.copy() for _, s in st] for st in states]
    new = [[lowp.dequantize_blockwise(c, s, block) for c, s in st] for st in states]
    ref = [m.copy() for m in masters]
    kw = dict(step=t, lr=LR, beta1=B1, beta2=beta2, eps=EPS, weight_decay=0.0)
    grads = [lowp.from_half(g, "bfloat16") for g in gs]
    functional.adam_(ref, grads, new[0], new[1], new[2] if amsgrad else None, **kw)  # new: in place
    x = [LR, B1, beta2, EPS, 0.0]
    flags = [False, False, False]  # (AMSGrad: by the third state)
    _cpu.lowp_step("adam", x, flags, ps, gs, masters, codes, scales, "bfloat16", "int8", False, 0, t, block)
    for i in range(len(sizes)):
        np.testing.assert_array_equal(np.isnan(masters[i]), np.isnan(ref[i]))
        ok = ~np.isnan(ref[i])
        np.testing.assert_array_equal(bits(masters[i])[ok], bits(ref[i])[ok])  # (-0 vs +0 too)
        for k in range(K):
            c, s = quantize_rule(new[k][i], block)
            np.testing.assert_array_equal(bits(scales[k][i]), bits(s), err_msg=f"scale of state {k}, tensor {i}")
            np.testing.assert_array_equal(codes[k][i], c, err_msg=f"codes of state {k}, tensor {i}")
    return masters, scales, old_scales


@pytest.mark.parametrize("block", [64, 128, 256, 1024, 4096])
@pytest.mark.parametrize("unit", [False, True])
def test_every_block_size_and_partial_last_blocks(block, unit):
    sizes = [1, 7, 63, 64, 65, block, block + 1, 3 * block + 64, 3 * block + 37, 10_001]
    t = unit_step(0.999) + 3 if unit else 5
    run_case(5200 + block + unit, sizes, block, t)


@pytest.mark.parametrize("m_sign", [1.0, -1.0])
def test_first_moments_of_one_sign(m_sign):
    """All old m >= 0 (the unsigned map; the new m may turn signed) or all <= 0."""
    _, _, old = run_case(5210, [4096, 1023], 256, 7, m_sign=m_sign)
    want = np.float32(1) if m_sign > 0 else np.float32(-1)  # (the unsigned map: a positive scale)
    assert all((np.sign(s) == want).all() for s in old[0])


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("t", [1, 40])  # beta2 0.5: the plain form at 1, UnitBc2 at 40
def test_zero_blocks_inf_nan_and_amsgrad(amsgrad, t):
    masters, scales, _ = run_case(5220 + t, [2048, 777], 256, t, beta2=0.5, amsgrad=amsgrad, special=True)
    assert np.isnan(masters[0]).any() and np.isfinite(masters[0]).any()
    assert (scales[0][0] == 0).any() or (scales[0][1] == 0).any()  # a block stayed all zero


def test_without_the_fused_block():
    """The same tests with OPTKERN_NO_AVX512_VBMI=1: decode, rule loop, absmax as separate passes."""
    from optkern import _backend

    if _backend.cpu.build_info()["lowp_loops"] != "avx512-vbmi":
        pytest.skip("this CPU has no AVX512_VBMI: the tests above ran the separate passes")
    r = run_pytest([__file__], {"OPTKERN_NO_AVX512_VBMI": "1"}, "not without_the_fused_block")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert " passed" in r.stdout
