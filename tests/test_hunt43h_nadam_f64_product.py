"""NAdam's mu_product under a float64 default dtype: torch keeps it in a float64 tensor
(``_get_scalar_dtype``) and steps float32 params with that float64 product, where optkern's rule
rounded it to the params' float32 -- the params drifted from torch.optim's by an ulp here and
there within tens of steps, and the saved mu_product was a float32 value. The product's precision
is now the state's: float64 state, float64 product."""

import copy

import numpy as np
import pytest

from optkern import functional as F

torch = pytest.importorskip("torch")
okt = pytest.importorskip("optkern.torch")

from torch_ieee_sqrt import ieee_sqrt  # noqa: E402 (after the torch skip)


@pytest.fixture
def float64_default():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _nadam(lib, dtype, steps, **kw):
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(4000, dtype=torch.float32).to(dtype))
    opt = lib.NAdam([p], lr=0.01, **kw)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        p.grad = torch.randn(p.shape, generator=g, dtype=torch.float32).to(dtype)
        opt.step()
    return p.detach(), opt


@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
@pytest.mark.parametrize("extra", [{}, dict(weight_decay=0.1, decoupled_weight_decay=True)])
def test_float32_params_under_float64_default_match_torch(float64_default, dtype, extra):
    with ieee_sqrt():
        ref, ref_opt = _nadam(torch.optim, dtype, 30, foreach=False, **extra)
        got, opt = _nadam(okt, dtype, 30, **extra)
    want = ref_opt.state[ref_opt.param_groups[0]["params"][0]]["mu_product"]
    have = opt.state[opt.param_groups[0]["params"][0]]["mu_product"]
    assert have.dtype == want.dtype == torch.float64
    assert have.item() == want.item()  # (it was the float32 rounding of torch's)
    assert torch.equal(got, ref)


def test_float64_state_checkpoint_continues_as_torch(float64_default):
    # a float64 mu_product saved by torch.optim, loaded into optkern.torch: torch's loader casts a
    # float32 param's state to float32 (mu_product too), both then go on in float32
    with ieee_sqrt():
        ref, ref_opt = _nadam(torch.optim, torch.float32, 5, foreach=False)
        sd = ref_opt.state_dict()
        p = torch.nn.Parameter(ref.clone())
        opt = okt.NAdam([p], lr=0.01)
        opt.load_state_dict(copy.deepcopy(sd))  # (no state tensor shared by the two)
        ref_opt.load_state_dict(copy.deepcopy(sd))
        g = torch.Generator().manual_seed(2)
        q = ref_opt.param_groups[0]["params"][0]
        for _ in range(20):
            p.grad = torch.randn(p.shape, generator=g, dtype=torch.float32)
            q.grad = p.grad.clone()
            opt.step()
            ref_opt.step()
    assert opt.state[p]["mu_product"].item() == ref_opt.state[q]["mu_product"].item()
    assert torch.equal(p.detach(), q.detach())


def test_functional_float64_product():
    # the functional form: the product kept in float64 for float32 arrays when asked, else rounded
    # to float32 (as optkern.optim.NAdam keeps it, torch's float32 default)
    beta1 = 0.9
    mu = beta1 * (1.0 - 0.5 * 0.96 ** (3 * 4e-3))
    mp = 0.7123456789012345
    outs = []
    for wide in (False, True):
        p, g = np.ones(5, np.float32), np.full(5, 0.5, np.float32)
        m, v = np.zeros(5, np.float32), np.zeros(5, np.float32)
        outs.append(F.nadam_([p], [g], [m], [v], step=3, mu_product=mp, float64_product=wide))
    assert outs[0] == float(np.float32(np.float32(mp) * np.float32(mu)))
    assert outs[1] == mp * mu
