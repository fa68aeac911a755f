"""Partial reorthogonalization (``lanczos``' and ``spectral_density``'s default) near float64's max:
Simon's omega-recurrence formed ``alpha_k - alpha_j`` and its sums in the operator's scale, which for
a spectrum of +-1.7e308 passed float64's max: NumPy's "overflow encountered in add" escaped (an error
under ``-W error``: every such ``spectral_density`` raised it) and inf / NaN estimates decided when
to reorthogonalize. The recurrence is scale-free: now formed on alpha and beta divided by a power of
two where they overflowed (``_vectors.in_range``), giving the spectrum ``c A`` gives for ``A``."""

import warnings

import numpy as np
import pytest

from optkern import hessian

EV = np.array([1.7, -1.7, 1.0, 0.5, 1e-3, 0.0, 0.25, -0.75])


def _rotated(scale):
    Q = np.linalg.qr(np.random.default_rng(0).standard_normal((8, 8)))[0]
    return (Q * (EV * scale / 4)) @ Q.T * 4  # (scaled inside: Q diag(ev) Q^T's sums stay in range)


@pytest.mark.parametrize("matrix", ["diagonal", "rotated"])
def test_lanczos_partial_near_the_max_is_the_spectrum_scaled(matrix):
    big = 1e308
    A = np.diag(EV * big) if matrix == "diagonal" else _rotated(big)
    A = (A / 2 + A.T / 2) if matrix == "rotated" else A
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        alpha, beta = hessian.lanczos(A, 8, reorthogonalize="partial", seed=1)
    T = (np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)) / big
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(T)), np.sort(EV)[8 - len(alpha) :], atol=1e-12)


def test_spectral_density_near_the_max_is_made():
    A = np.diag(EV * 1e308)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = hessian.spectral_density(A, num_probes=2, steps=8, grid=[0.0], sigma=1e306)
    assert d.mean() == pytest.approx(EV.mean() * 1e308, rel=1e-12)
    np.testing.assert_allclose(np.sort(np.unique(np.round(d.nodes / 1e308, 9))), np.sort(EV), atol=1e-9)
