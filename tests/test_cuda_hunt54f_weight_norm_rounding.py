"""The CUDA twin of tests/test_hunt54f_weight_norm_rounding.py: ``‖v‖`` the square root of the block's
double sum of squares, taken in double and rounded once (cuda/norm_weight.cu): within an ulp of the
correctly rounded norm, off in few slices, and within an ulp of the CPU module's.

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
def test_norm_rounded_once_on_gpu(M):
    rng = np.random.default_rng(5400 + M)
    v = (rng.standard_normal((400, M)) * 10.0 ** rng.uniform(-3, 3, (400, 1))).astype(np.float32)
    g = np.ones(400, np.float32)
    _, sg = norm.weight_norm(cp.asarray(v), cp.asarray(g), 0)
    _, sc = norm.weight_norm(v, g, 0)
    got = cp.asnumpy(sg.norm)
    want = np.sqrt((v.astype(np.float64) ** 2).sum(axis=1)).astype(np.float32)

    assert bits_apart_f32(got, want).max() <= 1
    assert np.count_nonzero(bits_apart_f32(got, want)) < 0.04 * got.size  # (exact products in double on the GPU)
    assert bits_apart_f32(got, sc.norm).max() <= 1
