"""CUDA twin of tests/test_hunt37_asam.py: float64 ASAM's ascent with the scale in range but w^2 g
out of it (tiny or huge weights) takes the scaled step (rules::sam_perturb_adaptive_checked), as
the CPU's flagged entries do: against the NumPy reference on w 2^a, g 2^b, and the CPU's bits."""

import numpy as np
import pytest

from gpu import require_gpu

cp, K = require_gpu()

from optkern import _backend  # noqa: E402
from test_hunt36_asam import EPS, RHO, _case, _ref_delta  # noqa: E402
from test_hunt37_asam import CASES  # noqa: E402

CPU = _backend.cpu


@pytest.mark.parametrize(("wscale", "gscale", "eps"), CASES)
@pytest.mark.parametrize("n", [1, 70001])
def test_float64_asam_ascent_with_w2g_out_of_range(wscale, gscale, eps, n):
    w, g = _case(wscale, gscale, n, n + 3)
    p, b = cp.asarray(w), cp.empty(n)
    K.sam_perturb_([p], [cp.asarray(g)], [b], RHO, eps, cp.zeros(1), True)
    got = cp.asnumpy(p)
    delta = _ref_delta(w, g, eps)
    assert np.all(np.abs(got - (w + delta)) <= 4 * EPS * np.abs(w) + 16 * EPS * np.abs(delta))
    pc = w.copy()
    CPU.sam_perturb_([pc], [g], [np.empty(n)], RHO, eps, np.zeros(1), True)
    assert np.all(np.abs(got - pc) <= 4 * EPS * np.abs(w) + 8 * EPS * np.abs(delta))
    np.testing.assert_array_equal(cp.asnumpy(b), w)


def test_zero_gradient_beside_a_huge_weight_leaves_it():
    w = np.array([1e200, -3e199, 2.0])
    p = cp.asarray(w)
    K.sam_perturb_([p], [cp.asarray([0.0, 1e-250, 0.0])], [cp.empty(3)], RHO, 0.0, cp.zeros(1), True)
    got = cp.asnumpy(p)
    assert got[0] == w[0] and got[2] == w[2] and np.isfinite(got[1])


def test_mixed_magnitudes_match_the_cpu_bits():
    rng = np.random.default_rng(7)
    n = 5000
    w = rng.standard_normal(n) * 10.0 ** rng.uniform(-250, 0, n)
    g = rng.standard_normal(n)
    p = cp.asarray(w)
    K.sam_perturb_([p], [cp.asarray(g)], [cp.empty(n)], RHO, 0.0, cp.zeros(1), True)
    pc = w.copy()
    CPU.sam_perturb_([pc], [g], [np.empty(n)], RHO, 0.0, np.zeros(1), True)
    np.testing.assert_allclose(cp.asnumpy(p), pc, rtol=4 * EPS, atol=0)
