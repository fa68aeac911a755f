"""CUDA twin of tests/test_hunt38b_asam32.py: float32 ASAM with w^2 or w^2 g out of float32's range
steps in double on the device (rules::sam_perturb_adaptive_checked), as the CPU's flagged entries
do: against the float64 reference, and the CPU's bits."""

import numpy as np
import pytest

from gpu import require_gpu

cp, K = require_gpu()

from optkern import _backend  # noqa: E402
from test_hunt36_asam import RHO, _case  # noqa: E402
from test_hunt38b_asam32 import CASES, check32  # noqa: E402

CPU = _backend.cpu


@pytest.mark.parametrize(("wscale", "gscale"), CASES)
@pytest.mark.parametrize("n", [1, 70001])
def test_float32_asam_ascent_on_the_gpu(wscale, gscale, n):
    w, g = (x.astype(np.float32) for x in _case(wscale, gscale, n, n + 11))
    p, b = cp.asarray(w), cp.empty(n, cp.float32)
    K.sam_perturb_([p], [cp.asarray(g)], [b], RHO, 0.0, cp.zeros(1), True)
    got = cp.asnumpy(p)
    check32(w, g, got)
    pc = w.copy()
    CPU.sam_perturb_([pc], [g], [np.empty_like(w)], RHO, 0.0, np.zeros(1), True)
    np.testing.assert_array_equal(got, pc)
    np.testing.assert_array_equal(cp.asnumpy(b), w)
