"""Partial reorthogonalization's omega-recurrence allocates nothing per step: it made ~8 arrays of up
to ``m + 1`` entries a step (the new estimates, the concatenated alpha / beta, the shifted rows and
the arithmetic's temporaries), now it writes into rows made once per recurrence. Its estimates are
pinned against an independent float64 transcription of Simon's (1984) recurrence."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from optkern import hessian
from optkern.hessian.recurrence import LanczosRecurrence


def _diag_op(n: int, seed: int = 0):
    d = np.random.default_rng(seed).standard_normal(n)
    d[:3] = (40.0, 40.0, 39.9)  # (converging Ritz values: orthogonality is lost, the estimates rise)
    return hessian.from_hvp(lambda v: d * v, n)


def test_the_recurrence_allocates_nothing_that_grows_with_the_steps(monkeypatch):
    m = 2000
    extra: list = []
    omega = LanczosRecurrence._omega

    def measured(self, j, a, b):
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        out = omega(self, j, a, b)
        extra.append((j, tracemalloc.get_traced_memory()[1] - before))
        return out

    monkeypatch.setattr(LanczosRecurrence, "_omega", measured)
    rec = LanczosRecurrence(_diag_op(m), m, None, 0, "partial")
    tracemalloc.start()
    try:
        for _ in range(700):
            if rec.done:
                break
            rec.advance(rec.product(rec.op))
    finally:
        tracemalloc.stop()
    late = [e for j, e in extra if j >= 500]
    assert late, "the recurrence ended early"
    # (before: the new row alone was 8 (m + 1) = 16 kB a step, the copies of alpha / beta 8 kB more)
    assert max(late) < 4096, max(late)


def _simon(alpha, beta, eps1):
    """Every step's estimates ``|omega_{j+1, k}|``, k < j, by the textbook recurrence in float64
    (no reorthogonalization: the run below stays short of the threshold)."""
    m = len(alpha)
    om_prev, om = np.zeros(m + 1), np.zeros(m + 1)
    om[0] = 1.0
    out = []
    for j in range(m):
        new = np.zeros(m + 1)
        for k in range(j):
            bkm1 = beta[k - 1] if k > 0 else 0.0
            omkm1 = om[k - 1] if k > 0 else 0.0
            x = beta[k] * om[k + 1] + (alpha[k] - alpha[j]) * om[k] + bkm1 * omkm1 - beta[j - 1] * om_prev[k]
            new[k] = (x + np.copysign(eps1 * (beta[k] + beta[j]), x)) / beta[j]
        new[j], new[j + 1] = eps1, 1.0
        out.append(new[:j].copy())
        om_prev, om = om, new
    return out


@pytest.mark.parametrize("n", [7, 60])
def test_the_estimates_are_simons(n, monkeypatch):
    seen: list = []
    omega = LanczosRecurrence._omega

    def recorded(self, j, a, b):
        out = omega(self, j, a, b)
        seen.append(self.om[:j].copy())
        return out

    monkeypatch.setattr(LanczosRecurrence, "_omega", recorded)
    d = np.linspace(1.0, 2.0, n)
    rec = LanczosRecurrence(hessian.from_hvp(lambda v: d * v, n), min(n, 12), None, 0, "partial")
    while not rec.done:
        rec.advance(rec.product(rec.op))
    assert rec.reorths == 0
    ref = _simon(rec.alpha, rec.beta, rec.eps1)
    assert len(seen) >= 5
    for j, (got, want) in enumerate(zip(seen, ref)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=0, err_msg=f"step {j}")
