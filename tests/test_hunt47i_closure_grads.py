"""``Optimizer.step(closure=...)`` of the first-order optimizers names the closure's gradients as
``closure: grads[i]``, as LBFGS, NewtonCG, SAM and the distributed closure steps do.

A closure returning a float64 gradient for a float32 param, too few gradients, or the param itself
as its gradient was refused with "grads[0]: expected float32, got float64" -- naming ``grads``, an
argument the call did not pass. Nothing is written (params and state as before)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from optkern import optim

FIRST_ORDER = ["SGD", "Adagrad", "AdagradNorm", "RMSprop", "Adadelta", "Adam", "AdamW", "NAdam"]


def _bad_grads(params):
    yield "float64", [np.ones(p.size) for p in params], TypeError, r"^closure: grads\[0\]: expected float32"
    yield "too few", [np.ones(params[0].size, np.float32)], ValueError, r"^closure: grads: expected 2 arrays"
    yield "aliased", [params[0], np.ones(params[1].size, np.float32)], ValueError, r"^closure: grads\[0\] shares memory"
    yield "shape", [np.ones((1, 5), np.float32), params[1] * 0], ValueError, r"^closure: grads\[0\]"


@pytest.mark.parametrize("name", FIRST_ORDER)
def test_a_closures_bad_grads_are_named_as_the_closures(name):
    params = [np.linspace(-1, 1, 5).astype(np.float32), np.linspace(0, 1, 3).astype(np.float32)]
    opt = getattr(optim, name)([{"params": params[:1]}, {"params": params[1:], "lr": 0.05}], lr=0.1)
    opt.step([np.ones(p.size, np.float32) for p in params])
    for what, grads, exc, match in _bad_grads(params):
        before = ([p.copy() for p in params], copy.deepcopy(opt.state_dict()["state"]))
        with pytest.raises(exc, match=match):
            opt.step(closure=lambda grads=grads: (1.0, grads))
        assert all(np.array_equal(a, b) for a, b in zip(before[0], params)), what
        after = opt.state_dict()["state"]
        for k, entry in before[1].items():
            for n, v in entry.items():
                assert np.array_equal(np.asarray(v), np.asarray(after[k][n])), (what, k, n)
    # passed as grads=, the same arrays are named as grads (no closure)
    with pytest.raises(TypeError, match=r"^grads\[0\]: expected float32"):
        opt.step([np.ones(p.size) for p in params])
    assert opt.step(closure=lambda: (2.5, [np.ones(p.size, np.float32) for p in params])) == 2.5
