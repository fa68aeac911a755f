"""The 8-bit-state step's blocks (cpp/lowp_loop.hpp's stages) against the definition -- dequantize,
the fp32 rule, quantize with the scalar map -- for one, two and three states, block after block of
the cases a block's encode takes differently: a zero block (scale 0: the portable encoder),
subnormal states (a scale whose reciprocal is not normal: the portable encoder), NaN, inf, huge and
widely spread values (the fast encoder's flagged elements), and a partial last block."""

import numpy as np
import pytest

from optkern import lowp
from test_lowp_q8 import boundary_values, reference, step

RULES = {  # name, scalars, flags(t), states
    "sgd momentum": ("sgd", [0.01, 0.9, 0.0, 0.0], lambda t: [False, False, t == 1, False], 1),
    "adam": ("adam", [1e-2, 0.9, 0.999, 1e-8, 0.01], lambda t: [False, True], 2),
    "amsgrad": ("adam", [1e-2, 0.9, 0.999, 1e-8, 0.0], lambda t: [False, False], 3),
}


def block_grads(rng, block, n):
    """One kind of grad per block (a block's states then follow it), then a partial block."""
    kinds = [
        lambda m: np.zeros(m, np.float32),
        lambda m: rng.standard_normal(m).astype(np.float32) * np.float32(1e-39),  # subnormal states
        lambda m: np.where(rng.random(m) < 0.05, np.float32(np.nan), rng.standard_normal(m)).astype(np.float32),
        lambda m: np.where(rng.random(m) < 0.05, np.float32(np.inf), rng.standard_normal(m)).astype(np.float32),
        lambda m: rng.standard_normal(m).astype(np.float32) * np.float32(1e30),
        lambda m: (rng.standard_normal(m) * 10.0 ** rng.integers(-6, 4, m)).astype(np.float32),
        # at and around the map's code boundaries (SGD's first step: the buffer is the grad itself)
        lambda m: np.concatenate([[np.float32(1.0)], rng.choice(boundary_values(True), m - 1)]).astype(np.float32),
    ]
    parts = [kinds[j % len(kinds)](block) for j in range(n // block)]
    return np.concatenate(parts + [rng.standard_normal(n % block).astype(np.float32)])


@pytest.mark.parametrize("block", [64, 256])
@pytest.mark.parametrize("pf", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("rule", list(RULES))
def test_blocks_of_every_encoder_case_are_dequantize_fp32_step_quantize(block, pf, rule):
    name, x, flags, k = RULES[rule]
    rng = np.random.default_rng(3700 + block + len(pf) + k)
    n = 15 * block + 29
    p32 = rng.standard_normal(n).astype(np.float32)
    half = pf != "float32"
    ps = [lowp.to_half(p32, pf, raw=True) if half else p32.copy()]
    masters = [p32.copy()] if half else None
    codes = [[np.zeros(n, np.uint8)] for _ in range(k)]
    scales = [[np.zeros(lowp.n_blocks(n, block), np.float32)] for _ in range(k)]
    for t in range(1, 4):
        g = block_grads(rng, block, n)
        gs = [lowp.to_half(g, pf, raw=True) if half else g]
        rp = [p.copy() for p in ps]
        rm = [m.copy() for m in masters] if half else None
        rs = [[lowp.dequantize_blockwise(c[0], s[0], block)] for c, s in zip(codes, scales)]
        with np.errstate(all="ignore"):
            step(name, x, flags(t), rp, gs, rm, rs, None, pf, "float32", t, block)
            step(name, x, flags(t), ps, gs, masters, codes, scales, pf, "int8", t, block)
        np.testing.assert_array_equal(ps[0], rp[0])
        if half:
            np.testing.assert_array_equal(masters[0].view(np.uint32), rm[0].view(np.uint32))
        for j in range(k):
            want_c, want_s = reference(rs[j][0], block)
            np.testing.assert_array_equal(scales[j][0], want_s, err_msg=f"step {t}, state {j}")
            np.testing.assert_array_equal(codes[j][0], want_c, err_msg=f"step {t}, state {j}")
