"""NAdam on float64 params under torch's default float32 dtype: torch keeps ``mu_product`` in a float32
tensor (``mu_product *= mu``) and computes its two step coefficients from that float32 value in
Python floats. optkern.torch handed the rule a start product divided by mu_t, for the rule's float64
``start * mu_t`` to give torch's product back -- "to the last bit, or one float64 ulp off": the ulp
off moved a coefficient, and with it params by an ulp (momentum_decay=1000: 4 of 1023 elements at
step 7). The coefficients now come from torch's own expressions (``_torch_scalars.nadam_scalars``),
so the params and the saved product are torch.optim's for-loop's, bit for bit, for any schedule."""

from __future__ import annotations

import copy

import pytest

import optkern.torch as okt

torch = pytest.importorskip("torch")

from torch_ieee_sqrt import step_either  # noqa: E402 (after the torch skip)

SIZES = (0, 1, 7, 1023)
CASES = [
    dict(momentum_decay=1000.0),
    dict(momentum_decay=0.004),
    dict(momentum_decay=0.3, betas=(0.5, 0.9)),
    dict(momentum_decay=37.0, weight_decay=0.1, decoupled_weight_decay=True, maximize=True),
    dict(momentum_decay=0.0, betas=(0.99, 0.999), weight_decay=0.01),
]


def _run(lib, dtype, kw, steps, reload_at=None):
    gen = torch.Generator().manual_seed(56)
    params = [torch.randn(n, generator=gen, dtype=dtype).requires_grad_() for n in SIZES]
    impl = {"foreach": False} if lib is torch.optim else {}
    opt = lib.NAdam(params, **kw, **impl)
    for t in range(steps):
        if t == reload_at:
            opt.load_state_dict(copy.deepcopy(opt.state_dict()))
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen, dtype=dtype)
        step_either(opt)
    return [p.detach() for p in params], opt.state[params[-1]]


@pytest.mark.parametrize("reload_at", [None, 9], ids=["straight", "reloaded"])
@pytest.mark.parametrize("kw", CASES, ids=[str(c["momentum_decay"]) for c in CASES])
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128], ids=["float64", "complex128"])
def test_float64_params_step_as_torch_with_its_float32_product(dtype, kw, reload_at):
    assert torch.get_default_dtype() == torch.float32
    ours, s_ours = _run(okt, dtype, kw, 40, reload_at)
    theirs, s_theirs = _run(torch.optim, dtype, kw, 40, reload_at)
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)
    assert s_ours["mu_product"].dtype == s_theirs["mu_product"].dtype
    assert torch.equal(s_ours["mu_product"], s_theirs["mu_product"])
