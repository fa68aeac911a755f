"""The CUDA kernels on this session's native changes, against the CPU module bit for bit (the rules
are shared): an 8-bit block holding +-inf (counted as 0 in the block's scale: it saturates, its
neighbours keep their values), eval-mode channel backward with a NaN or overflowing x-hat (dx needs
no x-hat), and dropout's float32 scale 1 / float(1 - p) (torch's). Skipped without CuPy / the CUDA
module / a device; tools/cuda_emu runs it on the CPU."""

import numpy as np
import pytest

from gpu import require_gpu, same_bits
from optkern import norm
from q8_rule import quantize_rule

cp, _ = require_gpu()

DTYPES = [np.float32, np.float64]


@pytest.mark.parametrize("block", [64, 256])
def test_q8_block_with_inf(block):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(3 * block + 5).astype(np.float32)
    x[[2, block + 1]] = [np.inf, -np.inf]
    x[2 * block + 3] = np.nan
    codes, scales = quantize_rule(x, block)
    cg, sg = quantize_rule(cp.asarray(x), block)
    same_bits(cp.asnumpy(sg), scales, "scales")
    same_bits(cp.asnumpy(cg), codes, "codes")
    assert np.isfinite(scales).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fn", ["batch_norm", "instance_norm"])
def test_eval_backward_with_nonfinite_xhat(dtype, fn):
    big = np.finfo(dtype).max / 2
    x = np.array([[[np.nan, big, 1.0], [-big, 0.5, np.inf]], [[2.0, -1.0, big], [0.25, np.nan, -3.0]]], dtype)
    w = np.array([1.5, -0.5], dtype)
    rm, rv = np.array([0.1, -0.2], dtype), np.array([0.01, 2.0], dtype)
    dy = np.linspace(-1, 1, x.size).reshape(x.shape).astype(dtype)

    def run(xp):
        a = [xp.asarray(v) for v in (x, w, rm, rv, dy)]
        if fn == "batch_norm":
            _, saved = norm.batch_norm(a[0], a[1], None, a[2], a[3], training=False)
            return norm.batch_norm_backward(a[4], a[0], a[1], saved)
        _, saved = norm.instance_norm(a[0], a[1], None, a[2], a[3], use_input_stats=False)
        return norm.instance_norm_backward(a[4], a[0], a[1], saved)

    want, got = run(np), run(cp)
    assert np.isfinite(want[0]).all()
    same_bits(cp.asnumpy(got[0]), want[0], "dx")
    for g, wv in zip(got[1:], want[1:]):  # (channel sums: the device adds in another order)
        np.testing.assert_allclose(cp.asnumpy(g), wv, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_dropout_float32_scale():
    x = np.ones(4096, np.float32)
    for p in np.linspace(0.01, 0.95, 47):
        y = norm.dropout(x, float(p), seed=5)
        yg = cp.asnumpy(norm.dropout(cp.asarray(x), float(p), seed=5))
        same_bits(yg, y, f"y at p={p}")
        assert y.max() == np.float32(1) / np.float32(1 - p)
