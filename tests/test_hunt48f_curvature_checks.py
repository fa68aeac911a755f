"""The curvature estimators against independent float64 references (the 48th session's hunt, which
found no wrong result here; these are the checks it ran, kept so a regression shows):

- stochastic Lanczos quadrature: the density integrates to 1 and every probe's quadrature moments
  ``sum_i tau_i theta_i^j`` average to ``trace(A^j) / n`` within 4 standard errors (exact per probe
  for ``j < 2 m``: Gauss quadrature), for each reorthogonalization;
- Hutchinson / Hutch++ over many seeds: the mean of the estimates within 4 standard errors of the
  trace (unbiased), also for a rank-deficient matrix (a sketch with zero rows);
- ``top_eigenvalues`` vs ``numpy.linalg.eigvalsh`` on repeated, clustered and zero eigenvalues,
  ``k = n`` and ``n = 1``, each ``which``;
- the estimators' bits for 1 and 2 OpenMP threads, over an operator whose products use no BLAS (a
  dense matrix's ``A @ v`` is OpenBLAS's, whose sums follow its own thread count).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

from optkern import hessian as H


def _sym(eigs, seed=0):
    """``Q diag(eigs) Q^T`` for a random orthogonal ``Q``."""
    eigs = np.asarray(eigs, dtype=np.float64)
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((len(eigs), len(eigs))))
    return (q * eigs) @ q.T


@pytest.mark.parametrize("reorthogonalize", ["full", "partial", "none"])
@pytest.mark.parametrize("steps", [3, 12])
def test_slq_integrates_to_one_and_matches_the_moments(reorthogonalize, steps):
    A = _sym(np.linspace(-2.0, 5.0, 30))
    n = A.shape[0]
    d = H.spectral_density(A, num_probes=30, steps=steps, reorthogonalize=reorthogonalize, grid=4000)
    assert np.trapezoid(d.density, d.grid) == pytest.approx(1.0, abs=1e-4)
    assert np.allclose(d.weights.sum(axis=1), 1.0, atol=1e-12)
    for j in range(1, 2 * min(steps, 3)):  # (Gauss quadrature with m nodes: exact below degree 2 m)
        per_probe = (d.weights * d.nodes**j).sum(axis=1)
        se = per_probe.std(ddof=1) / math.sqrt(len(per_probe))
        want = np.trace(np.linalg.matrix_power(A, j)) / n
        assert abs(per_probe.mean() - want) <= 4 * se + 1e-12 * abs(want), j
    per_probe = (d.weights * d.nodes).sum(axis=1)  # (the density's mean: trace(A) / n, unbiased)
    se = per_probe.std(ddof=1) / math.sqrt(len(per_probe))
    assert abs(d.mean() - np.trace(A) / n) <= 4 * se + 1e-12


@pytest.mark.parametrize("method, m", [("hutchinson", 1), ("hutchinson", 12), ("hutch++", 3), ("hutch++", 12)])
@pytest.mark.parametrize("eigs", [np.linspace(-2.0, 5.0, 30), np.r_[3.0, 2.0, np.zeros(18)]], ids=["full", "rank2"])
def test_trace_estimates_are_unbiased(method, m, eigs):
    A = _sym(eigs, 1)
    est = np.array([H.trace(A, method, num_matvecs=m, seed=s).estimate for s in range(10_000, 10_300)])
    se = est.std(ddof=1) / math.sqrt(len(est))
    assert abs(est.mean() - np.trace(A)) <= 4 * se + 1e-10


_SPECTRA = {
    "repeated": [5, 5, 5, 4, 4, 3, 2, 1, 0, 0, 0, -1.0],
    "clustered": [1, 1 + 1e-9, 1 + 2e-9, 0.5, 0.2, 0.1, 0.0],
    "zeros": [0.0] * 6,
    "n1": [3.0],
    "identity": [1.0] * 10,
}


@pytest.mark.parametrize("name", list(_SPECTRA))
@pytest.mark.parametrize("which", ["LA", "SA", "LM"])
def test_top_eigenvalues_against_eigvalsh(name, which):
    e = np.asarray(_SPECTRA[name])
    A = _sym(e)
    ref = np.sort(np.linalg.eigvalsh(A))
    n = len(e)
    for k in sorted({1, min(3, n), n}):
        for b in (1, 2) if n > 1 else (1,):
            r = H.top_eigenvalues(A, k=k, which=which, block_size=b)
            if which == "LA":
                want = ref[::-1][:k]
            elif which == "SA":
                want = ref[:k]
            else:
                want = ref[np.argsort(-np.abs(ref), kind="stable")][:k]
            got = r.eigenvalues
            if which == "LM":  # (ties of |value| in either order)
                got, want = np.sort(np.abs(got)), np.sort(np.abs(want))
            assert r.converged, (k, b)
            np.testing.assert_allclose(got, want, atol=1e-8, err_msg=f"k={k} block_size={b}")


#: A symmetric banded operator of n = 100,000 (two of the native passes' 65,536-element chunks, which
#: 2 threads split with OPTKERN_SERIAL_BELOW=0), its products NumPy element-wise operations (no BLAS)
_THREADS_SCRIPT = """
import numpy as np
from optkern import hessian as H
n = 100_000
d = np.linspace(-2.0, 5.0, n); d[:3] = [10.0, 20.0, 30.0]
op = H.from_hvp(lambda v: d * v + 0.3 * (np.roll(v, 1) + np.roll(v, -1)), n)
out = [H.trace(op, "hutchinson", 6, seed=3).estimate, H.trace(op, "hutch++", 9, seed=3).estimate]
r = H.top_eigenvalues(op, k=2, block_size=2, max_steps=12)
out += list(r.eigenvalues) + list(r.residuals)
out += list(H.spectral_density(op, num_probes=2, steps=6, grid=50).density)
out.append(H.gradient_concentration(op, np.sin(np.arange(n)), 1, max_steps=16, tol=1e-2))
print(np.array(out, dtype=np.float64).tobytes().hex())
"""


@pytest.mark.spawns
def test_estimators_same_bits_for_one_and_two_threads():
    outs = []
    for threads in ("1", "2"):
        env = {**os.environ, "OMP_NUM_THREADS": threads, "OPTKERN_SERIAL_BELOW": "0"}
        res = subprocess.run(
            [sys.executable, "-c", _THREADS_SCRIPT], env=env, capture_output=True, text=True, timeout=120, check=True
        )
        outs.append(res.stdout.strip())
    assert outs[0] == outs[1]
