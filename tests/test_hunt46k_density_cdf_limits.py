"""``SpectralDensity.cdf``'s limits: the quadrature weights sum to 1 only to rounding, and ``cdf(inf)``
read 1.0000000000000004 or 0.9999999999999994 (a CDF above 1 for 11 of 30 random operators). Now exactly 0
below the lowest node and 1 from the highest, non-decreasing over sorted points, and the quadrature's
sums elsewhere (against a float64 sum over the nodes at or below each point)."""

import numpy as np
import pytest

from optkern import hessian


@pytest.mark.parametrize("seed", range(12))
def test_the_limits_are_exact_and_the_cdf_never_decreases(seed):
    A = np.random.default_rng(seed).standard_normal((9, 9))
    d = hessian.spectral_density(A + A.T, num_probes=3, steps=7, grid=20, seed=seed)
    assert d.cdf(np.inf) == 1.0
    assert d.cdf(d.nodes.max()) == 1.0
    assert d.cdf(-np.inf) == 0.0
    assert d.cdf(np.nextafter(d.nodes.min(), -np.inf)) == 0.0
    t = np.sort(np.concatenate([d.nodes.ravel(), d.grid, np.nextafter(d.nodes.ravel(), np.inf)]))
    c = d.cdf(t)
    assert (np.diff(c) >= 0).all() and c.min() >= 0.0 and c.max() == 1.0
    # the quadrature itself, to rounding (an independent float64 sum over the nodes at or below t)
    w = d.weights.ravel() / d.weights.shape[0]
    want = np.array([w[d.nodes.ravel() <= s].sum() for s in t])
    np.testing.assert_allclose(c, want, rtol=0, atol=4e-15)
    assert c.shape == t.shape and d.cdf(t.reshape(2, -1)).shape == (2, t.size // 2)
