"""``SpectralDensity.mean()`` (the estimate of ``tr(A) / n``) summed ``weights * nodes`` as they are:
nodes near float64's max overflowed the sum, so the mean of ``[[-1e308]]``'s density was -inf and
``diag(1e308, 1e308)``'s inf, with NumPy's "overflow encountered in reduce" (an error under
``-W error``), though ``spectral_density`` builds such densities and the means are floats. Now in
range (the trace estimator's rule, ``trace._in_range``): the same bits wherever the sum was finite."""

import numpy as np
import pytest

from optkern import hessian


@pytest.mark.parametrize(
    "diag, want",
    [([-1e308], -1e308), ([1e308, 1e308], 1e308), ([1.7e308, -1e308, 1.7e308], 0.8e308)],
)
def test_the_mean_of_nodes_near_the_max_is_in_range(diag, want):
    # (a diagonal operator: z^T A z / n = tr(A) / n for every +-1 probe; a grid given, as the default
    # one's margin would pass float64's max for the wide spectrum)
    d = hessian.spectral_density(np.diag(diag), num_probes=3, steps=len(diag), grid=[0.0], sigma=1e300)
    assert d.mean() == pytest.approx(want, rel=1e-12)


def test_in_range_means_keep_their_bits():
    rng = np.random.default_rng(0)
    B = rng.standard_normal((9, 9))
    d = hessian.spectral_density((B + B.T) / 2, num_probes=4, steps=5, grid=20)
    assert d.mean() == float((d.weights * d.nodes).sum() / 4)
