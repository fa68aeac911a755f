"""AdaGrad-Norm with float64 gradients at subnormal scale (the limit adagrad_norm_'s docstring
states). b^2 is a float64 state: squares below float64's range add 0, which costs at most
n 2^-1075 -- against a normal b^2 within the sum's own rounding bound n 2^-53 -- and only a b^2
that is itself below the normal range loses digits (or, below 2^-1074, is 0: the step skipped).
The references take the sum of squares scaled by 2^1200 (exact), so they do not underflow."""

from __future__ import annotations

import math

import numpy as np
import pytest

from optkern.functional import adagrad_norm_
from optkern.optim import AdagradNorm

UP = 1200  # (2^600 per element: (1e-170 2^600)^2 is a normal float64)


def _exact_sq(g: np.ndarray) -> float:
    """||g||^2 2^UP, summed exactly (fsum of exact products of scaled values)."""
    return math.fsum(float(x) ** 2 for x in np.ldexp(g, UP // 2))


@pytest.mark.parametrize("g", [1e-155, 1.5e-156, 5e-157])
def test_normal_b_sq_from_subnormal_squares_is_within_the_sums_bound(g):
    # each square is subnormal (< 2^-1022) and rounds there; their sum is a normal b^2
    n = 100_003
    grads = np.full(n, g)
    grads[::7] *= 1.3  # (not all equal)
    b = np.zeros(1)
    p = np.ones(n)
    adagrad_norm_([p], [grads], b, lr=0.1)
    want = math.ldexp(_exact_sq(grads), -UP)
    assert want >= 2.0**-1022
    assert abs(b[0] - want) <= n * 2.0**-53 * want
    rate = 0.1 / math.sqrt(want)
    np.testing.assert_allclose(p, 1.0 - rate * grads, rtol=1e-12, atol=0)


def test_class_with_a_normal_b0_steps_tiny_gradients_as_the_float64_rule():
    n, g = 4, 1e-170
    p = np.ones(n)
    opt = AdagradNorm([p], lr=1e77, b0=1e-90)  # (b0^2 = 1e-180: normal)
    opt.step([np.full(n, g)])
    b2 = 1e-180 + math.ldexp(_exact_sq(np.full(n, g)), -UP)  # (== 1e-180: the squares add nothing)
    np.testing.assert_allclose(p, 1.0 - 1e77 / math.sqrt(b2) * g, rtol=1e-15)
    assert abs(p[0] - 0.999) < 1e-9  # (a step of 1e-3: taken)


def test_b_sq_below_float64s_range_is_zero_and_the_step_skipped_not_nan():
    # the documented limit: from b_sq = 0, ||g||^2 = 4e-340 has no float64 (exactly nonzero,
    # b = 2e-170 would step every param by lr / 2); b_sq stays 0, as for a zero gradient
    assert math.ldexp(_exact_sq(np.full(4, 1e-170)), -UP) == 0.0
    p, b = np.ones(4), np.zeros(1)
    adagrad_norm_([p], [np.full(4, 1e-170)], b, lr=0.1)
    assert b[0] == 0.0 and np.array_equal(p, np.ones(4))
    # where b^2 lands in the subnormal range, it holds the exact value to that range's spacing
    p, b = np.ones(4), np.zeros(1)
    adagrad_norm_([p], [np.full(4, 1e-160)], b, lr=0.1)
    assert abs(b[0] - 4e-320) <= 4 * 2.0**-1075
    np.testing.assert_allclose(p, 0.95, rtol=1e-5)
