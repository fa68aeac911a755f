"""optkern.init's trunc_normal_ / constant_ / ones_ / eye_ / dirac_ / sparse_ and optkern.clip's
get_total_norm / clip_grads_with_norm_ on CuPy arrays against the same calls on NumPy arrays
(a NumPy generator draws the same numbers for both). Skipped without CuPy or without a GPU."""

from __future__ import annotations

import math

import numpy as np
import pytest

import optkern.clip as okclip
import optkern.init as okinit
from gpu import require_gpu

cp, _cuda = require_gpu()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_init_fills_equal_numpy(dtype):
    for fill, shape, args in [
        (okinit.trunc_normal_, (33, 17), (0.1, 0.5, -0.3, 0.9)),
        (okinit.trunc_normal_, (33, 17), (0.0, 1.0, 1.5, 4.0)),  # mirrored into the lower tail
        (okinit.sparse_, (21, 9), (0.3,)),
    ]:
        host = np.empty(shape, dtype)
        dev = cp.asarray(host)
        fill(host, *args, rng=np.random.default_rng(4))
        fill(dev, *args, rng=np.random.default_rng(4))
        np.testing.assert_allclose(cp.asnumpy(dev), host, rtol=1e-6 if dtype == np.float32 else 1e-12)
        assert np.array_equal(cp.asnumpy(dev) == 0, host == 0)
    for fill, shape, args in [(okinit.eye_, (4, 6), ()), (okinit.dirac_, (6, 4, 3, 3), (2,)), (okinit.ones_, (5,), ())]:
        host, dev = np.empty(shape, dtype), cp.empty(shape, dtype)
        fill(host, *args)
        fill(dev, *args)
        assert np.array_equal(cp.asnumpy(dev), host)
    dev = cp.empty(7, dtype)
    okinit.constant_(dev, 0.25)
    assert np.all(cp.asnumpy(dev) == 0.25)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [1.0, 2.0, math.inf, 3.0])
def test_total_norm_then_clip_equals_numpy(dtype, p):
    rng = np.random.default_rng(int(p) % 7 if math.isfinite(p) else 5)
    host = [rng.standard_normal(n).astype(dtype) for n in (1, 7, 1023)]
    dev = [cp.asarray(g) for g in host]
    want = okclip.get_total_norm(host, p)
    got = okclip.get_total_norm(dev, p)
    assert isinstance(got, cp.ndarray) and got.shape == (1,) and got.dtype == np.float64
    np.testing.assert_allclose(float(got[0]), want, rtol=1e-12)
    okclip.clip_grads_with_norm_(host, 1.0, want)
    okclip.clip_grads_with_norm_(dev, 1.0, got)
    for d, h in zip(dev, host):
        np.testing.assert_allclose(cp.asnumpy(d), h, rtol=1e-6 if dtype == np.float32 else 1e-12, atol=0)
    with pytest.raises(TypeError, match="total_norm"):
        okclip.clip_grads_with_norm_(dev, 1.0, np.ones(1))  # a host array for device grads
