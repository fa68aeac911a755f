"""A trace past float64's max raised Python's unnamed ``OverflowError: math range error``:
``_vectors.in_range`` (trace's sums near the range's ends) scaled an overflowing sum back with
``math.ldexp``, which raises where the result is past the range instead of giving inf. Hutch++'s exact
path on ``diag(1e308, 1e308)`` (trace 2e308) hit it. Now inf there, and the estimators' ValueError
naming ``op`` (as for any product or estimate that leaves float64's range); in range, the same bits."""

import math

import numpy as np
import pytest

from optkern import hessian
from optkern.hessian._vectors import in_range


@pytest.mark.parametrize("num_matvecs", [6, 9])
def test_a_trace_past_the_max_is_refused_naming_op(num_matvecs):
    with pytest.raises(ValueError, match=r"^op: the operator's products are not finite"):
        hessian.trace(np.diag([1e308, 1e308]), "hutch++", num_matvecs)
    with pytest.raises(ValueError, match=r"^op: the operator's products are not finite"):
        hessian.trace(np.diag([-1e308, -1e308]), "hutch++", num_matvecs)


def test_in_range_gives_inf_past_the_range_and_the_value_within():
    big = np.array([1e308, 1e308])
    assert in_range(np, big, lambda a: float(a.sum())) == math.inf
    assert in_range(np, -big, lambda a: float(a.sum())) == -math.inf
    assert in_range(np, np.array([1.5e308, 1.5e308, -1.5e308]), lambda a: float(a.sum())) == 1.5e308
    assert hessian.trace(np.diag([1e308, 7e307]), "hutch++", 6).estimate == 1.7e308
