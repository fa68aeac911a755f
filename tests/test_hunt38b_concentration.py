"""``gradient_concentration`` where the k-th and (k+1)-th largest eigenvalues are equal: the top-k
eigenspace is then not unique, and the fraction was that of whichever k-dimensional part of the
repeated eigenspace Lanczos picked -- 0.018, 0.40, 0.007, 0.28 for seeds 0..3 (diag(3, 3, 3, ...),
k = 1). Now a ValueError naming ``k`` and the tied eigenvalues; k at a gap (here 3) is unique and
independent of the seed."""

import numpy as np
import pytest

from optkern.hessian import gradient_concentration

N = 50


def _op():
    d = np.concatenate([[3.0, 3.0, 3.0], np.linspace(0.0, 1.0, N - 3)])
    return np.diag(d)


def _grad():
    g = np.zeros(N)
    g[0] = g[3] = 1.0
    return g


@pytest.mark.parametrize("k", [1, 2])
def test_k_inside_a_repeated_eigenvalue_is_refused(k):
    for seed in range(3):
        with pytest.raises(ValueError, match=rf"^k: .*eigenvalues {k} and {k + 1}"):
            gradient_concentration(_op(), _grad(), k, seed=seed)


@pytest.mark.parametrize("k", [3, 4])
def test_k_at_a_gap_is_unique(k):
    got = [gradient_concentration(_op(), _grad(), k, seed=s) for s in range(4)]
    assert got == pytest.approx([0.5] * 4, abs=1e-9)


def test_null_space_ties_refused_and_whole_space_fine():
    # rank 2: eigenvalues 2, 1, 0 (x N - 2); k = 3 cuts the null space
    A = np.zeros((N, N))
    A[0, 0], A[1, 1] = 2.0, 1.0
    g = np.ones(N)
    assert gradient_concentration(A, g, 2) == pytest.approx(2 / N, abs=1e-9)
    with pytest.raises(ValueError, match=r"^k: "):
        gradient_concentration(A, g, 3)
    assert gradient_concentration(np.eye(4), np.arange(1.0, 5.0), 4) == pytest.approx(1.0)
