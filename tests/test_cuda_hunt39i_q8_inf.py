"""The CUDA twin of test_hunt39i_q8_inf.py: a block whose only non-zero values are +-inf takes the
scale +-FLT_MAX (lowp::scale_of, shared) in the CUDA quantizer and the CUDA 8-bit step, bit for bit
as the CPU. Skipped without CuPy / the CUDA module / a device; tools/cuda_emu runs it on the CPU."""

import numpy as np

from gpu import require_gpu, same_bits
from optkern import optim
from q8_rule import quantize_rule

cp, _ = require_gpu()


def test_quantize_blockwise_keeps_a_lone_inf_as_the_cpu_does():
    x = np.zeros(64 * 4 + 5, np.float32)
    x[[0, 70, 130, 131, 199, 200, 258]] = [np.inf, -np.inf, np.inf, -np.inf, np.inf, 1.5, -np.inf]
    x[3] = np.nan
    codes, scales = quantize_rule(x, 64)
    cg, sg = quantize_rule(cp.asarray(x), 64)
    same_bits(cp.asnumpy(sg), scales, "scales")
    same_bits(cp.asnumpy(cg), codes, "codes")
    big = np.finfo(np.float32).max
    np.testing.assert_array_equal(scales, [big, -big, -big, 1.5, -big])


def test_8bit_adam_step_keeps_an_overflowed_second_moment_as_the_cpu_does():
    g = np.zeros(256, np.float32)
    g[5] = 1e22  # (v = inf alone in a block of zeros)
    out = []
    for xp in (np, cp):
        p = xp.zeros(256, np.float32)
        opt = optim.Adam([p], lr=0.01, state_dtype="int8", block_size=64)
        opt.step([xp.asarray(g)])
        opt.step([xp.zeros(256, np.float32)])
        st = opt.state_dict()["state"][0]
        out.append([p] + [st[k] for k in ("exp_avg", "exp_avg_scale", "exp_avg_sq", "exp_avg_sq_scale")])
    for a, b in zip(*out):
        same_bits(cp.asnumpy(b), np.asarray(a), "adam")
    assert np.abs(out[0][0]).max() < 1.0
