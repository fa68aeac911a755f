"""The CUDA module's fused CG iteration (cuda/cg.cu ``cg_iteration_``) against its own three passes
(cg_curvature, cg_update_, cg_direction_) in turn: the same sums and the same vector bits, the same
steps skipped, the same refusals as the CPU module's (tests/test_hunt34_cg_fused.py)."""

import math

import numpy as np
import pytest

from gpu import require_gpu
from test_hunt34_cg_fused import _three_passes

cp, K = require_gpu()


def _three(*args):
    """The CPU tests' reference loop over this module's three passes."""
    return _three_passes(*args, K=K)


def _vectors(n, dtype, case, seed=0):
    rng = np.random.default_rng(seed)
    x, r, p, y = (rng.standard_normal(n).astype(dtype) for _ in range(4))
    if case == "positive":
        y = (1.3 * p + 0.1 * y).astype(dtype)
    elif case == "negative":
        y = (-1.5 * np.abs(p)).astype(dtype)
    elif case == "nan" and n:
        y[n // 2] = np.nan
    return x, r, p, y


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 1023, 3 * 32768 + 5])
@pytest.mark.parametrize("case", ["positive", "negative", "nan"])
@pytest.mark.parametrize("tol", [0.0, 1e300])
def test_fused_iteration_is_the_three_passes(dtype, n, case, tol):
    host = _vectors(n, dtype, case)
    for stop in (True, False):
        ref = [cp.array(v) for v in host]
        got = [cp.array(v) for v in host]
        want = _three(*ref, 2.5, 0.37, tol, stop)
        have = K.cg_iteration_(*got, 2.5, 0.37, tol, stop)
        assert repr(want) == repr(tuple(have))
        for a, b in zip(ref, got):
            assert cp.asnumpy(a).tobytes() == cp.asnumpy(b).tobytes()


def test_fused_iteration_refuses_what_the_cpu_refuses():
    v = [cp.ones(8, np.float32) for _ in range(4)]
    keep = [cp.asnumpy(a) for a in v]
    with pytest.raises(TypeError, match="r"):
        K.cg_iteration_(v[0], cp.ones(8), v[2], v[3], 1.0, 0.0, 0.0, True)
    with pytest.raises(ValueError, match="p"):
        K.cg_iteration_(v[0], v[1], v[2], v[2], 1.0, 0.0, 0.0, True)  # y is p: p is written
    with pytest.raises(ValueError, match="rz"):
        K.cg_iteration_(*v, math.inf, 0.0, 0.0, True)
    with pytest.raises(ValueError, match="tol"):
        K.cg_iteration_(*v, 1.0, 0.0, math.nan, True)
    for a, b in zip(v, keep):
        assert cp.asnumpy(a).tobytes() == b.tobytes()
