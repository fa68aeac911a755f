"""CUDA twin of tests/test_hunt38b_amp_floor.py: the device's scale update (rules::update_scale)
stops backing off at the smallest scale whose unscale factor is finite, as the CPU's does."""

import numpy as np

from gpu import require_gpu

cp, K = require_gpu()

from optkern import _cpu  # noqa: E402
from test_hunt36_amp import SMALLEST  # noqa: E402


def test_backoff_floor_on_the_device_equals_the_cpu():
    for backoff in (0.5, 0.9, 1e-3):
        h = (np.full(1, 2.0**16, np.float32), np.zeros(1, np.int64))
        d = (cp.asarray(h[0]), cp.asarray(h[1]))
        for _ in range(200 if backoff != 0.9 else 2000):
            _cpu.amp_update_scale_(h[0], h[1], np.ones(1, np.float32), 2.0, backoff, 3)
            K.amp_update_scale_(d[0], d[1], cp.ones(1, cp.float32), 2.0, backoff, 3)
        assert cp.asnumpy(d[0])[0] == h[0][0] == SMALLEST
