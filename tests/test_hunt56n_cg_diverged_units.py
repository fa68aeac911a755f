"""hessian.cg's divergence error reported the largest |x| and |p| of the rescaled solve ("b scaled
to ~1"), not the caller's: b = 2**k times another gave the same numbers. Now x in b's units (times
2**b_exp) and p in the caller's direction's (times 2**p_exp: b's and the preconditioner's powers of
two), so the numbers are the unscaled run's times the scale.

The system: A = diag(d) with a 0 and b outside its range (no solution); in float64 CG stops at
iteration 48 with x ~1e308 and p ~2e302, both finite (most diverging runs end with an inf in x or p,
which no scale changes)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from optkern import hessian as H

_D = [0.7727722592711984, 2.3664770340447996, 4.219802508519743, 2.327109223630504, 3.0449874621574167, 0.0]
_B = [
    1.1569395453324915,
    0.8649391687249511,
    1.0168811759658247,
    1.2748685781334843,
    1.2874703499468638,
    1.3279679389790622,
]


def _numbers(b, **kw):
    """(iteration, max |x|, max |p|) read from the divergence error of A x = b."""
    with pytest.raises(ValueError, match=r"^A: CG diverged") as err:
        H.cg(np.diag(_D), b, maxiter=1000, **kw)
    m = re.search(r"iteration (\d+): .*\|x\| up to (\S+), \|p\| up to (\S+?), ", str(err.value))
    assert m, str(err.value)
    return int(m[1]), float(m[2]), float(m[3])


def test_the_unscaled_run_ends_finite_past_the_square_root_of_the_range():
    it, x, p = _numbers(np.array(_B))  # (max |b| in [1, 2): the solve's units are the caller's)
    assert it == 48
    assert 1e300 < x < np.inf and 1e300 < p < np.inf


@pytest.mark.parametrize("k", [-1, -40, -300])
def test_diverged_numbers_are_in_the_callers_units(k):
    it, x1, p1 = _numbers(np.array(_B))
    it_k, xk, pk = _numbers(np.ldexp(np.array(_B), k))  # (exact: the solve sees the same b / 2**b_exp)
    assert it_k == it
    np.testing.assert_allclose([xk, pk], [x1 * 2.0**k, p1 * 2.0**k], rtol=1e-3)  # (the message's 4 digits)


@pytest.mark.parametrize("k", [-70, -100])
def test_diverged_direction_carries_the_preconditioners_scale(k):
    """M = 2**k M0 (M0 = I / 2): x is M's invariant, p is 2**k times M0's (as cg's returned direction
    is). |k| > 64, so cg solves with M0 itself (precond_diag's power of two undone: _cg_inputs) and
    the iterates are the same bits; for a smaller k the solve's own p differs by 2**k and leaves
    the range at another iteration."""
    b = np.array(_B)
    ref = _numbers(b, precond_diag=np.full(6, 2.0))
    got = _numbers(b, precond_diag=np.full(6, 2.0 ** (1 - k)))
    assert got[0] == ref[0]
    assert np.isfinite(ref[1:]).all()
    np.testing.assert_allclose(got[1:], [ref[1], ref[2] * 2.0**k], rtol=1e-3)
