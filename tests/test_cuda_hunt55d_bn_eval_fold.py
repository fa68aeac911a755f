"""The CUDA twin of tests/test_hunt55d_bn_eval_fold.py: eval-mode batch norm on CuPy arrays folds as
the CPU (rules::eval_fold where rules::eval_fold_used, the plain form elsewhere): the CPU's bits,
near and far channels, (N, C) and (N, C, S), float32 and float64.

Skipped without CuPy or without a visible GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

from gpu import require_gpu
from optkern import norm
from test_hunt55d_bn_eval_fold import _inputs

cp, _cuda = require_gpu()


@pytest.mark.parametrize("shape", [(37, 13), (3, 41, 7)], ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gpu_eval_batch_norm_is_the_cpu_s_bits(shape, dtype):
    rng = np.random.default_rng(5550)
    x, w, b, rm, rv = _inputs(rng, shape, dtype, True, far=0.3)
    y, _ = norm.batch_norm(x, w, b, rm, rv, training=False, eps=1e-5)
    g = [cp.asarray(a) for a in (x, w, b, rm, rv)]
    yg, _ = norm.batch_norm(*g, training=False, eps=1e-5)
    np.testing.assert_array_equal(cp.asnumpy(yg), y)
