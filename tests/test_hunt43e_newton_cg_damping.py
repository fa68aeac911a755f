"""Hunt 43e: ``NewtonCG``'s ``damping`` must lie within ``[min_damping, max_damping]``, the bounds the
Levenberg-Marquardt rule clamps it to. One outside them was taken, and the clamp then moved it against
the rule's decision: a damping of 1e-12 (min 1e-8) after a step whose model was good (rho > 3/4, a
"drop") came back as 1e-8, ten thousand times larger; one above max_damping came back lower after a
rejected step (a "boost"). Now refused naming ``damping`` -- at construction, in a loaded group and
when set between steps (before the closure runs, nothing changed) -- as ``min_damping > max_damping``
already was. optkern.torch.NewtonCG checks its group with the same rule."""

import numpy as np
import pytest
import torch

import optkern.torch as ot
from optkern import hessian, optim


def _problem():
    x = np.array([3.0, -2.0])

    def closure():
        return float((x**4).sum()), 4 * x**3

    # the exact Hessian at x: the model is good, rho > 3/4 (the rule drops the damping)
    return x, closure, hessian.as_operator(np.diag(12 * x**2))


@pytest.mark.parametrize(
    "kw",
    [dict(damping=1e-12), dict(damping=1e9), dict(damping=1.0, min_damping=2.0), dict(damping=1.0, max_damping=0.5)],
    ids=["below-default-min", "above-default-max", "below-min", "above-max"],
)
def test_a_damping_outside_its_bounds_is_refused_naming_it(kw):
    x, _, op = _problem()
    with pytest.raises(ValueError, match=r"^damping: .* is outside \[min_damping, max_damping\]"):
        optim.NewtonCG([x], op, **kw)
    with pytest.raises(ValueError, match=r"^damping: .* is outside \[min_damping, max_damping\]"):
        ot.NewtonCG([torch.zeros(2, dtype=torch.float64)], op, **kw)


def test_min_above_max_still_named_as_before():
    x, _, op = _problem()
    with pytest.raises(ValueError, match=r"^min_damping, max_damping: min_damping must be <= max_damping"):
        optim.NewtonCG([x], op, min_damping=2.0, max_damping=1.0)


def test_the_bounds_themselves_are_taken_and_a_drop_never_raises_the_damping():
    x, closure, op = _problem()
    opt = optim.NewtonCG([x], op, damping=1e-8, min_damping=1e-8)
    opt.step(closure)
    assert opt.last["rho"] > 0.75 and opt.param_groups[0]["damping"] == 1e-8


def test_set_between_steps_refused_before_the_closure_runs_nothing_changed():
    x, closure, op = _problem()
    opt = optim.NewtonCG([x], op)
    opt.step(closure)
    before, state = x.copy(), opt.state_dict()
    opt.param_groups[0]["min_damping"] = 10.0 * opt.param_groups[0]["damping"]
    calls = []
    with pytest.raises(ValueError, match=r"^damping: .* is outside \[min_damping, max_damping\]"):
        opt.step(lambda: calls.append(1) or closure())
    assert not calls and np.array_equal(x, before)
    assert opt.num_grad_evals == state["state"][0]["num_grad_evals"]


def test_a_checkpoint_with_its_damping_outside_the_bounds_is_refused_nothing_loaded():
    x, closure, op = _problem()
    opt = optim.NewtonCG([x], op)
    opt.step(closure)
    sd = opt.state_dict()
    sd["param_groups"][0]["damping"] = 1e-12
    fresh = optim.NewtonCG([x], op, damping=0.5)
    where = r"^state_dict\['param_groups'\]\[0\]\['damping'\]: .* is outside"
    with pytest.raises(ValueError, match=where):
        fresh.load_state_dict(sd)
    assert fresh.param_groups[0]["damping"] == 0.5 and fresh.num_grad_evals == 0
