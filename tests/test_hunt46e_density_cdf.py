"""``SpectralDensity.cdf`` at NaN: no comparison with a node holds, and each NaN point read 0.0 -- the
CDF below the whole spectrum, returned as a number with no error. Now ValueError naming ``t``;
``-inf`` and ``inf`` stay the CDF's limits."""

import numpy as np
import pytest

from optkern import hessian


def _density():
    return hessian.spectral_density(np.diag([1.0, 2.0, 3.0, 4.0]), num_probes=2, steps=4, grid=50)


@pytest.mark.parametrize("t", [np.nan, [np.nan, 2.5], np.array([[1.0, np.nan]]), np.float32("nan")])
def test_nan_points_are_refused_naming_t(t):
    with pytest.raises(ValueError, match=r"^t: has NaN entries"):
        _density().cdf(t)


def test_the_cdf_against_the_quadrature_and_at_the_infinities():
    d = _density()
    nodes, w = d.nodes.ravel(), d.weights.ravel() / d.weights.shape[0]
    t = np.array([-np.inf, 0.5, 1.0, 2.5, 3.999, 4.0, 10.0, np.inf])
    want = np.array([w[nodes <= s].sum() for s in t])
    np.testing.assert_allclose(d.cdf(t), want, rtol=0, atol=1e-15)
    assert d.cdf(-np.inf) == 0.0
    assert d.cdf(np.inf) == pytest.approx(1.0, abs=1e-14)
    # (with 4 steps on a 4 x 4 operator the nodes are its eigenvalues: each weighs 1/4 on average)
    np.testing.assert_allclose(np.sort(np.unique(np.round(nodes, 10))), [1.0, 2.0, 3.0, 4.0])
