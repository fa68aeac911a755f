"""``top_eigenvalues``' convergence flag with many copies of the wanted eigenvalue (41st hunt, n).

After a breakdown the flag waits for the sequence begun there from a random vector (the copies of a
repeated eigenvalue beyond the first lie outside one Krylov space: test_lanczos_multiplicity). With
many copies of the wanted eigenvalue that sequence breaks down too -- a random vector in a 39-fold
eigenspace is an eigenvector, its sequence one step long -- and each breakdown began a new one that
the next check found not multiplied yet: ``diag(0 x 40, 1..10)``, ``"SA"``, ``max_steps=30`` came back
with eigenvalue -3e-31, residual 0 and ``converged=False`` (it only converged with ``max_steps >= n``).
A sequence from a random vector that ended in an invariant subspace holds the most wanted eigenvalue
left outside the sequences before it, and every one outside it is no more wanted: when that one is
no more wanted than the k-th value found, no further copy changes the answer, and the pairs converge.
"""

import numpy as np
import pytest

from optkern import hessian

N_COPIES, N_REST = 40, 10
N = N_COPIES + N_REST
REST = np.arange(1.0, N_REST + 1.0)


def _operator(spectrum, dtype, rotated):
    spectrum = np.asarray(spectrum, dtype=np.float64)
    if rotated:  # (not diagonal: a random vector in the repeated eigenspace breaks down to rounding only)
        Q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((len(spectrum), len(spectrum))))
        A = (Q * spectrum) @ Q.T
        A = (A + A.T) / 2
    else:
        A = np.diag(spectrum)
    return A.astype(dtype)


def test_the_reported_case():
    A = np.diag(np.r_[np.zeros(N_COPIES), REST])
    r = hessian.top_eigenvalues(A, 1, "SA", max_steps=30)
    assert r.converged, (r.eigenvalues, r.residuals, r.steps)
    assert r.steps < 30
    assert abs(r.eigenvalues[0]) <= 1e-14


@pytest.mark.parametrize("max_basis", [None, 16])
@pytest.mark.parametrize("rotated", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("block_size", [1, 2])
@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("which", ["SA", "LA"])
def test_many_copies_at_the_wanted_end_converge(which, k, block_size, dtype, rotated, max_basis):
    # SA: 40 zeros below 1..10; LA: 40 copies of 5 above 4..-5 (the other end: 10 distinct values)
    spectrum = np.r_[np.zeros(N_COPIES), REST] if which == "SA" else 5.0 - np.r_[np.zeros(N_COPIES), REST]
    want = np.full(k, 0.0 if which == "SA" else 5.0)
    A = _operator(spectrum, dtype, rotated)
    r = hessian.top_eigenvalues(A, k, which, max_steps=30, block_size=block_size, max_basis=max_basis)
    assert r.converged, (r.eigenvalues, r.residuals, r.steps)
    eps = float(np.finfo(dtype).eps)
    # every copy: the k-th value is the repeated one, not the next distinct one (1 or 4) a short count gives
    np.testing.assert_allclose(r.eigenvalues, want, rtol=0, atol=64 * eps * 10.0)


@pytest.mark.parametrize("check_every", [1, 2, 5])
@pytest.mark.parametrize("which", ["LA", "SA", "LM"])
def test_a_copy_outside_the_sequences_still_holds_it_back(which, check_every):
    """What the wait is for, with max_steps < n: 5 three times among 1s and a 2. The start vector's
    space holds 5, 2, 1 (3 steps); the next from a random vector 5 and 1 (ends after 2 steps, its 5
    converged), when the three most wanted found are 5, 5, 2: a third copy of 5 may lie outside both,
    and does. Stopping there gave [5, 5, 2]."""
    sign = -1.0 if which == "SA" else 1.0
    n = 80
    A = sign * _operator(np.r_[5.0, 5, 5, 1, 2, np.ones(n - 5)], np.float64, True)
    r = hessian.top_eigenvalues(A, 3, which, max_steps=30, check_every=check_every)
    np.testing.assert_allclose(r.eigenvalues, sign * np.array([5.0, 5, 5]), rtol=1e-9)
    assert r.converged and r.steps < 30, (r.residuals, r.steps)


def test_k_beyond_the_copies_takes_the_next_value():
    """k = 4 with 3 copies of the top eigenvalue and many of the next: the fourth is that next one."""
    spectrum = np.r_[5.0, 5, 5, np.full(N_COPIES, 3.0), np.arange(N_REST) / N_REST]
    r = hessian.top_eigenvalues(_operator(spectrum, np.float64, True), 4, "LA", max_steps=40)
    np.testing.assert_allclose(r.eigenvalues, [5.0, 5, 5, 3], rtol=1e-9)
    assert r.converged, (r.residuals, r.steps)
