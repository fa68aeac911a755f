"""A copied or unpickled optimizer knows its own params, not the original's.

``Optimizer.state`` finds a param given as a torch tensor (whose NumPy view the optimizer holds)
through a map from ``id(param)``; the map was copied as it was -- the ids of the original
objects -- so ``copy.deepcopy(opt).state`` answered for the original's tensors (``w in
copy.state`` was True, where torch's copy says False) and not for its own, and an unpickled
optimizer matched whatever object of the new process had one of those ids."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from optkern import optim

torch = pytest.importorskip("torch")


def _stepped(params):
    opt = optim.Adam(params, lr=0.1)
    opt.step([np.ones(p.shape, np.float32) for p in params])
    return opt


@pytest.mark.parametrize("clone", [copy.deepcopy, lambda o: pickle.loads(pickle.dumps(o))])
def test_a_copy_answers_for_its_own_params_only(clone):
    params = [torch.ones(3), torch.ones(2)]
    opt = _stepped(params)
    twin = clone(opt)
    assert all(p not in twin.state for p in params)
    assert all(p in opt.state for p in params)
    own = twin._given  # (the copy's own tensors, as given to it)
    assert all(p in twin.state for p in own)
    assert all(p in twin.state for p in twin.param_groups[0]["params"])
    np.testing.assert_array_equal(twin.state[own[1]]["exp_avg"], opt.state[params[1]]["exp_avg"])


def test_torch_agrees_that_the_original_param_is_not_the_copy_s():
    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([w])
    w.grad = torch.ones(3)
    opt.step()
    assert w not in copy.deepcopy(opt).state
