"""The CUDA twin of tests/test_hunt54f_rms_rounding.py: RMS norm's ``inv_rms`` formed in double from
the block's double sum of squares and rounded once (cuda/norm_rows.cu, as cpp/norm_rows.cpp): within
an ulp of the correctly rounded value, off in few rows (the float32 formula: a third of them, up to 2
ulps), and within an ulp of the CPU module's.

Skipped without CuPy or without a visible GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

from gpu import require_gpu
from optkern import norm
from ulps import bits_apart_f32

cp, _cuda = require_gpu()


@pytest.mark.parametrize("M", [7, 33, 1023])
def test_inv_rms_rounded_once_on_gpu(M):
    rng = np.random.default_rng(54 + M)
    x = (rng.standard_normal((400, M)) * 10.0 ** rng.uniform(-3, 3, (400, 1))).astype(np.float32)
    _, sg = norm.rms_norm(cp.asarray(x), M)
    _, sc = norm.rms_norm(x, M)
    got = cp.asnumpy(sg.inv_rms)
    xd = x.astype(np.float64)
    e = float(np.finfo(np.float32).eps)
    want = (1.0 / np.sqrt((xd * xd).sum(axis=1) / M + e)).astype(np.float32)
    d = bits_apart_f32(got, want)
    assert d.max() <= 1
    assert np.count_nonzero(d) < 0.12 * d.size
    assert bits_apart_f32(got, sc.inv_rms).max() <= 1
