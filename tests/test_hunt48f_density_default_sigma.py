"""``spectral_density`` of an operator whose nodes are the smallest subnormals (``[[5e-324]]``): the
default width, 1e-3 of the nodes' magnitude, underflowed to 0.0, and the kernel divided by it --
NumPy's "invalid value encountered in divide" escaped (an error under ``-W error``, this suite's
setting) where an explicit sigma that small is refused by name before any product. No width makes
that density a float64 (its peak is at least ``1 / (5e-324 sqrt(2 pi))``): now the same ValueError
naming sigma, for the default width too, and a width given still works."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from optkern import hessian as H


@pytest.mark.parametrize("A", [np.array([[5e-324]]), np.diag([5e-324, 1e-323]), np.diag([0.0, 5e-324])])
def test_a_default_width_that_underflows_is_refused_by_name(A):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(
            ValueError,
            match=r"^sigma: too small for a float64 density, got .* \(the default width: pass a wider one\)$",
        ):
            H.spectral_density(A, 2, 3, grid=20)


def test_a_tiny_operator_with_a_given_width_still_has_a_density():
    d = H.spectral_density(np.array([[5e-324]]), 2, 3, grid=20, sigma=1e-300)
    assert np.isfinite(d.density).all() and d.density.max() > 0
