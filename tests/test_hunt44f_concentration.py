"""gradient_concentration where Lanczos stops before the top-k Ritz pairs converge (max_steps):
the fraction of the unconverged vectors' span was returned as the top-k eigenspace's, silently
(0.033 for 0.292). Now ValueError names max_steps; converged runs agree with a dense eigh."""

import numpy as np
import pytest

from optkern import hessian as H


def _problem(dtype=np.float64):
    rng = np.random.default_rng(5)
    n = 12
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    ev = np.array([10, 7, 5, 3, 2, 1, 0.5, 0.1, 0, -0.5, -1, -2.0])
    A = Q @ np.diag(ev) @ Q.T
    A = (A + A.T) / 2
    g = rng.standard_normal(n)
    return A.astype(dtype), g.astype(dtype)


def _reference(A, g, k):
    """||P_k g||^2 / ||g||^2 from a float64 eigh."""
    w, V = np.linalg.eigh(A.astype(np.float64))
    top = V[:, np.argsort(w)[::-1][:k]]
    g = g.astype(np.float64)
    return float(np.sum((top.T @ g) ** 2) / (g @ g))


@pytest.mark.parametrize("max_steps", [2, 3, 5, 8])
def test_unconverged_top_space_is_refused_naming_max_steps(max_steps):
    A, g = _problem()
    with pytest.raises(ValueError, match=r"^max_steps: the top-3 Ritz pairs did not converge in \d+ products"):
        H.gradient_concentration(A, g, 2, max_steps=max_steps)


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-6)])
@pytest.mark.parametrize("k", [1, 2, 5, 11, 12])
@pytest.mark.parametrize("max_steps", [None, 12, 100])
def test_converged_fraction_matches_dense_eigh(dtype, tol, k, max_steps):
    A, g = _problem(dtype)
    assert H.gradient_concentration(A, g, k, max_steps=max_steps) == pytest.approx(_reference(A, g, k), abs=tol)
