"""The curvature API's loop limits held to int64, by name, before any product (hunt 54a).

``power_iteration(A, max_iter=2**70)`` ran, and unconverged it returned ``iterations = 2**70``: a
count no int64 holds (the bug ``hessian.cg``'s ``maxiter`` had, hunt 53c). Every limit that counts
a Python loop's turns -- power iteration's ``max_iter``, Lanczos' ``steps``, ``top_eigenvalues``'
and ``gradient_concentration``'s ``max_steps``, ``spectral_density``'s ``steps`` -- now takes at
most ``2**63 - 1`` through the one check ``cg`` uses (``_backend.integer(..., hi=INT64_MAX)``); the
bound itself still runs (clamped to the operator's size where the count is).
"""

from __future__ import annotations

import numpy as np
import pytest

from counting_operator import Counting
from optkern import hessian

TOP = 2**63 - 1
N = 7
GRAD = np.linspace(1.0, 2.0, N)
# (function, the limit's name, the call with that limit)
LIMITS = [
    ("power_iteration", "max_iter", lambda op, v: hessian.power_iteration(op, max_iter=v)),
    ("lanczos", "steps", lambda op, v: hessian.lanczos(op, v)),
    ("top_eigenvalues", "max_steps", lambda op, v: hessian.top_eigenvalues(op, k=1, max_steps=v)),
    ("spectral_density", "steps", lambda op, v: hessian.spectral_density(op, steps=v, grid=11)),
    ("gradient_concentration", "max_steps", lambda op, v: hessian.gradient_concentration(op, GRAD, 1, max_steps=v)),
]
IDS = [f"{f}-{a}" for f, a, _ in LIMITS]


@pytest.mark.parametrize("bad", [TOP + 1, 2**70, np.uint64(2**64 - 1)])
@pytest.mark.parametrize("fn,arg,call", LIMITS, ids=IDS)
def test_a_loop_limit_past_int64_is_refused_by_name_before_a_product(fn, arg, call, bad):
    op = Counting()
    with pytest.raises(ValueError, match=rf"^{arg}: must be <= {TOP}, got {int(bad)}$"):
        call(op, bad)
    assert op.products == 0


@pytest.mark.parametrize("top", [TOP, np.int64(TOP)])
@pytest.mark.parametrize("fn,arg,call", LIMITS, ids=IDS)
def test_the_bound_itself_runs(fn, arg, call, top):
    """``2**63 - 1`` is a limit like any other: each converges (or is clamped to n) well before it."""
    op = Counting()
    call(op, top)
    assert 0 < op.products <= 10 * N * N


def test_power_iteration_at_the_bound_finds_the_top_eigenvalue():
    res = hessian.power_iteration(np.diag(np.arange(1.0, N + 1)), max_iter=TOP, tol=1e-12)
    assert res.converged and res.iterations < 1000
    assert res.eigenvalue == pytest.approx(float(N), rel=1e-10)


def test_power_iterations_unconverged_is_the_limit_given():
    """Unconverged, ``iterations`` is the limit: an int64 count now, whatever was asked."""
    A = np.diag([1.0, -1.0, 0.5])  # (+-1 dominant: the quotient settles on no eigenvalue)
    res = hessian.power_iteration(A, max_iter=3)
    assert not res.converged and res.iterations == 3


@pytest.mark.parametrize("fn,arg,call", LIMITS, ids=IDS)
def test_the_limits_stay_checked_for_type_and_sign(fn, arg, call):
    with pytest.raises(TypeError, match=rf"^{arg}: expected an integer, got float$"):
        call(Counting(), 5.0)
    with pytest.raises(ValueError, match=rf"^{arg}: must be >= 1, got 0$"):
        call(Counting(), 0)
