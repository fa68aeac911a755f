"""optkern.clip_grad_norm_ / clip_grad_value_ on CuPy arrays against the same calls on NumPy arrays:
the native p-norms (p <= 6), the scaled form of large finite p (computed with CuPy array operations,
no host synchronization), the returned device scalar and ``out``.

Skipped without CuPy or without a visible GPU.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from gpu import require_gpu
from optkern import clip_grad_norm_, clip_grad_value_

cp, _cuda = require_gpu()
SIZES = [0, 1, 7, 1023, 5001]


def _grads(dtype, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(n) * scale).astype(dtype) for n in SIZES]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, math.inf, 10.0, 2000.0])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_equals_numpy(dtype, p, max_norm):
    host = _grads(dtype, seed=7 if math.isinf(p) else int(p) % 97)
    dev = [cp.asarray(g) for g in host]
    want = clip_grad_norm_(host, max_norm, p)
    got = clip_grad_norm_(dev, max_norm, p)
    assert isinstance(got, cp.ndarray) and got.shape == (1,) and got.dtype == np.float64  # stays on the device
    np.testing.assert_allclose(float(got[0]), want, rtol=1e-12)
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    for i, (d, h) in enumerate(zip(dev, host)):
        np.testing.assert_allclose(cp.asnumpy(d), h, rtol=rtol, atol=0, err_msg=f"grads[{i}]")


@pytest.mark.parametrize("p", [2.0, 2000.0])
def test_clip_grad_norm_into_out(p):
    host = _grads(np.float32, seed=5, scale=4.0)
    dev = [cp.asarray(g) for g in host]
    out = cp.full(1, -1.0)
    assert clip_grad_norm_(dev, 1.0, p, out=out) is out
    np.testing.assert_allclose(float(out[0]), clip_grad_norm_(host, 1.0, p), rtol=1e-12)


def test_large_p_does_not_overflow_on_the_device():
    """sum |g|^2000 is inf in float64: the scaled form keeps the norm near max |g| (here 3)."""
    g = cp.asarray(np.array([0.5, 0.5, 3.0], np.float32))
    total = float(clip_grad_norm_([g], 100.0, 2000.0)[0])
    assert 3.0 <= total < 3.01
    np.testing.assert_array_equal(cp.asnumpy(g), [0.5, 0.5, 3.0])  # below max_norm: unchanged


@pytest.mark.parametrize("p", [2.0, 2000.0])
def test_nonfinite_norm_on_the_device(p):
    g = [cp.asarray(np.array([1.0, np.nan], np.float32))]
    assert math.isnan(float(clip_grad_norm_(g, 1.0, p)[0]))
    with pytest.raises(ValueError, match=r"grads\[0\]"):
        clip_grad_norm_([cp.asarray(np.array([1.0, np.inf], np.float32))], 1.0, p, error_if_nonfinite=True)


def test_clip_grad_value_equals_numpy():
    host = _grads(np.float32, seed=9, scale=2.0)
    dev = [cp.asarray(g) for g in host]
    clip_grad_value_(host, 0.7)
    clip_grad_value_(dev, 0.7)
    for d, h in zip(dev, host):
        np.testing.assert_array_equal(cp.asnumpy(d), h)
