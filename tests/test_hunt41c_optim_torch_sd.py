"""optkern.optim loads a torch optimizer's state dict whose ``lr`` / ``betas`` are tensors (torch 2.x
takes a tensor lr and tensor betas, and saves them as given): it refused the group with "lr: expected
a real number, got Tensor". Read as the numbers they hold, as the state tensors are read."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import optkern.optim as oo

torch = pytest.importorskip("torch")


@pytest.mark.parametrize(
    "betas",
    [(0.5, 0.75), "pair", "one"],
    ids=["float-betas", "tensor-pair", "one-tensor"],
)
def test_torch_state_dict_with_tensor_lr_and_betas_loads_and_steps_like_torch(betas):
    if betas == "pair":
        betas = (torch.tensor(0.5, dtype=torch.float64), torch.tensor(0.75, dtype=torch.float64))
    elif betas == "one":
        betas = torch.tensor([0.5, 0.75], dtype=torch.float64)
    p = torch.linspace(-1, 1, 5, dtype=torch.float64).requires_grad_()
    t = torch.optim.Adam([p], lr=torch.tensor(0.125, dtype=torch.float64), betas=betas)
    p.grad = torch.cos(p.detach())
    t.step()
    ours = p.detach().numpy().copy()
    opt = oo.Adam([ours])
    sd = copy.deepcopy(t.state_dict())
    opt.load_state_dict(sd)
    group = opt.param_groups[0]
    assert type(group["lr"]) is float and group["lr"] == 0.125
    assert tuple(map(float, group["betas"])) == (0.5, 0.75)
    for k in range(3):
        g = np.sin(ours * (k + 2))
        p.grad = torch.tensor(g)
        t.step()
        opt.step([g])
    np.testing.assert_allclose(ours, p.detach().numpy(), rtol=0, atol=1e-15)


def test_tensor_lr_of_two_elements_still_named():
    p = torch.ones(3, dtype=torch.float64, requires_grad=True)
    t = torch.optim.SGD([p], lr=0.1)
    p.grad = torch.ones(3, dtype=torch.float64)
    t.step()
    sd = copy.deepcopy(t.state_dict())
    sd["param_groups"][0]["lr"] = torch.tensor([0.1, 0.2])
    opt = oo.SGD([np.ones(3)], lr=0.1)
    with pytest.raises(TypeError, match=r"state_dict\['param_groups'\]\[0\]\['lr'\]"):
        opt.load_state_dict(sd)
    assert opt.param_groups[0]["lr"] == 0.1


def test_torch_lbfgs_state_dict_with_a_tensor_lr_loads():
    p = torch.ones(3, dtype=torch.float64, requires_grad=True)
    t = torch.optim.LBFGS([p], lr=torch.tensor(0.5, dtype=torch.float64))

    def closure():
        t.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss

    t.step(closure)
    opt = oo.LBFGS([np.ones(3)])
    opt.load_state_dict(copy.deepcopy(t.state_dict()))
    assert type(opt.param_groups[0]["lr"]) is float and opt.param_groups[0]["lr"] == 0.5
