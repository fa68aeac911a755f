"""SGD's ``momentum_form`` and the momentum buffers it was written in (hunt 38f).

The PyTorch form keeps ``b`` (``p <- p - lr b``), the textbook form ``v = -lr b`` (``p <- p + v``):
opposite signs. A buffer read in the other form steps the params uphill. Changing
``param_groups[i]['momentum_form']`` between steps with buffers held, or loading a state dict
without ``momentum_form`` (PyTorch's, whose buffers are in PyTorch's form) into a textbook SGD,
used to do exactly that silently (params at -0.561 jumped to +1.778 on a gradient of +1)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import optkern.optim as O


def _stepped(form: str, n: int = 3):
    p = np.zeros(3)
    opt = O.SGD([p], lr=0.1, momentum=0.9, momentum_form=form)
    for _ in range(n):
        opt.step([np.ones(3)])
    return opt, p


@pytest.mark.parametrize(("old", "new"), [("pytorch", "textbook"), ("textbook", "pytorch")])
def test_form_change_with_buffers_raises_and_writes_nothing(old, new):
    opt, p = _stepped(old)
    before = p.copy(), opt.state[p]["momentum_buffer"].copy()
    opt.param_groups[0]["momentum_form"] = new
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['momentum_form'\]"):
        opt.step([np.ones(3)])
    assert np.array_equal(p, before[0])
    assert np.array_equal(opt.state[p]["momentum_buffer"], before[1])
    opt.param_groups[0]["momentum_form"] = old  # back: steps on as before
    opt.step([np.ones(3)])
    assert (p < before[0]).all()


def test_form_change_without_buffers_is_fine():
    p = np.zeros(3)
    opt = O.SGD([p], lr=0.1)  # no momentum: no buffers
    opt.step([np.ones(3)])
    opt.param_groups[0]["momentum_form"] = "textbook"
    opt.param_groups[0]["momentum"] = 0.9
    opt.step([np.ones(3)])  # buffers start in the textbook form
    np.testing.assert_allclose(p, -0.2)


def test_form_change_while_momentum_off_then_on_raises():
    opt, p = _stepped("pytorch")
    g = opt.param_groups[0]
    g["momentum"] = 0.0
    g["momentum_form"] = "textbook"
    opt.step([np.ones(3)])  # no buffer read: fine
    before = p.copy()
    g["momentum"] = 0.9
    with pytest.raises(ValueError, match="momentum_form"):
        opt.step([np.ones(3)])
    assert np.array_equal(p, before)


def test_torch_state_dict_into_textbook_sgd_is_not_read_as_v():
    """torch's state dict has no momentum_form: its buffers are b, never v = -lr b."""
    t = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    topt = torch.optim.SGD([t], lr=0.1, momentum=0.9)
    for _ in range(3):
        t.grad = torch.ones(3, dtype=torch.float64)
        topt.step()
    sd = topt.state_dict()
    assert "momentum_form" not in sd["param_groups"][0]
    p = t.detach().numpy().copy()
    opt = O.SGD([p], lr=0.1, momentum=0.9, momentum_form="textbook")
    opt.load_state_dict(sd)
    before = p.copy()
    with pytest.raises(ValueError, match="momentum_form"):
        opt.step([np.ones(3)])
    assert np.array_equal(p, before)
    opt.param_groups[0]["momentum_form"] = "pytorch"  # the buffers' own form: continues as torch
    opt.step([np.ones(3)])
    t.grad = torch.ones(3, dtype=torch.float64)
    topt.step()
    np.testing.assert_allclose(p, t.detach().numpy(), rtol=1e-15)


@pytest.mark.parametrize("form", ["pytorch", "textbook"])
def test_own_state_dict_round_trip_keeps_the_form(form):
    opt, p = _stepped(form)
    sd = copy.deepcopy(opt.state_dict())
    q = p.copy()
    other = "textbook" if form == "pytorch" else "pytorch"
    opt2 = O.SGD([q], lr=0.1, momentum=0.9, momentum_form=other)
    opt2.load_state_dict(sd)  # the saved group's form comes with its buffers
    assert opt2.param_groups[0]["momentum_form"] == form
    opt.step([np.ones(3)])
    opt2.step([np.ones(3)])
    assert np.array_equal(p, q)


def test_form_kept_through_pickle_and_skipped_params():
    p, q = np.zeros(3), np.zeros(2)
    opt = O.SGD([p, q], lr=0.1, momentum=0.9, momentum_form="textbook")
    opt.step([np.ones(3), np.ones(2)])
    opt.step([None, np.ones(2)])  # the runs split and rejoin
    opt.step([np.ones(3), np.ones(2)])
    opt2 = copy.deepcopy(opt)
    for o in (opt, opt2):
        o.param_groups[0]["momentum_form"] = "pytorch"
        with pytest.raises(ValueError, match="momentum_form"):
            o.step([np.ones(3), np.ones(2)])
