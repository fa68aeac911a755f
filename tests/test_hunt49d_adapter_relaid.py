"""An optkern.torch optimizer whose param is laid out anew at the same address, with the same shape
(``p.data = p.data.t()`` for a square matrix), steps it as torch.optim does (hunt 49d).

The adapter's view cache was keyed by the data pointers of a run's tensors (``_data_key``) and the
grads' shapes: a transposed square param kept its row-major view. With autograd's grad (laid out
like its param) the step raised "grad: expected shape (3, 3), got (9,)" of a (3, 3) grad; with a
row-major grad it stepped each element with another's grad, silently. The key now holds each
tensor's dtype, shape and strides too (``_cpu.data_layouts``): the views are made anew.
"""

from __future__ import annotations

import pytest

import optkern.torch as OT

torch = pytest.importorskip("torch")


def test_a_param_transposed_in_place_is_stepped_as_torch_steps_it():
    torch.manual_seed(0)
    w = torch.randn(3, 3)
    p = torch.nn.Parameter(torch.randn(3, 3))
    q = torch.nn.Parameter(p.detach().clone())
    for param, opt in ((p, OT.SGD([p], lr=0.1)), (q, torch.optim.SGD([q], lr=0.1))):
        for k in range(4):
            if k in (1, 3):  # (transposed, then back)
                param.data = param.data.t()
            (param * w).sum().backward()  # (autograd's grad: laid out like its param)
            opt.step()
            opt.zero_grad()
    assert p.stride() == q.stride()
    torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cls,hp", [("SGD", {"momentum": 0.9}), ("Adam", {}), ("RMSprop", {"centered": True})])
def test_a_param_transposed_in_place_with_row_major_state_steps_as_torch(cls, hp):
    """Its state is laid out as the param was (the step pairs them in memory order): put in the
    param's layout in place and stepped as torch.optim steps it (hunt 53d; refused by name before,
    not stepped against a stale view)."""
    torch.manual_seed(0)
    w = torch.randn(3, 3)
    p = torch.nn.Parameter(torch.randn(3, 3))
    q = torch.nn.Parameter(p.detach().clone())
    for param, opt in ((p, getattr(OT, cls)([p], lr=0.1, **hp)), (q, getattr(torch.optim, cls)([q], lr=0.1, **hp))):
        (param * w).sum().backward()
        opt.step()
        opt.zero_grad()
        param.data = param.data.t()
        (param * w).sum().backward()
        opt.step()
    torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-6, atol=1e-6)


def test_a_row_major_grad_of_a_transposed_param_is_read_by_index():
    """Stepped as torch.optim steps it (hunt 53d; refused by name before): each element with its own grad."""
    p = torch.nn.Parameter(torch.arange(4.0).reshape(2, 2))
    opt = OT.SGD([p], lr=1.0)
    p.grad = torch.ones(2, 2)
    opt.step()
    p.data = p.data.t()
    p.grad = torch.tensor([[0.0, 1.0], [0.0, 0.0]])  # (row-major: not laid out like its param)
    before = p.detach().clone()
    opt.step()
    assert torch.equal(p.detach(), before - p.grad)
