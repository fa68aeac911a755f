"""NewtonCG with a curvature operator of another dtype than its params: a TypeError naming
``curvature`` before the closure runs or anything is written (was "y: expected float32, got
float64", naming an array of the solver's the caller never passed, after a closure evaluation)."""

from __future__ import annotations

import numpy as np
import pytest

from optkern import hessian, optim


def _closure(ps, calls):
    def closure():
        calls.append(1)
        return float((ps[0] * ps[0]).sum()), [2 * ps[0]]

    return closure


@pytest.mark.parametrize("pdt,odt", [(np.float32, np.float64), (np.float64, np.float32)])
@pytest.mark.parametrize("kind", ["hvp", "dense", "callable"])
def test_an_operator_of_another_dtype_is_named(pdt, odt, kind):
    ps = [np.linspace(-1, 1, 5).astype(pdt)]
    if kind == "dense":
        curvature = hessian.as_operator((2 * np.eye(5)).astype(odt))
    else:
        op = hessian.from_hvp(lambda v: 2 * v, 5, dtype=odt)
        curvature = op if kind == "hvp" else (lambda: op)
    opt = optim.NewtonCG(ps, curvature)
    before, calls = ps[0].copy(), []
    with pytest.raises(
        TypeError, match=rf"^curvature: its dtype is {np.dtype(odt)}, but the params are {np.dtype(pdt)}"
    ):
        opt.step(_closure(ps, calls))
    assert calls == []
    np.testing.assert_array_equal(ps[0], before)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_an_operator_of_the_params_dtype_still_steps(dt):
    ps = [np.linspace(-1, 1, 5).astype(dt)]
    opt = optim.NewtonCG(ps, hessian.from_hvp(lambda v: 2 * v, 5, dtype=dt), damping=1e-3)
    opt.step(_closure(ps, []))
    assert np.max(np.abs(ps[0])) < 1e-2  # (the quadratic's minimum is 0)
