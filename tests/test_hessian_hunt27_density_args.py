"""``spectral_density``'s grid arguments refused before the products are spent.

``density.py`` checks "the grid's arguments ... before the products are spent"; a NaN grid point was
taken (its density NaN, returned), and a ``sigma`` too small for a float64 density or too large for
the grid's margin was refused only after all ``num_probes * steps`` products (on a large model,
the whole run).
"""

import numpy as np
import pytest

from optkern import hessian

N = 6


def _counting():
    calls = []

    def fn(v):
        calls.append(1)
        return np.arange(1.0, N + 1) * v

    return hessian.from_hvp(fn, N), calls


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"grid": [0.0, np.nan, 1.0]}, r"^grid: has NaN or Inf entries"),
        ({"grid": np.array([0.0, np.inf])}, r"^grid: has NaN or Inf entries"),
        ({"sigma": 1e-320}, r"^sigma: too small for a float64 density"),
        ({"sigma": 1e308}, r"^sigma, pad: the grid's margin"),
    ],
)
def test_refused_before_any_product(kw, match):
    op, calls = _counting()
    with pytest.raises(ValueError, match=match):
        hessian.spectral_density(op, 2, 4, **kw)
    assert not calls, "products were spent before the refusal"


def test_what_stays_valid():
    """A huge sigma with a grid of points (no margin to compute) and finite grids still work."""
    op, _ = _counting()
    d = hessian.spectral_density(op, 1, N, sigma=1e308, grid=[0.0, 1.0])
    assert np.all(np.isfinite(d.density))
    d = hessian.spectral_density(op, 1, N, sigma=0.05)
    assert np.trapezoid(d.density, d.grid) == pytest.approx(1.0, abs=2e-3)  # (the mass beyond 3 sigma of the end nodes)
    np.testing.assert_allclose(np.sort(d.nodes[0]), np.arange(1.0, N + 1), atol=1e-10)
