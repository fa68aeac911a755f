"""SAM given a gradient that shares memory with a param (a closure of ``|w|^2 / 2`` returning ``w`` itself).

The ascent kernel refused it with its own names, ``grads[0] shares memory with params[0]``: from
``step(closure)`` an argument SAM.step does not have (``Optimizer.step(closure=)`` says ``closure:
grads[0]``), the param named by its place in the kernel's call, not in ``param_groups``. And
``second_step`` put the params back to ``w`` -- through the gradient's memory -- before the wrapped
optimizer's step refused them: the error came after the write, the ascent point lost, and the
gradient the caller passed overwritten. Now refused by name before anything is written.
"""

from __future__ import annotations

import numpy as np
import pytest

import optkern.optim as O

ALIAS = r"shares memory with param_groups\[{}\]\['params'\]\[0\] \(aliasing"


def _sam(n=7, rho=0.5):
    rng = np.random.default_rng(n)
    ps = [rng.standard_normal(n), rng.standard_normal(3)]
    base = O.Adam([{"params": [ps[0]]}, {"params": [ps[1]], "lr": 0.05}], lr=0.1)
    return O.SAM(base, rho=rho), ps


def test_step_refuses_a_closure_returning_the_param_as_its_gradient_naming_closure():
    sam, ps = _sam()
    w = [p.copy() for p in ps]
    calls = []

    def closure():
        calls.append(1)
        return 1.0, [ps[0].copy(), ps[1]]

    with pytest.raises(ValueError, match=r"^closure: grads\[1\] " + ALIAS.format(1)):
        sam.step(closure)
    assert calls == [1]
    assert all(np.array_equal(p, q) for p, q in zip(ps, w))
    assert sam.base.state_dict()["state"] == {}
    sam.step(lambda: (1.0, [p.copy() for p in ps]))  # (not left perturbed: the next step runs)


def test_step_refuses_an_aliased_gradient_at_the_ascent_point_params_back_at_w():
    sam, ps = _sam()
    w = [p.copy() for p in ps]
    calls = []

    def closure():
        calls.append(1)
        return 1.0, [ps[0] if len(calls) == 2 else ps[0].copy(), ps[1].copy()]

    with pytest.raises(ValueError, match=r"^closure: grads\[0\] " + ALIAS.format(0)):
        sam.step(closure)
    assert len(calls) == 2
    assert all(np.array_equal(p, q) for p, q in zip(ps, w))  # (the very bits of w)
    assert sam.base.state_dict()["state"] == {}


def test_second_step_refuses_an_aliased_gradient_before_it_writes_then_steps():
    sam, ps = _sam()
    rng = np.random.default_rng(3)
    g1 = [rng.standard_normal(p.shape) for p in ps]
    sam.first_step(g1)
    ascent = [p.copy() for p in ps]
    with pytest.raises(ValueError, match=r"^grads\[0\] " + ALIAS.format(0)):
        sam.second_step([ps[0], ps[1].copy()])
    # nothing written: still at the ascent point (and so the gradient passed), still perturbed
    assert all(np.array_equal(p, q) for p, q in zip(ps, ascent))
    g2 = [a.copy() for a in ascent]
    sam.second_step(g2)  # (the same values, now in arrays of their own)

    ref_ps = [p.copy() for p in ps]  # a plain Adam from w with g2 gives the same bits
    sam2, qs = _sam()
    sam2.base.step(g2)
    assert all(np.array_equal(p, q) for p, q in zip(ref_ps, qs))


def test_first_step_names_an_aliased_gradient_and_its_param_by_place():
    sam, ps = _sam()
    w = [p.copy() for p in ps]
    with pytest.raises(ValueError, match=r"^grads\[1\] " + ALIAS.format(1)):
        sam.first_step([ps[0].copy(), ps[1][:]])
    assert all(np.array_equal(p, q) for p, q in zip(ps, w))
    sam.first_step([ps[0].copy(), ps[1].copy()])  # (not perturbed by the refused call)


def test_gradients_beside_the_params_in_one_buffer_are_taken():
    n = 1023
    buf = np.random.default_rng(0).standard_normal(2 * n)
    p, g = buf[:n], buf[n:]
    w, gv = p.copy(), g.copy()
    sam = O.SAM(O.SGD([p], lr=0.1), rho=0.2)
    sam.first_step([g])
    np.testing.assert_allclose(p, w + 0.2 * gv / (np.linalg.norm(gv) + 1e-12), rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(g, gv)
