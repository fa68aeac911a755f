"""A torch tensor put in a group's params list in place (``opt.param_groups[0]['params'][0] = t``) is
treated as a tensor given to the optimizer (hunt 49d).

``_check_replaced`` stepped it through a zero-copy view, but only tensors given to the constructor
or ``add_param_group`` were followed and version-bumped: a graph saved before the step ran its
backward on the stepped values silently (torch's in-place step makes it raise), ``t.data = ...``
to new memory was not followed (the step wrote memory the tensor no longer showed), and ``t in
opt.state`` was False. The tensor it replaced is followed and bumped no more.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

import optkern.optim as O

torch = pytest.importorskip("torch")


def _grads():
    return [np.ones(3, np.float32), np.ones(2, np.float32)]


def _opt():
    ps = [torch.zeros(3), torch.zeros(2)]
    return O.Adam(ps, lr=0.5), ps


def test_a_tensor_put_in_place_bumps_its_version():
    opt, _ = _opt()
    w = torch.nn.Parameter(torch.ones(3))
    opt.param_groups[0]["params"][0] = w
    loss = (w * w).sum()  # (saves w for its backward)
    opt.step(_grads())
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_a_tensor_put_in_place_is_followed_to_new_memory():
    opt, ps = _opt()
    ref = torch.nn.Parameter(torch.ones(3))
    ref_opt = torch.optim.Adam([ref], lr=0.5)
    t = torch.ones(3)
    opt.param_groups[0]["params"][0] = t
    for k in range(3):  # (the first step with its first memory, then each move followed)
        if k:
            t.data = t.data.clone()
            ref.data = ref.data.clone()
        opt.step(_grads())
        ref.grad = torch.ones(3)
        ref_opt.step()
        torch.testing.assert_close(t, ref.detach(), rtol=0, atol=1e-6)
    assert t in opt.state and opt.state[t]["step"] == 3


def test_the_tensor_replaced_is_neither_followed_nor_bumped():
    opt, ps = _opt()
    opt.step(_grads())
    opt.param_groups[0]["params"][0] = np.zeros(3, np.float32)
    old = ps[0].clone()
    version = ps[0]._version
    opt.step(_grads())
    assert ps[0]._version == version and torch.equal(ps[0], old)
    assert ps[1] in opt.state and opt._given_tensors == [ps[1]]


def test_a_copy_steps_its_own_arrays():
    opt, _ = _opt()
    t = torch.ones(3)
    opt.param_groups[0]["params"][0] = t
    opt.step(_grads())
    before = t.clone()
    copy.deepcopy(opt).step(_grads())
    assert torch.equal(t, before)
