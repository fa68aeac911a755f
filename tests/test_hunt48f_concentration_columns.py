"""``gradient_concentration``'s ``eigenvectors`` are a basis: each column's scale is irrelevant to the
subspace (``in_dtype(..., scale_free=True)``: "a basis: any scale"). Cast to a float32 operator's dtype,
the matrix was scaled by one power of two, that of its largest entry: float64 columns of scales 2**1000
and 1 had the second flushed to 0 and were refused as "column 1 is zero" (it is not), and columns of
2**130 and 1, or of 2**-140 and 1, lost bits to float32's subnormal range (the fraction 2e-5 off,
silently). Each column is now scaled by its own power of two first (exact: the same bits as the
unscaled basis)."""

from __future__ import annotations

import numpy as np
import pytest

from optkern import hessian as H


def _problem():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((20, 20)))
    A = (q * np.linspace(0.0, 1.0, 20)) @ q.T
    return A, rng.standard_normal(20), q[:, ::-1][:, :3].copy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "exponents", [(1000, 0, 0), (130, 0, 0), (-140, 0, 0), (0, -1000, 0), (200, -200, 3), (-1000, -1000, -1000)]
)
def test_column_scales_of_powers_of_two_change_no_bit(dtype, exponents):
    A, g, V = _problem()
    op = A.astype(dtype)
    want = H.gradient_concentration(op, g, 3, eigenvectors=V)
    got = H.gradient_concentration(op, g, 3, eigenvectors=np.ldexp(V, np.array(exponents)))
    assert got == want


def test_a_zero_column_is_still_refused_as_zero():
    A, g, V = _problem()
    V[:, 1] = 0.0
    V[:, 0] *= 2.0**1000
    with pytest.raises(ValueError, match=r"^eigenvectors: .* column 1 is zero$"):
        H.gradient_concentration(A.astype(np.float32), g, 3, eigenvectors=V)
