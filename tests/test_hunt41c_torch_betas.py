"""optkern.torch takes ``betas`` as one two-element tensor, as torch.optim's Adam, AdamW and NAdam
do (2.13: ``betas[0]``, ``betas[1]`` read from it), and steps as torch does with it; it refused it
as "expected a pair of numbers"."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")

from torch_ieee_sqrt import ieee_sqrt  # noqa: E402 (after the torch skip)


@pytest.mark.parametrize("name", ["Adam", "AdamW", "NAdam"])
def test_betas_as_one_tensor_like_torch(name):
    # (torch computes the step scalars from the tensors in tensor ops: ours follow torch's, not the
    # values' double formulas)
    base = torch.linspace(-1.0, 1.0, 7, dtype=torch.float64)
    a, b = base.clone().requires_grad_(), base.clone().requires_grad_()
    betas = torch.tensor([0.5, 0.75], dtype=torch.float64)
    oa = getattr(ot, name)([a], lr=0.1, betas=betas)
    ob = getattr(torch.optim, name)([b], lr=0.1, betas=betas, foreach=False)
    for k in range(4):
        g = torch.cos(base * (k + 1))
        a.grad, b.grad = g.clone(), g.clone()
        oa.step()
        with ieee_sqrt():
            ob.step()
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert oa.param_groups[0]["betas"] is betas  # (the group keeps the user's tensor)


def test_betas_tensor_of_another_size_named():
    p = torch.ones(3, dtype=torch.float64, requires_grad=True)
    for bad in (torch.tensor([0.9, 0.99, 0.999]), torch.tensor([[0.9, 0.999]])):
        with pytest.raises((TypeError, ValueError), match=r"betas"):
            ot.Adam([p], betas=bad)
