"""A checkpoint entry with step 0 that holds moments (torch.optim.Adagrad's state, made at construction
before any step; any torch.optim checkpoint saved with step 0): optkern.optim's loader dropped the
moments (the first step started from zeros / the initial accumulator, and ``state_dict()`` lost the
entry). torch.optim keeps them and steps from them: so does optkern.optim now."""

import copy

import numpy as np
import pytest
import torch

import optkern.optim as oo
from torch_ieee_sqrt import ieee_sqrt


def _torch_entry(name: str, kw: dict, n: int = 9):
    """A torch.optim optimizer of ``name`` over one float32 param, with its step-0 checkpoint holding
    nonzero moments: Adagrad's as constructed; the others' stepped once, then their step set to 0."""
    g = torch.Generator().manual_seed(47)
    p = torch.nn.Parameter(torch.randn(n, generator=g))
    opt = getattr(torch.optim, name)([p], foreach=False, **kw)
    if name != "Adagrad":
        p.grad = torch.randn(n, generator=g)
        with ieee_sqrt():
            opt.step()
        for st in opt.state.values():
            st["step"].zero_()
    return p, opt, g


CASES = [
    ("Adagrad", dict(lr=0.1, initial_accumulator_value=0.3)),
    ("Adam", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("Adadelta", dict(lr=0.5)),
]


@pytest.mark.parametrize(("name", "kw"), CASES)
def test_step0_entry_kept_and_stepped_as_torch(name, kw):
    p, topt, g = _torch_entry(name, kw)
    sd = copy.deepcopy(topt.state_dict())
    saved = sd["state"][0]
    assert float(saved["step"]) == 0.0
    x = p.detach().numpy().copy()
    ours = getattr(oo, name)([x], **kw)
    ours.load_state_dict(sd)
    # the round trip keeps the entry: step 0 and every moment, exactly
    back = ours.state_dict()["state"]
    assert 0 in back, "the step-0 entry was dropped"
    assert int(back[0]["step"]) == 0
    for k, v in saved.items():
        if k != "step":
            np.testing.assert_array_equal(np.asarray(back[0][k]), v.numpy(), err_msg=k)
    # and the next steps read them, as torch's do
    for _ in range(3):
        grad = torch.randn(p.shape, generator=g)
        p.grad = grad.clone()
        with ieee_sqrt():  # (torch's CPU sqrt is not correctly rounded: tests/torch_ieee_sqrt.py)
            topt.step()
        ours.step([grad.numpy().copy()])
        np.testing.assert_array_equal(x, p.detach().numpy())
