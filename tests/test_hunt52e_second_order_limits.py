"""L-BFGS's and Newton-CG's integer limits held to int64, by name (hunt 52e).

``LBFGS(max_iter=2**70, history_size=2**70, max_eval=2**70)`` and ``NewtonCG(max_cg_iter=2**70)``
were stored: the native calls count the history in int64 and torch's checkpoints hold int64, and
``state_dict`` padded ``al`` towards the history size. Refused now, naming the argument (inside a
state dict's group too), before anything is stored or stepped; the loaded counters already were
(``_lbfgs_state.count``). ``max_eval``'s default (``max_iter * 5 // 4``, torch's) is held to int64.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from optkern import hessian, optim

TOP = 2**63 - 1


def _quadratic(n: int = 5):
    p = np.zeros(n)
    b = np.arange(1.0, n + 1)

    def closure():
        return float(0.5 * p @ p - b @ p), [p - b]

    return p, closure


@pytest.mark.parametrize("key", ["max_iter", "max_eval", "history_size"])
@pytest.mark.parametrize("bad", [TOP + 1, 2**70])
def test_lbfgs_limits_past_int64_are_refused(key, bad):
    p, _ = _quadratic()
    with pytest.raises(ValueError, match=rf"^{key}: must be <= {TOP}, got {bad}$"):
        optim.LBFGS([p], **{key: bad})


@pytest.mark.parametrize("key", ["max_iter", "max_eval", "history_size"])
def test_lbfgs_limits_set_between_steps_are_refused_before_a_step(key):
    p, closure = _quadratic()
    opt = optim.LBFGS([p], max_iter=2)
    opt.step(closure)
    before, state = p.copy(), copy.deepcopy(opt.state_dict())
    opt.param_groups[0][key] = 2**70
    with pytest.raises(ValueError, match=rf"^{key}: must be <= {TOP}, got {2**70}$"):
        opt.step(closure)
    assert np.array_equal(p, before)
    opt.param_groups[0][key] = state["param_groups"][0][key]
    sd = copy.deepcopy(state)
    sd["param_groups"][0][key] = 2**70
    with pytest.raises(ValueError, match=rf"\[{key!r}\]: must be <= {TOP}, got {2**70}$"):
        opt.load_state_dict(sd)
    assert opt.param_groups[0][key] == state["param_groups"][0][key]


def test_lbfgs_int64_limits_run():
    """The largest limits run (a step stops at convergence, not at them); max_eval's default is
    max_iter * 5 // 4 held to int64."""
    p, closure = _quadratic()
    opt = optim.LBFGS([p], max_iter=TOP, history_size=TOP, tolerance_grad=1e-9)
    assert opt.param_groups[0]["max_eval"] == TOP
    opt.step(closure)
    np.testing.assert_allclose(p, np.arange(1.0, 6.0), rtol=1e-6)
    assert optim.LBFGS([p], max_iter=8).param_groups[0]["max_eval"] == 10  # (torch's default)


@pytest.mark.parametrize("bad", [TOP + 1, 2**70])
def test_newton_cg_max_cg_iter_past_int64_is_refused(bad):
    x = np.zeros(4)
    A = hessian.as_operator(np.diag([1.0, 2.0, 3.0, 4.0]))
    with pytest.raises(ValueError, match=rf"^max_cg_iter: must be <= {TOP}, got {bad}$"):
        optim.NewtonCG([x], A, max_cg_iter=bad)
    opt = optim.NewtonCG([x], A, max_cg_iter=TOP)
    sd = opt.state_dict()
    sd["param_groups"][0]["max_cg_iter"] = bad
    with pytest.raises(ValueError, match=rf"\['max_cg_iter'\]: must be <= {TOP}, got {bad}$"):
        opt.load_state_dict(sd)
    assert opt.param_groups[0]["max_cg_iter"] == TOP


def test_torch_lbfgs_takes_the_same_limits():
    import torch

    from optkern.torch import LBFGS

    w = torch.zeros(3, requires_grad=True)
    assert LBFGS([w], max_iter=TOP).param_groups[0]["max_eval"] == TOP
    with pytest.raises(ValueError, match=rf"^history_size: must be <= {TOP}, got {2**70}$"):
        LBFGS([w], history_size=2**70)
