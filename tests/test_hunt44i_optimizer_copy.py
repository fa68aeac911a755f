"""A copied optimizer (``copy.deepcopy``, pickle) over torch tensors steps its copied tensors.

The copy held copies of the tensors (``_given``) and, apart from them, copies of their NumPy
views (the arrays it steps): its steps showed in no tensor, and the version bumps landed on
tensors they never wrote. A model and its optimizer deep-copied together (one ``deepcopy``
call, the usual snapshot) then trained the copied model's parameters not at all."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from optkern import optim as O

torch = pytest.importorskip("torch")


def _copied(how, tree):
    return copy.deepcopy(tree) if how == "deepcopy" else pickle.loads(pickle.dumps(tree))


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_copy_steps_its_own_tensors(how, dtype):
    model = torch.nn.Linear(3, 2).to(dtype)
    params = list(model.parameters())
    opt = O.Adam(params, lr=0.1)
    grads = [np.ones(tuple(p.shape), p.detach().numpy().dtype) for p in params]
    opt.step(grads)
    before = [p.detach().clone() for p in params]
    c = _copied(how, {"model": model, "opt": opt})
    cparams = list(c["model"].parameters())
    assert all(isinstance(p, torch.nn.Parameter) and p.requires_grad for p in cparams)
    versions = [p._version for p in cparams]
    c["opt"].step(grads)
    opt.step(grads)  # (the original steps alike: the copy's tensors end where the original's do)
    for p, q, b, v in zip(cparams, params, before, versions):
        assert not torch.equal(p.detach(), b)  # (unchanged before the fix)
        assert torch.equal(p.detach(), q.detach())
        assert p._version > v
    # and the copy's params are its model's: a step of the original leaves them alone
    after = [p.detach().clone() for p in cparams]
    opt.step(grads)
    assert all(torch.equal(p.detach(), a) for p, a in zip(cparams, after))


def test_a_shallow_copy_keeps_the_same_tensors():
    w = torch.zeros(3)
    opt = O.SGD([w], lr=0.5)
    c = copy.copy(opt)
    c.step([np.ones(3, np.float32)])
    assert w.tolist() == [-0.5, -0.5, -0.5]
