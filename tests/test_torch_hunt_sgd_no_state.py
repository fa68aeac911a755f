"""optkern.torch.SGD without momentum keeps no per-param state, as torch.optim.SGD keeps none:
``opt.state`` stays empty and ``state_dict()['state']`` is ``{}`` (it held an empty dict per param
stepped, so code testing ``if opt.state`` or comparing checkpoints with torch's saw a difference).
Momentum switched on later still makes its buffers from the next grad, as torch does."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

import optkern.torch as ot  # noqa: E402

torch.set_num_threads(1)


def _params():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(5, 3, generator=g, dtype=torch.float64).requires_grad_() for _ in range(2)]


def _grads(ps, k):
    g = torch.Generator().manual_seed(10 + k)
    for p in ps:
        p.grad = torch.randn(p.shape, generator=g, dtype=torch.float64)


def _run(mod, kw, momentum_from=None, steps=4):
    ps = _params()
    opt = mod.SGD([{"params": ps[:1]}, {"params": ps[1:], "lr": 0.02}], **kw)
    for k in range(steps):
        if k == momentum_from:
            opt.param_groups[0]["momentum"] = 0.9
        _grads(ps, k)
        opt.step()
    return ps, opt


@pytest.mark.parametrize("kw", [dict(lr=0.1), dict(lr=0.1, weight_decay=0.01, maximize=True)])
def test_plain_sgd_keeps_no_state_like_torch(kw):
    (ref, ref_opt), (mine, opt) = _run(torch.optim, kw), _run(ot, kw)
    assert all(torch.equal(a, b) for a, b in zip(ref, mine))
    assert len(ref_opt.state) == 0 and len(opt.state) == 0
    assert opt.state_dict()["state"] == ref_opt.state_dict()["state"] == {}
    copy.deepcopy(opt).step()  # (still steps once copied: nothing cached refers to a state dict)


def test_momentum_switched_on_later_makes_buffers_like_torch():
    (ref, ref_opt), (mine, opt) = _run(torch.optim, dict(lr=0.1), 2), _run(ot, dict(lr=0.1), 2)
    assert all(torch.equal(a, b) for a, b in zip(ref, mine))
    assert len(ref_opt.state) == len(opt.state) == 1  # (group 0's param: its buffer)
    assert torch.equal(ref_opt.state[ref[0]]["momentum_buffer"], opt.state[mine[0]]["momentum_buffer"])
