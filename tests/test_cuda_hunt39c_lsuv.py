"""CUDA twin of tests/test_hunt39c_lsuv.py: LSUV on CuPy half weights rescales them as on the host
(the start weights times the product of the factors in float64, rounded once)."""

import numpy as np
import pytest

from gpu import require_gpu
from optkern import init

cp, _ = require_gpu()


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_device_weights_equal_the_host_ones(dtype):
    rng = np.random.default_rng(3902)
    w0 = (rng.standard_normal((5, 9)) * 2.0).astype(dtype)
    x = rng.standard_normal((40, 9))
    got = {}
    for xp in (np, cp):
        w = xp.asarray(w0.copy())

        def forward(inp, w=w, xp=xp):
            h = xp.asarray(inp) @ w.astype(xp.float64).T
            return [h + 0.3 * h**2]

        init.lsuv_([w], forward, x, tol=1e-6, max_iter=4, orthogonal_start=False)
        got[xp] = cp.asnumpy(w) if xp is cp else w
    np.testing.assert_array_equal(got[cp], got[np])
    assert not np.array_equal(got[np], w0)
