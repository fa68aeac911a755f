"""CUDA twins of test_hunt35_known's SAM and dropout cases (the rules are shared with the CPU):

* ``sam_perturb_`` (cuda/sam.cu) of a gradient whose ``rho / ||g||`` leaves the params' dtype
  (eps = 0): finite params, the CPU's bits (``rules::sam_scale_split``).
* ``dropout_`` (cuda/dropout.cu): the mask is the 32-bit word against ``round(p 2^32)``
  (``philox::dropout_threshold``), the CPU's mask and output, a 24-bit bucket split by the threshold.

Skipped without CuPy / the CUDA module / a device; tools/cuda_emu runs it on the CPU.
"""

import numpy as np
import pytest

from gpu import require_gpu, same_bits

cp, K = require_gpu()

from optkern import _backend, norm  # noqa: E402
from test_hunt35_known import RHO, _threshold, _tiny_case, _words  # noqa: E402


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("adaptive", [False, True])
def test_sam_ascent_of_an_underflowing_gradient_is_the_cpus(dtype, adaptive):
    w, g = _tiny_case(dtype)
    p, bk, out = w.copy(), np.empty_like(w), np.zeros(1)
    _backend.cpu.sam_perturb_([p], [g], [bk], RHO, 0.0, out, adaptive)
    pd, bd, od = cp.array(w), cp.empty(w.shape, w.dtype), cp.zeros(1)
    K.sam_perturb_([pd], [cp.array(g)], [bd], RHO, 0.0, od, adaptive)
    got = cp.asnumpy(pd)
    assert np.isfinite(got).all() and not np.array_equal(got, w)
    assert cp.asnumpy(bd).tobytes() == w.tobytes()
    if adaptive and dtype == np.float64:
        # ASAM's float64 terms w g keep all their digits now (rules::sam_norm_term_scaled: they were
        # rounded to a few bits below the normal range, whose sums were exact in any order): the
        # two sums' orders round apart, the norm and the step within that rounding of the CPU's
        assert float(cp.asnumpy(od)[0]) == pytest.approx(out[0], rel=1e-14, abs=0)
        d = p - w
        assert np.all(np.abs(got - p) <= 4 * np.finfo(dtype).eps * np.abs(w) + 1e-14 * np.abs(d))
        return
    same_bits(got, p, "params")
    assert float(cp.asnumpy(od)[0]) == out[0]


@pytest.mark.parametrize("p", [0.0, 0.3, 1 - 1e-9, 1.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_mask_is_the_word_against_round_p_2_32(dtype, p):
    seed, offset, n = 2**33 + 7, 3, 257
    x = np.linspace(-2.0, 2.0, n).astype(dtype)
    y, m = norm.dropout(cp.asarray(x), p, seed=seed, offset=offset, return_mask=True)
    want = _words(n, seed, offset) >= _threshold(p)
    np.testing.assert_array_equal(cp.asnumpy(m).astype(bool), want)
    yc = norm.dropout(x, p, seed=seed, offset=offset)
    same_bits(cp.asnumpy(y), yc, "y")


def test_dropout_mask_splits_a_24_bit_bucket():
    seed, offset, n = 12345, 0, 4096
    w = _words(n, seed, offset)
    i = int(np.flatnonzero((w >= 2**31) & ((w & 0xFF) >= 0x90))[0])
    p = float(int(w[i]) - 8) * 2.0**-32
    _, m = norm.dropout(cp.ones(n, cp.float32), p, seed=seed, offset=offset, return_mask=True)
    m = cp.asnumpy(m).astype(bool)
    assert m[i]
    np.testing.assert_array_equal(m, w >= _threshold(p))
