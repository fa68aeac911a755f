"""``spectral_density`` with a grid of the caller's that reaches far beyond the nodes: the kernel's
differences ``t - theta`` were taken after dividing the grid and the nodes by one power of two, that of
their largest magnitude, so one grid point at 1e308 pushed nodes and grid points near 1e-100 below
float64's smallest subnormal: the density at every other point was wrong by up to 7x (0.3% at 1e-12),
with no error. Each pair is now scaled by its own larger magnitude where the common scale would lose
bits (the common one, bit for bit as before, everywhere else)."""

from __future__ import annotations

import numpy as np
import pytest

from optkern import hessian as H


def _operator(c):
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((20, 20)))
    return (q * np.linspace(-1.0, 3.0, 20)) @ q.T * c


@pytest.mark.parametrize("c", [1e-12, 1e-100, 1e-200, 1.0, 1e200])
@pytest.mark.parametrize("far", [1e308, -1.7e308, 1e300])
def test_a_far_grid_point_leaves_the_density_elsewhere_unchanged(c, far):
    A = _operator(c)
    grid = np.linspace(-2.0, 4.0, 61) * c
    want = H.spectral_density(A, 3, 10, grid=grid, sigma=0.1 * c)
    got = H.spectral_density(A, 3, 10, grid=np.r_[grid, far], sigma=0.1 * c)
    np.testing.assert_array_equal(got.nodes, want.nodes)
    np.testing.assert_allclose(got.density[:-1], want.density, rtol=1e-13, atol=1e-13 * want.density.max())
    assert got.density[-1] == 0.0  # (thousands of sigmas from every node)


def test_the_density_of_c_a_is_that_of_a_scaled_with_a_far_point():
    # (the documented scaling: the density of c A with c sigma is A's on c times the grid, over c)
    A = _operator(1.0)
    grid = np.linspace(-2.0, 4.0, 61)
    ref = H.spectral_density(A, 3, 10, grid=grid, sigma=0.1)
    c = 2.0**-400  # (a power of two: the nodes of c A are c times A's, exactly)
    got = H.spectral_density(A * c, 3, 10, grid=np.r_[grid * c, 1e300], sigma=0.1 * c)
    np.testing.assert_allclose(got.density[:-1] * c, ref.density, rtol=1e-13, atol=1e-13 * ref.density.max())


def test_grid_point_beside_a_node_far_below_the_largest():
    # a node at 1e-300 and a grid point 1e-308 from it, beside a grid point at 1e10: the difference
    # (1e-308) is what the kernel reads; the common scale of 1e10 made the node and the point 0
    A = np.diag([1e-300, 2e-300])
    sigma = 1e-307
    grid = np.array([1e-300 + 1e-308, 1e10])
    d = H.spectral_density(A, 1, 2, grid=grid, sigma=sigma)
    t = grid[0]
    want = sum(
        w * np.exp(-0.5 * ((t - x) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
        for x, w in zip(d.nodes[0], d.weights[0])
    )
    assert d.density[0] == pytest.approx(want, rel=1e-12)
    assert d.density[1] == 0.0
