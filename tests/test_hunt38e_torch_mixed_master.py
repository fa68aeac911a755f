"""optkern.torch with ``master_weights=True``: one group of half and float32 params (a half model's
norms kept in float32, documented: float32 params are their own master) after its first step.

Defect (fixed): the group's run layout (``_Runs._layout``) checked every param's state against the
entries a step of the group's *first* param's dtype stores (``_stored(hp, params[0].dtype)``: with a
half first param, ``master_param``). A float32 param has no master, so once its state was non-empty
every new layout refused the step -- "state[...]: missing state 'master_param'" -- after
``load_state_dict`` of the optimizer's own checkpoint, or after a step where one param had no grad
(the layout of the params with grads changes). Now each param is checked against what a step of its
own dtype stores.
"""

import copy

import pytest
import torch

import optkern.torch as ot

LOWP = [
    {"master_weights": True},
    {"master_weights": True, "state_dtype": "int8", "block_size": 64},
    {"master_weights": True, "state_dtype": "bfloat16", "seed": 3},
    {"master_weights": True, "state_dtype": "int8", "stochastic_rounding": True, "seed": 5},
]


def _model(dtypes):
    torch.manual_seed(38)
    return [torch.nn.Parameter(torch.randn(n).to(dt)) for n, dt in zip((7, 1023, 65), dtypes)]


def _grads(ps, s, skip=None):
    g = torch.Generator().manual_seed(100 + s)
    for k, p in enumerate(ps):
        p.grad = None if k == skip else torch.randn(p.shape, generator=g).to(p.dtype)


DTYPES = [(torch.bfloat16, torch.float32, torch.float16), (torch.float32, torch.bfloat16, torch.float16)]


@pytest.mark.parametrize("dtypes", DTYPES)
@pytest.mark.parametrize("lowp", LOWP)
@pytest.mark.parametrize("name", ["Adam", "SGD", "RMSprop"])
def test_checkpoint_of_a_mixed_group_resumes_bit_identically(name, lowp, dtypes):
    kw = {"lr": 0.01, "momentum": 0.9} if name == "SGD" else {"lr": 0.01}
    ps = _model(dtypes)
    opt = getattr(ot, name)(ps, **kw, **lowp)
    for s in range(2):
        _grads(ps, s)
        opt.step()
    sd = copy.deepcopy(opt.state_dict())
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    other = getattr(ot, name)(qs, **kw, **lowp)
    other.load_state_dict(sd)
    opt.load_state_dict(copy.deepcopy(sd))  # (its own checkpoint, into itself)
    for s in range(2, 5):
        _grads(ps, s)
        _grads(qs, s)
        opt.step()
        other.step()
    for p, q in zip(ps, qs):
        assert torch.equal(p, q)
    assert "master_param" not in opt.state[ps[dtypes.index(torch.float32)]]


@pytest.mark.parametrize("lowp", LOWP)
def test_a_param_without_a_grad_in_a_mixed_group(lowp):
    """The float32 param's run must match a float32 optimizer of the same storage, steps skipped alike."""
    ps = _model(DTYPES[0])
    opt = ot.Adam(ps, lr=0.01, **lowp)
    ref_p = torch.nn.Parameter(ps[1].detach().clone())
    # (a grad-less 7-element param first: ref_p's elements draw the same Philox words, bfloat16
    # states being rounded stochastically with the seed)
    hold = torch.nn.Parameter(torch.zeros(7))
    ref = ot.Adam(
        [hold, ref_p], lr=0.01, **{k: v for k, v in lowp.items() if k not in ("master_weights", "stochastic_rounding")}
    )
    for s, skip in enumerate([None, 0, None, 2, 1, None]):
        _grads(ps, s, skip)
        opt.step()
        if skip != 1:
            ref_p.grad = ps[1].grad.clone()
            ref.step()
    assert torch.equal(ps[1], ref_p)
