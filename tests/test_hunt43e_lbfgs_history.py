"""Hunt 43e: an L-BFGS checkpoint holding more pairs than its group's ``history_size``. Lowering
``history_size`` between steps leaves the history longer until the next step drops the oldest pairs
(``LBFGS._trim``); ``state_dict()`` then saved them all beside the smaller ``history_size``, and
``load_state_dict`` refused it ("holds 5 pairs, more than history_size = 2"): the optimizer's own
checkpoint did not load, not even into itself, nor optkern.torch.LBFGS's into a fresh one, nor
torch.optim.LBFGS's (whose step never drops more than one pair). Now such a checkpoint loads, and the
next step drops the oldest pairs first, as the optimizer that saved it does: the run continues
bit for bit."""

import numpy as np
import pytest
import torch

import optkern.torch as ot
from optkern import optim


def _problem(x):
    def closure():
        return float((x**4).sum() + (x**2).sum()), 4 * x**3 + 2 * x

    return closure


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_the_own_checkpoint_after_a_lowered_history_size_loads_and_continues_alike(line_search_fn):
    x = np.array([1.5, -0.5, 2.0])
    opt = optim.LBFGS([x], history_size=10, max_iter=6, line_search_fn=line_search_fn)
    opt.step(_problem(x))
    assert len(opt._S) > 2
    opt.param_groups[0]["history_size"] = 2
    sd = opt.state_dict()
    y = x.copy()
    fresh = optim.LBFGS([y], history_size=7, line_search_fn=line_search_fn)
    fresh.load_state_dict(sd)
    opt.load_state_dict(sd)  # (into itself: refused as well)
    for _ in range(2):
        opt.step(_problem(x))
        fresh.step(_problem(y))
        assert np.array_equal(x, y)
        assert len(opt._S) <= 2 and len(fresh._S) == len(opt._S)
    assert fresh.state_dict()["state"][0]["n_iter"] == opt.state_dict()["state"][0]["n_iter"]


def test_optkern_torch_checkpoint_after_a_lowered_history_size_loads():
    def make(values):
        p = torch.tensor(values, dtype=torch.float64, requires_grad=True)
        opt = ot.LBFGS([p], history_size=10, max_iter=6)

        def closure():
            opt.zero_grad()
            loss = (p**4).sum() + (p**2).sum()
            loss.backward()
            return loss

        return p, opt, closure

    p, opt, closure = make([1.5, -0.5, 2.0])
    opt.step(closure)
    opt.param_groups[0]["history_size"] = 2
    sd = opt.state_dict()
    assert len(sd["state"][0]["old_dirs"]) > 2
    q, fresh, closure_q = make(p.detach().tolist())
    fresh.load_state_dict(sd)
    opt.step(closure)
    fresh.step(closure_q)
    assert torch.equal(p, q)


def test_torchs_own_longer_history_loads():
    """torch.optim.LBFGS keeps every pair once history_size is lowered (it drops one only when the
    history is exactly history_size long): its checkpoint loads, the oldest pairs dropped at the step."""
    p = torch.tensor([1.5, -0.5, 2.0], dtype=torch.float64, requires_grad=True)
    ref = torch.optim.LBFGS([p], history_size=10, max_iter=6)

    def closure():
        ref.zero_grad()
        loss = (p**4).sum() + (p**2).sum()
        loss.backward()
        return loss

    ref.step(closure)
    ref.param_groups[0]["history_size"] = 2
    ref.step(closure)
    sd = ref.state_dict()
    assert len(sd["state"][0]["old_dirs"]) > 2
    q = p.detach().clone().requires_grad_(True)
    ours = ot.LBFGS([q], history_size=2)
    ours.load_state_dict(sd)

    def closure_q():
        ours.zero_grad()
        loss = (q**4).sum() + (q**2).sum()
        loss.backward()
        return loss

    def value(t):
        return float(((t**4).sum() + (t**2).sum()).detach())

    start = value(q)
    ours.step(closure_q)
    assert len(ours.state[q]["old_dirs"]) <= 2
    assert value(q) <= start
