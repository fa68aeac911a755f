"""float64 ASAM's ascent step where the scale rho / (||w g|| + eps) is in range (no split: k = 0)
but w^2 g is not: w^2 below the normal range (|w| < 2^-511: a few bits, or 0), w^2 g below it
(|w| 1e-150 beside g 1e-30) or past it (w 1e100, g 1e150: inf, the param inf; w 1e200: w^2 inf,
and 0 g NaN). The step, rounded as (w^2 g) scale then the add (rules::sam_perturb_adaptive), lost
the step's digits (up to the whole step) there. Reference: NumPy on w 2^a and g 2^b (exact powers of
two: test_hunt36_asam._ref_delta), rho w (w g) / ||w g||, scaled back."""

import numpy as np
import pytest

from optkern import _backend, optim
from test_hunt36_asam import RHO, _case, _check, _step

CPU = _backend.cpu


# (w scale, g scale, eps): w^2 subnormal beside g in range; |w| just below 2^-511; w^2 g underflowing
# past g large; w^2 normal but w^2 g subnormal; w^2 g overflowing; w^2 overflowing beside a small g;
# w subnormal itself; an eps that leaves the step relevant.
CASES = [
    (1e-160, 1.0, 0.0),
    (2.0**-520, 3.0, 0.0),
    (1e-200, 1e100, 0.0),
    (1e-150, 1e-30, 0.0),
    (1e100, 1e150, 0.0),
    (1e200, 1e-250, 0.0),
    (1e-310, 1e10, 0.0),
    (1e-160, 1.0, 1e-170),
    (1e-160, 1e30, 1e-140),
]


@pytest.mark.parametrize(("wscale", "gscale", "eps"), CASES)
@pytest.mark.parametrize("n", [1, 7, 1000, 70001])
def test_float64_asam_ascent_with_w2g_out_of_range(wscale, gscale, eps, n):
    w, g = _case(wscale, gscale, n, n + 3)
    _check(w, g, _step(w, g, eps), eps)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mixed_magnitudes_in_one_array(seed):
    """w from 1e-250 to 1: the small entries take the scaled step, the others keep the reference's
    rounding (bit for bit: the step as (w^2 g) scale then the add, scale from the kernel's norm)."""
    rng = np.random.default_rng(seed)
    n = 5000
    w = rng.standard_normal(n) * 10.0 ** rng.uniform(-250, 0, n)
    g = rng.standard_normal(n)
    p, out = w.copy(), np.zeros(1)
    CPU.sam_perturb_([p], [g], [np.empty(n)], RHO, 0.0, out, True)
    _check(w, g, p)
    s = RHO / out[0]
    big = np.abs(w) >= 2.0**-400
    assert big.sum() > n // 3
    np.testing.assert_array_equal(p[big], w[big] + ((w[big] * w[big]) * g[big]) * s)


def test_zero_gradient_beside_a_huge_weight_leaves_it():
    """w 1e200 has w^2 = inf: with g = 0 the step (w^2 g) scale was inf 0 = NaN, the param NaN."""
    w = np.array([1e200, -3e199, 2.0])
    g = np.array([0.0, 1e-250, 0.0])
    p = _step(w, g)
    assert p[0] == w[0] and p[2] == w[2]
    assert np.isfinite(p[1]) and p[1] != w[1]


def test_nonfinite_entries_still_propagate():
    w = np.array([1e-160, np.inf, 1e-160, 1.0])
    g = np.array([np.nan, 1.0, 1.0, 1.0])
    p, out = w.copy(), np.zeros(1)
    CPU.sam_perturb_([p], [g], [np.empty(4)], RHO, 0.0, out, True)
    np.testing.assert_array_equal(p, w)  # a NaN / Inf norm: no ascent direction (rules::sam_scale)


def test_asam_optimizer_float64_small_weights():
    w0, g = _case(1e-160, 1.0, 257, 4)
    w = [w0.copy()]
    opt = optim.SAM(optim.SGD(w, lr=0.1), rho=RHO, eps=0.0, adaptive=True)
    opt.first_step([g])
    _check(w0, g, w[0])
    opt.second_step([g])
    np.testing.assert_array_equal(w[0], w0 - 0.1 * g)
