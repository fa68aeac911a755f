"""CUDA twin of tests/test_hunt38b_clip_half.py: float16 / bfloat16 gradients clipped on the GPU
(float32 copies, the float32 kernels, rounded back by lowp_to_half), the CPU's norm and bits."""

import math

import numpy as np
import pytest

from gpu import half_dtypes, require_gpu

cp, K = require_gpu()

import optkern  # noqa: E402
from test_hunt38b_clip_half import _grads  # noqa: E402

LOW = half_dtypes(cp)


@pytest.mark.parametrize("dt", LOW, ids=str)
@pytest.mark.parametrize("p", [2.0, math.inf, 3.0, 8.0])
def test_half_clip_on_gpu_equals_cpu(dt, p):
    host = _grads(dt, 30, scale=2.0, sizes=(300, 17))
    dev = [cp.asarray(g) for g in host]
    want = optkern.clip_grad_norm_(host, 1.0, norm_type=p)
    got = optkern.clip_grad_norm_(dev, 1.0, norm_type=p)
    assert float(got.get()[0]) == want
    for h, d in zip(host, dev):
        assert d.dtype == dt
        assert np.array_equal(cp.asnumpy(d).view(np.uint16), h.view(np.uint16))


@pytest.mark.parametrize("dt", LOW, ids=str)
def test_half_clip_value_on_gpu_equals_cpu(dt):
    host = _grads(dt, 31, scale=3.0, sizes=(300,))
    dev = [cp.asarray(g) for g in host]
    optkern.clip_grad_value_(host, 1.25)
    optkern.clip_grad_value_(dev, 1.25)
    assert np.array_equal(cp.asnumpy(dev[0]).view(np.uint16), host[0].view(np.uint16))
