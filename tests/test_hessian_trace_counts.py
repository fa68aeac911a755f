"""Hutch++'s product count: ``TraceResult.num_matvecs``, the operator's own count and the progress
total are the products actually made. With ``num_matvecs >= 3 n`` the sketch had ``s > n``
columns but its QR only ``n``: ``A Q`` cost ``n`` products, not ``s``, and the result reported
more than were made; the trace is now computed exactly from ``n`` products ``A e_i``."""

from __future__ import annotations

import numpy as np
import pytest

from optkern import hessian


def _sym(n, seed):
    rng = np.random.default_rng(seed)
    Q = np.linalg.qr(rng.standard_normal((n, n)))[0]
    return (Q * np.r_[10.0, -4.0, rng.standard_normal(max(n - 2, 0))][:n]) @ Q.T


@pytest.mark.parametrize("n", [1, 2, 4, 7])
@pytest.mark.parametrize("method", ["hutchinson", "hutch++"])
def test_num_matvecs_is_the_products_made(n, method):
    A = _sym(n, n)
    for m in range(3, 4 * n + 4):
        op = hessian.from_hvp(lambda v: A @ v, n)
        calls: list = []
        r = hessian.trace(op, method, m, seed=2, progress=lambda d, t, calls=calls: calls.append((d, t)))
        made = n if method == "hutch++" and m >= 3 * n else m
        assert r.num_matvecs == op.num_matvecs == made, m
        assert calls[-1] == (made, made) and all(t == made for _, t in calls), m
        if made < m:  # the sketch spans the space: the exact trace
            assert r.estimate == pytest.approx(np.trace(A), abs=1e-12) and r.stderr == 0.0
            assert r.samples.shape == (0,)
        else:
            assert r.samples.shape == (m if method == "hutchinson" else m - 2 * (m // 3),)


def test_below_three_n_hutchpp_is_unchanged():
    """The sketch stops short of the space: the stochastic estimate, with every product asked for."""
    A = _sym(30, 0)
    op = hessian.from_hvp(lambda v: A @ v, 30)
    r = hessian.trace(op, "hutch++", 89, seed=5)
    assert r.num_matvecs == op.num_matvecs == 89 and r.samples.shape == (89 - 2 * 29,) and r.stderr > 0
    assert abs(r.estimate - np.trace(A)) < 5 * r.stderr + 1e-9
