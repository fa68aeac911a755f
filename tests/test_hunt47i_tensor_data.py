"""A torch tensor param whose memory is replaced (``tensor.data = ...``, ``tensor.set_(...)``) is
stepped in its new memory, as torch.optim steps what the tensor holds.

The optimizers step torch tensors through NumPy views of their memory, made when the params were
added. After ``p.data = new`` the step wrote the old memory, which ``p`` no longer showed: ``p``
never moved again, silently, and every later step was lost. Now each step compares the tensors'
addresses with their views' and views a moved tensor again, checked as a param replaced in place.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

import optkern.optim as O
from torch_ieee_sqrt import torch_optim_stepper

torch = pytest.importorskip("torch")

CASES = [("SGD", dict(lr=0.1, momentum=0.9)), ("Adam", dict(lr=0.1, amsgrad=True)), ("RMSprop", dict(lr=0.01))]


def _run(make, swap):
    rng = np.random.default_rng(0)
    ps = [torch.tensor(rng.standard_normal(n).astype(np.float32)) for n in (7, 3)]
    opt = make(ps)
    grads = [[rng.standard_normal(p.numel()).astype(np.float32) for p in ps] for _ in range(4)]
    for s, gs in enumerate(grads):
        if s == 2:
            swap(ps[0])
        opt(gs)
    return [p.numpy().copy() for p in ps]


@pytest.mark.parametrize("name,hp", CASES)
@pytest.mark.parametrize("how", ["data", "set_"])
def test_a_tensor_given_new_memory_is_stepped_there_as_torch_optim_steps_it(name, hp, how):
    def swap(p):
        new = torch.full_like(p, 0.25)
        if how == "data":
            p.data = new
        else:
            p.set_(new)

    def ours(ps):
        opt = getattr(O, name)(ps, **hp)
        return lambda gs: opt.step([g.copy() for g in gs])

    got = _run(ours, swap)
    want = _run(lambda ps: torch_optim_stepper(name, ps, **hp), swap)
    assert not np.array_equal(got[0], np.full(7, 0.25, np.float32))  # (it moved after the swap)
    for a, b in zip(got, want):
        assert np.array_equal(a, b), (a, b)


def test_a_slot_replaced_by_the_caller_stays_and_a_moved_tensor_of_another_dtype_is_refused():
    p = torch.zeros(4)
    opt = O.Adam([p], lr=0.1)
    opt.step([np.ones(4, np.float32)])
    mine = np.zeros(4, np.float32)
    opt.param_groups[0]["params"][0] = mine  # (the caller's array in the tensor's slot)
    p.data = torch.full((4,), 3.0)
    opt.step([np.ones(4, np.float32)])
    assert opt.param_groups[0]["params"][0] is mine and mine[0] != 0 and float(p[0]) == 3.0

    q = torch.zeros(4)
    opt = O.Adam([q], lr=0.1)
    opt.step([np.ones(4, np.float32)])
    state = copy.deepcopy(opt.state_dict()["state"])
    q.data = torch.zeros(4, dtype=torch.float64)
    with pytest.raises((TypeError, ValueError)):
        opt.step([np.ones(4, np.float32)])
    assert not q.any()
    for k, v in opt.state_dict()["state"][0].items():
        assert np.array_equal(np.asarray(v), np.asarray(state[0][k])), k


def test_copies_and_pickles_step_their_own_arrays():
    p = torch.zeros(4)
    opt = O.SGD([p], lr=0.1)
    twin = copy.deepcopy(opt)
    p.data = torch.ones(4)
    opt.step([np.ones(4, np.float32)])
    twin.step([np.ones(4, np.float32)])
    assert np.allclose(p.numpy(), 0.9)
    shallow = copy.copy(opt)
    shallow.step([np.ones(4, np.float32)])
    assert np.allclose(p.numpy(), 0.8)
