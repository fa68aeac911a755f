"""Adam and AdamW with tensor ``betas``, a float16 / bfloat16 tensor ``lr`` or a tensor decoupled
``weight_decay`` step bit for bit like torch.optim's for-loop.

torch computes the step scalars from such tensors in tensor ops (``1 - beta ** step`` with its pow,
which takes exponent 3 as ``x * x * x``; ``lr / bc1`` as ``bc1.reciprocal() * lr``; ``1 - betas[0]``
in the params' dtype; every op of a half lr rounded to it); optkern.torch read the tensors as
Python floats: 20 steps of 1000 elements left 250-760 of them an ulp or more off torch with float32
or float64 betas (float32 and float64 params), all 1000 with a float16 lr or weight decay, up to
a relative 20 (AMSGrad, float16 betas). Their scalars now come from torch's own expressions
(``optkern.torch._torch_scalars``) into the native ``adam_given_``.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")

from torch_ieee_sqrt import ieee_sqrt  # noqa: E402 (after the torch skip)

STEPS = 20


def _train(make, p0, grads, lr_fill=None):
    p = torch.tensor(p0, requires_grad=True)
    opt = make([p])
    for k, g in enumerate(grads):
        if lr_fill is not None:  # (a scheduler's way with a tensor lr)
            opt.param_groups[0]["lr"].fill_(lr_fill[k])
        p.grad = torch.tensor(g)
        opt.step()
    return p.detach().numpy().copy()


def _both(name, kw, pdt, seed, make_kw, lr_fill=None, n=1000):
    rng = np.random.default_rng(seed)
    p0 = rng.standard_normal(n).astype(pdt)
    grads = [rng.standard_normal(n).astype(pdt) for _ in range(STEPS)]
    with ieee_sqrt():
        want = _train(lambda ps: getattr(torch.optim, name)(ps, foreach=False, **kw, **make_kw()), p0, grads, lr_fill)
    got = _train(lambda ps: getattr(ot, name)(ps, **kw, **make_kw()), p0, grads, lr_fill)
    np.testing.assert_array_equal(got, want)


CASES = [
    ("Adam", dict(lr=1e-2)),
    ("Adam", dict(lr=1e-2, amsgrad=True, weight_decay=0.1)),
    ("Adam", dict(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True, maximize=True)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1, amsgrad=True)),
]
IDS = [f"{n}-{'-'.join(sorted(k))}" for n, k in CASES]


@pytest.mark.parametrize("pdt", [np.float32, np.float64])
@pytest.mark.parametrize("bdt", [torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_tensor_betas_step_like_torch(name, kw, bdt, pdt):
    def betas():
        return dict(betas=(torch.tensor(0.9, dtype=bdt), torch.tensor(0.999, dtype=bdt)))

    _both(name, kw, pdt, 1, betas)


def test_one_tensor_of_two_betas_steps_like_torch():
    # (torch iterates it: two 0-d tensors)
    _both("Adam", dict(lr=1e-2), np.float32, 2, lambda: dict(betas=torch.tensor([0.8, 0.99])))


@pytest.mark.parametrize("pdt", [np.float32, np.float64])
@pytest.mark.parametrize("ldt", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_half_tensor_lr_steps_like_torch(name, ldt, pdt):
    lrs = 1e-2 * np.random.default_rng(3).uniform(0.3, 1.7, STEPS)
    _both(name, dict(weight_decay=0.1), pdt, 3, lambda: dict(lr=torch.tensor(1e-2, dtype=ldt)), lr_fill=lrs)


@pytest.mark.parametrize("pdt", [np.float32, np.float64])
@pytest.mark.parametrize("wdt", [torch.float16, torch.float32, torch.float64])
def test_tensor_decoupled_weight_decay_steps_like_torch(wdt, pdt):
    _both("AdamW", dict(lr=1e-2), pdt, 4, lambda: dict(weight_decay=torch.tensor(0.1, dtype=wdt)))


def test_complex_params_with_tensor_betas_step_like_torch():
    rng = np.random.default_rng(5)
    p0 = (rng.standard_normal(7) + 1j * rng.standard_normal(7)).astype(np.complex64)
    grads = [(rng.standard_normal(7) + 1j * rng.standard_normal(7)).astype(np.complex64) for _ in range(5)]

    def betas():
        return dict(betas=(torch.tensor(0.9, dtype=torch.float64), torch.tensor(0.99, dtype=torch.float64)))

    with ieee_sqrt():
        want = _train(lambda ps: torch.optim.AdamW(ps, foreach=False, **betas()), p0, grads)
    got = _train(lambda ps: ot.AdamW(ps, **betas()), p0, grads)
    np.testing.assert_array_equal(got, want)


def test_tensor_betas_with_low_precision_storage_refused_by_name():
    p = torch.nn.Parameter(torch.ones(4, dtype=torch.bfloat16))
    betas = (torch.tensor(0.9), torch.tensor(0.999))
    with pytest.raises(ValueError, match=r"betas"):
        ot.AdamW([p], betas=betas, master_weights=True)
    o = ot.AdamW([p], master_weights=True)
    o.param_groups[0]["betas"] = betas  # (set later: refused by the step, before it writes)
    p.grad = torch.ones(4, dtype=torch.bfloat16)
    before = p.detach().clone()
    with pytest.raises(ValueError, match=r"betas"):
        o.step()
    assert torch.equal(p.detach(), before)
