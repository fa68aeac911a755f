"""Hunt 40i: ``NewtonCG`` refuses a fixed (array) ``preconditioner`` that no step takes where it is
given -- another size than the parameters, not real, negative or non-finite -- by the step's own
check and words; it was taken, and refused only at the first step, far from where it was given. A
callable one (its diagonal known at the step) is checked there, as before."""

import numpy as np
import pytest

from optkern import hessian, optim


def _op():
    return hessian.from_hvp(lambda v: 2 * v, 3)


BAD = [
    (np.ones(7), ValueError, r"^preconditioner: expected a diagonal of shape \(3,\), got \(7,\)$"),
    (np.ones((3, 1)), ValueError, r"^preconditioner: expected a diagonal of shape \(3,\), got \(3, 1\)$"),
    (-np.ones(3), ValueError, r"^preconditioner: the diagonal must be finite and >= 0"),
    (np.array([1.0, np.nan, 1.0]), ValueError, r"^preconditioner: the diagonal must be finite and >= 0"),
    (np.array(["x", "y", "z"]), TypeError, r"^preconditioner: expected real numbers"),
    (np.ones(3) * 1j, TypeError, r"^preconditioner: expected real numbers"),
]


@pytest.mark.parametrize("pc,exc,msg", BAD, ids=[str(i) for i in range(len(BAD))])
def test_a_fixed_diagonal_no_step_takes_is_refused_at_construction(pc, exc, msg):
    with pytest.raises(exc, match=msg):
        optim.NewtonCG([np.ones(3)], _op, preconditioner=pc)


@pytest.mark.parametrize("pc,exc,msg", BAD, ids=[str(i) for i in range(len(BAD))])
def test_the_step_still_refuses_it_assigned_later_nothing_changed(pc, exc, msg):
    p = np.ones(3)
    opt = optim.NewtonCG([p], _op)
    opt.preconditioner = pc
    with pytest.raises(exc, match=msg):
        opt.step(lambda: (float(p @ p), 2 * p))
    assert np.array_equal(p, np.ones(3))


def test_good_diagonals_are_taken_and_step():
    p = np.ones(3)
    opt = optim.NewtonCG([p], _op, preconditioner=np.array([1.0, 2.0, 0.0]))
    opt.step(lambda: (float(p @ p), 2 * p))
    optim.NewtonCG([np.ones(3)], _op, preconditioner=lambda: np.ones(7))  # (callable: checked at the step)
