"""Hunt 39c: LSUV on half / float32 weights. Each rescaling multiplied the weight by its factor
rounded to the weight's dtype first (``w *= w.dtype.type(1 / sqrt(var + eps))``): in float16 the
factor itself was off by up to 2**-11 relative, and every one of the up to ``max_iter``
rescalings rounded the weights again. Now the factors are multiplied in float64 and the weights
are the start weights times their product, rounded once to their dtype."""

import math

import numpy as np
import pytest

from optkern import init


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("max_iter", [1, 6])
def test_weights_are_the_start_times_the_product_of_the_factors_rounded_once(dtype, max_iter):
    rng = np.random.default_rng(3901)
    # a scale far from 1 (a variance of about 37) and a tol never met in one rescaling of a
    # non-linear forward: several factors, each one a float16 rounding off before
    w = (rng.standard_normal((5, 9)) * 2.0).astype(dtype)
    x = rng.standard_normal((40, 9))
    start = w.astype(np.float64)
    factors = []

    def forward(inp):
        h = inp @ w.astype(np.float64).T
        out = h + 0.3 * h**2  # (non-linear: one factor does not reach unit variance)
        factors.append(float(out.var()))
        return [out]

    init.lsuv_([w], forward, x, tol=1e-6, max_iter=max_iter, orthogonal_start=False)
    total = 1.0
    for var in factors[:-1]:  # (the last variance is only measured)
        total *= 1.0 / math.sqrt(var + 1e-8)
    assert len(factors) == max_iter + 1
    np.testing.assert_array_equal(w, (start * total).astype(dtype))


def test_a_single_float16_rescaling_is_not_rounded_twice():
    # the factor 1 / sqrt(var + eps) for var = 3 is 0.57735..., float16 0.5771 (2**-11 off):
    # w = 1.5 times it is 0.866 exactly rounded, 0.8657 from the rounded factor
    w = np.full((1, 1), 1.5, np.float16)
    calls = []

    def forward(inp):
        calls.append(1)
        return [np.array([0.0, math.sqrt(12.0)]) if len(calls) == 1 else np.array([0.0, 2.0])]

    init.lsuv_([w], forward, None, tol=1e-3, max_iter=1, orthogonal_start=False)
    assert w[0, 0] == np.float16(1.5 / math.sqrt(3.0 + 1e-8))
