"""The device's ``grad_sq_norm`` (the sum of squares a sharded p = 2 clip sends to the other ranks,
tests/test_hunt42i_clip_dist_sq.py): the sum the device's ``grad_norm`` roots at p = 2, the CPU's
where the float64 sum is exact, written to ``out`` on the device."""

import math

import numpy as np
import pytest

from gpu import require_gpu

cp, K = require_gpu()

from optkern import _cpu  # noqa: E402


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_device_grad_sq_norm_is_the_sum_its_grad_norm_roots(dt):
    rng = np.random.default_rng(42)
    xs = [cp.asarray(rng.standard_normal(n).astype(dt)) for n in (1, 1000, 33)]
    out, norm = cp.zeros(1), cp.zeros(1)
    assert K.grad_sq_norm(xs, out) is None
    K.grad_norm(xs, 2.0, norm)
    assert math.sqrt(float(out[0])) == float(norm[0])
    # (multiples of 1/8: the float64 sum exact in any order, so the CPU's bits)
    hs = [((np.arange(n) * 5 % 7 - 3) / 8).astype(dt) for n in (1, 1000, 33)]
    K.grad_sq_norm([cp.asarray(h) for h in hs], out)
    assert float(out[0]) == _cpu.grad_sq_norm(hs, np.zeros(1))
    with pytest.raises(TypeError, match="arrays"):
        K.grad_sq_norm([cp.zeros(3, np.int32)], out)
