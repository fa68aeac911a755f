"""optkern.torch's low-precision steps with a float32 tensor ``lr`` (torch.optim takes one; an LR
scheduler fills it in place): Adam's, AdamW's and NAdam's lr coefficients, Adagrad's decayed lr and
the decoupled ``1 - lr wd`` are computed by torch in float32 tensor ops, and optkern.torch's float32
step follows them (the rules' ``float32_lr``), but the low-precision step (``master_weights``,
``state_dtype``) dropped the flag: its master came out 1 ulp off torch's float32 step (and off
optkern.torch's own float32 step) on some elements from the first step. The native ``lowp_step``
now takes the flag, and the master is torch's float32 step bit for bit again."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import optkern.torch as ot  # noqa: E402
from torch_ieee_sqrt import ieee_sqrt  # noqa: E402

CASES = {
    "Adagrad": dict(lr_decay=0.01, weight_decay=1e-3),
    "Adam": dict(weight_decay=1e-3),
    "AdamW": dict(),
    "NAdam": dict(weight_decay=0.01),
    "NAdam-decoupled": dict(decoupled_weight_decay=True, weight_decay=0.01),
}


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", list(CASES))
def test_master_is_torchs_float32_step_with_a_float32_tensor_lr(name, half):
    cls, kw, n = name.split("-")[0], CASES[name], 1023
    gen = torch.Generator().manual_seed(n)
    w = torch.randn(n, generator=gen).to(half)
    ref, me = torch.nn.Parameter(w.float()), torch.nn.Parameter(w.clone())
    theirs = getattr(torch.optim, cls)([ref], lr=torch.tensor(0.0123), **kw)
    ours = getattr(ot, cls)([me], lr=torch.tensor(0.0123), master_weights=True, **kw)
    with ieee_sqrt():
        for _ in range(4):
            g = torch.randn(n, generator=gen).to(half)
            ref.grad, me.grad = g.float(), g.clone()
            theirs.step()
            ours.step()
    assert torch.equal(ours.state[me]["master_param"], ref.detach())
    assert torch.equal(me.detach(), ref.detach().to(half))  # (to nearest even)


@pytest.mark.parametrize("name", list(CASES))
def test_compact_states_first_step_is_torchs_float32_step(name):
    """With bfloat16 states the first step (states from zero: the update from the unrounded moments)
    is torch.optim's float32 step with the same float32 tensor lr, bit for bit."""
    cls, kw, n = name.split("-")[0], CASES[name], 257
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(n, generator=gen)
    a, b = torch.nn.Parameter(w.clone()), torch.nn.Parameter(w.clone())
    lowp = getattr(ot, cls)([a], lr=torch.tensor(0.0123), state_dtype="bfloat16", **kw)
    theirs = getattr(torch.optim, cls)([b], lr=torch.tensor(0.0123), **kw)
    g = torch.randn(n, generator=gen)
    a.grad, b.grad = g.clone(), g.clone()
    with ieee_sqrt():
        lowp.step()
        theirs.step()
    assert torch.equal(a.detach(), b.detach())


@pytest.mark.parametrize(
    "cls, kw, key",
    [
        ("Adam", dict(betas=(torch.tensor(0.9), torch.tensor(0.999))), "betas"),
        ("Adam", dict(lr=torch.tensor(0.01, dtype=torch.bfloat16)), "lr"),
        ("AdamW", dict(lr=torch.tensor(0.01, dtype=torch.float16)), "lr"),
        ("AdamW", dict(weight_decay=torch.tensor(0.01)), "weight_decay"),
    ],
)
def test_what_the_low_precision_step_cannot_compute_is_refused_naming_its_entry(cls, kw, key):
    """A half tensor lr and a tensor decoupled weight_decay were refused naming ``['betas']``
    (floats) where the entry at fault is ``lr`` / ``weight_decay``."""
    p = torch.nn.Parameter(torch.ones(5, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match=rf"^param_groups\[0\]\['{key}'\]: .*pass Python floats"):
        getattr(ot, cls)([p], **{"lr": 1e-2, **kw}, master_weights=True)
    opt = getattr(ot, cls)([p], lr=1e-2, master_weights=True)  # (set later: refused at the step)
    opt.param_groups[0].update(kw)
    p.grad = torch.ones(5, dtype=torch.bfloat16)
    before = p.detach().clone()
    with pytest.raises(ValueError, match=rf"^param_groups\[0\]\['{key}'\]: .*pass Python floats"):
        opt.step()
    assert torch.equal(p.detach(), before)
