"""The CUDA module's cg curvature near float64's max (cuda/cg.cu; the CPU twin:
tests/test_hunt46j_cg_leftovers.py): an indefinite A's p.Ap summed again scaled where the plain sum
left the range, as the CPU module sums it (rules::cg_curvature_term)."""

import numpy as np
import pytest

from gpu import require_gpu

cp, K = require_gpu()
BIG = 1.7e308


@pytest.mark.parametrize("n", [3, 1023, 3 * 32768 + 5])
def test_curvature_near_the_max_is_in_range(n):
    p = np.ones(n)
    y = np.full(n, BIG)
    y[1::2] = -BIG  # the plain sum's partials overflow; p.Ap = 1.7e308 (n odd)
    assert K.cg_curvature(cp.array(p), cp.array(y), 0.0) == pytest.approx(BIG, rel=1e-12)
    x, r, pd = cp.zeros(n), cp.ones(n), cp.array(p)
    pAp, rr = K.cg_iteration_(x, r, pd, cp.array(y), float(n), 0.0, 0.0, False)
    assert pAp == pytest.approx(BIG, rel=1e-12) and np.isfinite(rr)
    np.testing.assert_allclose(cp.asnumpy(x), n / pAp)


def test_a_curvature_past_the_max_is_still_inf():
    assert K.cg_curvature(cp.ones(4), cp.full(4, BIG), 0.0) == np.inf
