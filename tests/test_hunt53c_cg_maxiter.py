"""``hessian.cg``'s ``maxiter`` held to int64, by name, before any product (hunt 53c).

``cg(A, b, maxiter=2**70)`` ran and, unconverged, returned ``info = 2**70``: an iteration count no
int64 holds, where Newton-CG's ``max_cg_iter`` (which it passes on as ``maxiter``) and L-BFGS's
limits are held to int64 (hunt 52e). Refused now, naming ``maxiter``, before ``A`` is multiplied.
The curvature API's other integer limits were audited (tests below keep what they found): each is
clamped to the operator's size before it sizes anything or reaches a native call (``k``,
``block_size``, ``steps``, ``max_steps``...) or bounded to int32 already (``num_probes``, ``grid``,
``num_matvecs``). (The loop counts among them are held to int64 since hunt 54a.)
"""

from __future__ import annotations

import numpy as np
import pytest

from counting_operator import Counting
from optkern import hessian

TOP = 2**63 - 1


@pytest.mark.parametrize("bad", [TOP + 1, 2**70, np.uint64(2**64 - 1)])
def test_maxiter_past_int64_is_refused_before_a_product(bad):
    op = Counting()
    b = np.arange(1.0, 8.0)
    before = b.copy()
    with pytest.raises(ValueError, match=rf"^maxiter: must be <= {TOP}, got {int(bad)}$"):
        hessian.cg(op, b, maxiter=bad)
    assert op.products == 0
    assert np.array_equal(b, before)


@pytest.mark.parametrize("top", [TOP, np.int64(TOP)])
def test_maxiter_at_int64_max_runs(top):
    """The bound itself is a limit like any other: the solve converges well before it."""
    op = Counting()
    b = np.arange(1.0, 8.0)
    res = hessian.cg(op, b, maxiter=top, rtol=1e-12)
    assert res.info == 0 and 0 < res.iterations <= 7
    np.testing.assert_allclose(res.x, np.ones(7), rtol=1e-10)


def test_unconverged_info_is_the_int64_limit():
    """Unconverged, ``info`` is the limit given: an int64 value, as SciPy's is."""
    res = hessian.cg(np.diag(np.arange(1.0, 8.0)), np.ones(7), maxiter=1)
    assert res.info == 1 and res.iterations == 1


def test_maxiter_stays_checked_for_type_and_sign():
    b = np.ones(7)
    with pytest.raises(ValueError, match=r"^maxiter: must be >= 0, got -1$"):
        hessian.cg(Counting(), b, maxiter=-1)
    with pytest.raises(TypeError, match=r"^maxiter: expected an integer, got float$"):
        hessian.cg(Counting(), b, maxiter=5.0)


def test_other_curvature_limits_are_clamped_or_bounded():
    """What the audit found: past-int64 sizes are clamped to n (and run) or refused by name. (The
    loop counts, power iteration's ``max_iter``, Lanczos' ``steps`` and ``max_steps``, are held to
    int64 since: tests/test_hunt54a_curvature_loop_caps.py.)"""
    A = np.diag(np.arange(1.0, 8.0))
    res = hessian.top_eigenvalues(A, k=1, max_basis=2**70, check_every=2**70)
    assert res.steps <= 7
    with pytest.raises(ValueError, match=r"^k: must be at most n = 7, got "):
        hessian.top_eigenvalues(A, k=2**70)
    with pytest.raises(ValueError, match=r"^num_matvecs: must be at most 2\*\*31 - 1, got "):
        hessian.trace(A, num_matvecs=2**70)
    with pytest.raises(ValueError, match=r"^grid: must be at most 2\*\*31 - 1 points, got "):
        hessian.spectral_density(A, grid=2**70)
