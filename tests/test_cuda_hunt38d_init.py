"""CUDA twin of test_hunt38d_init: a float16 CuPy array's normal and uniform fills are computed in
float32 and rounded once, as the NumPy ones (they were computed in float16, a subnormal std's or
bound's step)."""

from __future__ import annotations

import numpy as np
import pytest

import optkern.init as okinit
from gpu import require_gpu

cp, _cuda = require_gpu()


@pytest.mark.parametrize(("mean", "std"), [(0.0, 1e-6), (0.0, 1e-7), (1.5, 0.3)])
def test_float16_normal_on_device_equals_host(mean, std):
    host = okinit.normal_(np.empty((37, 29), np.float16), mean=mean, std=std, rng=np.random.default_rng(2))
    dev = okinit.normal_(cp.empty((37, 29), cp.float16), mean=mean, std=std, rng=np.random.default_rng(2))
    np.testing.assert_array_equal(cp.asnumpy(dev), host)
    z = np.random.default_rng(2).standard_normal((37, 29), dtype=np.float32)
    np.testing.assert_array_equal(host, (np.float32(mean) + np.float32(std) * z).astype(np.float16))


def test_float16_kaiming_normal_on_device_is_its_float32_fill_rounded():
    dev16 = okinit.kaiming_normal_(cp.empty((64, 48), cp.float16), rng=np.random.default_rng(9))
    dev32 = okinit.kaiming_normal_(cp.empty((64, 48), cp.float32), rng=np.random.default_rng(9))
    np.testing.assert_array_equal(cp.asnumpy(dev16), cp.asnumpy(dev32).astype(np.float16))


@pytest.mark.parametrize(("a", "b"), [(-1e-6, 1e-6), (0.0, 1.0), (59584.08, 65504.0)])
def test_float16_uniform_on_device_equals_host(a, b):
    host = okinit.uniform_(np.empty((37, 29), np.float16), a, b, rng=np.random.default_rng(6))
    dev = okinit.uniform_(cp.empty((37, 29), cp.float16), a, b, rng=np.random.default_rng(6))
    np.testing.assert_array_equal(cp.asnumpy(dev), host)
    assert np.isfinite(host).all() and host.max() < b
