"""``hessian.cg``'s callback gets an iterate it may keep.

SciPy's ``cg`` passes its live ``x`` (``x += alpha * p`` in place, ``callback(x)``): a caller that
stores what it is given (``callback=hist.append``) holds the final iterate N times. optkern passes
a copy, so the history is the sequence of iterates, and a callback that writes into its argument
cannot steer the solve.
"""

from __future__ import annotations

import numpy as np

from optkern import hessian


def _spd(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, n))
    return a @ a.T + n * np.eye(n)


def test_stored_iterates_are_each_iteration_s_own():
    A, b = _spd(13, 0), np.random.default_rng(1).standard_normal(13)
    hist: list = []
    res = hessian.cg(A, b, rtol=1e-12, callback=hist.append)
    assert len(hist) == res.iterations >= 3
    assert not np.array_equal(hist[0], hist[-1])  # the live x: every entry was the last iterate
    assert all(not np.shares_memory(h, res.x) for h in hist)
    np.testing.assert_array_equal(hist[-1], res.x)
    # each one is the iterate of its step: the residuals fall as CG's do
    resid = [np.linalg.norm(b - A @ h) for h in hist]
    assert resid[-1] < 1e-8 * resid[0]


def test_a_callback_that_writes_its_argument_does_not_change_the_solve():
    A, b = _spd(11, 2), np.random.default_rng(3).standard_normal(11)
    want = hessian.cg(A, b, rtol=1e-12)
    got = hessian.cg(A, b, rtol=1e-12, callback=lambda xk: xk.fill(1e6))
    np.testing.assert_array_equal(got.x, want.x)
    assert got.iterations == want.iterations
