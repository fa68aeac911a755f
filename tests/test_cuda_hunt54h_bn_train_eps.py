"""The CUDA twin of tests/test_hunt54h_bn_train_eps.py: train-mode batch norm on CuPy arrays adds the
caller's eps in double (it was rounded to float32 first): the CPU's (and torch's CPU) rstd bits.

Skipped without CuPy or without a visible GPU.
"""

from __future__ import annotations

import numpy as np

from gpu import require_gpu
from optkern import norm

cp, _cuda = require_gpu()


def test_train_rstd_eps_in_double_matches_cpu():
    eps_all = [float(e) for e in 10.0 ** np.random.default_rng(325).uniform(-8, 0, 64)]
    differ = [e for e in eps_all if np.float32(1 / np.sqrt(e)) != np.float32(1 / np.sqrt(float(np.float32(e))))]
    assert len(differ) >= 4
    # constant channels (rstd 1/sqrt(eps)): other channels' moments are summed in another order on the
    # GPU than on the CPU (within an ulp, not the same bits)
    x = np.broadcast_to(np.float32([0.5, -3.0, 7.25, 0.0, 1e-3])[None, :, None], (3, 5, 7)).copy()
    for eps in differ:
        _, sc = norm.batch_norm(x, training=True, eps=eps)
        _, sg = norm.batch_norm(cp.asarray(x), training=True, eps=eps)
        np.testing.assert_array_equal(cp.asnumpy(sg.rstd), sc.rstd, err_msg=f"eps={eps!r}")
        assert (sc.rstd == np.float32(1 / np.sqrt(eps))).all()
