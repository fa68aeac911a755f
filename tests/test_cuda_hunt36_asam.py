"""CUDA twin of tests/test_hunt36_asam.py: float64 ASAM's ascent where the norm's terms w g fall
below the normal range takes w and g scaled apart (rules::sam_norm_term_scaled / _max, the split
step's w (w g 2^k): rules::sam_perturb_split), as the CPU's does; the step against the NumPy
reference on w 2^a, g 2^b (exact powers of two), and the CPU's step within the sums' orders."""

import numpy as np
import pytest

from gpu import require_gpu

cp, K = require_gpu()

from optkern import _backend  # noqa: E402
from test_hunt36_asam import EPS, RHO, _case, _ref_delta  # noqa: E402

CPU = _backend.cpu


@pytest.mark.parametrize(("wscale", "gscale"), [(1.5, 1e-318), (1e-160, 1e-160), (1e-200, 1e-200), (1e-300, 1e-20)])
@pytest.mark.parametrize("n", [1, 7, 70001])
def test_float64_asam_ascent_with_subnormal_terms(wscale, gscale, n):
    w, g = _case(wscale, gscale, n, n)
    p, b, out = cp.asarray(w), cp.empty(n), cp.zeros(1)
    K.sam_perturb_([p], [cp.asarray(g)], [b], RHO, 0.0, out, True)
    got = cp.asnumpy(p)
    delta = _ref_delta(w, g)
    assert np.all(np.abs(got - (w + delta)) <= 4 * EPS * np.abs(w) + 16 * EPS * np.abs(delta))
    pc = w.copy()
    CPU.sam_perturb_([pc], [g], [np.empty(n)], RHO, 0.0, np.zeros(1), True)
    assert np.all(np.abs(got - pc) <= 4 * EPS * np.abs(w) + 8 * EPS * np.abs(delta))
    np.testing.assert_array_equal(cp.asnumpy(b), w)


def test_in_range_terms_keep_their_bits_against_the_cpu():
    w, g = _case(1.0, 1.0, 4099, 9)
    p = cp.asarray(w)
    K.sam_perturb_([p], [cp.asarray(g)], [cp.empty(4099)], RHO, 1e-12, cp.zeros(1), True)
    pc = w.copy()
    CPU.sam_perturb_([pc], [g], [np.empty(4099)], RHO, 1e-12, np.zeros(1), True)
    np.testing.assert_allclose(cp.asnumpy(p), pc, rtol=0, atol=4 * EPS * RHO * np.max(np.abs(w)))
