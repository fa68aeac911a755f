"""The CUDA twin of tests/test_hunt54f_eval_rstd.py: eval-mode batch / instance norm on CuPy arrays
form ``rstd = 1 / sqrt(running_var + eps)`` as torch's CPU eval does (float32, eps rounded to
float32 first): the CPU's bits (IEEE sqrt and division are correctly rounded on both).

Skipped without CuPy or without a visible GPU.
"""

from __future__ import annotations

import numpy as np

from gpu import require_gpu
from optkern import norm

cp, _cuda = require_gpu()


def test_eval_rstd_matches_cpu_and_torch_rule():
    rng = np.random.default_rng(54)
    C = 515
    rv = (rng.random(C) * 10.0 ** rng.uniform(-6, 3, C)).astype(np.float32)
    rm = rng.standard_normal(C).astype(np.float32)
    x = rng.standard_normal((2, C, 3)).astype(np.float32)
    want = np.float32(1) / np.sqrt(rv + np.float32(1e-5))
    _, sg = norm.batch_norm(cp.asarray(x), None, None, cp.asarray(rm), cp.asarray(rv), training=False)
    _, si = norm.instance_norm(cp.asarray(x), None, None, cp.asarray(rm), cp.asarray(rv), use_input_stats=False)
    np.testing.assert_array_equal(cp.asnumpy(sg.rstd), want)
    np.testing.assert_array_equal(cp.asnumpy(si.rstd), want)
