"""optkern.torch.NAdam with tensor ``betas`` steps bit for bit like torch.optim.NAdam's for-loop.

torch computes NAdam's step scalars from tensor betas in tensor ops of the betas' dtype: ``mu =
beta1 * (...)`` a tensor, ``mu_product *= mu`` (both 0-d: promoted, then rounded to the state's
float32), the two coefficients divided in tensor ops, ``1 - beta2 ** step`` with torch's pow.
optkern.torch read the betas as Python floats: 4 steps left float64 params 9e-10 off torch. The
scalars now come from torch's own expressions (``_torch_scalars.nadam_scalars``) into the native
``nadam_given_``.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")

from torch_ieee_sqrt import ieee_sqrt  # noqa: E402 (after the torch skip)

STEPS = 12


def _betas(bdt):
    return (torch.tensor(0.9, dtype=bdt), torch.tensor(0.999, dtype=bdt))


def _train(make, p0, grads, opt=None, p=None):
    p = torch.tensor(p0, requires_grad=True) if p is None else p
    opt = make([p]) if opt is None else opt
    for g in grads:
        p.grad = torch.tensor(g)
        opt.step()
    return p, opt


def _data(pdt, seed, n=256):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(n).astype(pdt), [rng.standard_normal(n).astype(pdt) for _ in range(STEPS)]


def _torch(kw, p0, grads):
    with ieee_sqrt():
        return _train(lambda ps: torch.optim.NAdam(ps, foreach=False, **kw), p0, grads)


CASES = [
    dict(lr=1e-2),
    dict(lr=1e-2, weight_decay=0.1),
    dict(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True, maximize=True),
    dict(lr=torch.tensor(1e-2), weight_decay=0.1, decoupled_weight_decay=True),
]
IDS = ["plain", "l2", "decoupled-maximize", "float32-lr"]


@pytest.mark.parametrize("pdt", [np.float32, np.float64])
@pytest.mark.parametrize("bdt", [torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize("kw", CASES, ids=IDS)
def test_nadam_tensor_betas_step_like_torch(kw, bdt, pdt):
    p0, grads = _data(pdt, 1)
    kw = dict(kw, betas=_betas(bdt))
    want, wopt = _torch(kw, p0, grads)
    got, gopt = _train(lambda ps: ot.NAdam(ps, **kw), p0, grads)
    np.testing.assert_array_equal(got.detach().numpy(), want.detach().numpy())
    ws, gs = wopt.state[want], gopt.state[got]
    assert gs["mu_product"].dtype == ws["mu_product"].dtype
    assert float(gs["mu_product"]) == float(ws["mu_product"])
    for k in ("exp_avg", "exp_avg_sq"):
        np.testing.assert_array_equal(gs[k].numpy(), ws[k].numpy())


def test_nadam_one_tensor_of_two_betas_like_torch():
    p0, grads = _data(np.float64, 2)
    kw = dict(lr=1e-2, betas=torch.tensor([0.8, 0.99], dtype=torch.float64))
    want, _ = _torch(kw, p0, grads)
    got, _ = _train(lambda ps: ot.NAdam(ps, **kw), p0, grads)
    np.testing.assert_array_equal(got.detach().numpy(), want.detach().numpy())


@pytest.mark.parametrize("pdt", [np.float32, np.float64])
def test_nadam_tensor_betas_state_dict_round_trip(pdt):
    # half the steps, state_dict through torch.save/load into a fresh optimizer, the other half:
    # torch's result, and the loaded group keeps tensor betas
    p0, grads = _data(pdt, 3)
    kw = dict(lr=1e-2, betas=_betas(torch.float32))
    want, _ = _torch(kw, p0, grads)
    got, opt = _train(lambda ps: ot.NAdam(ps, **kw), p0, grads[: STEPS // 2])
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    fresh = ot.NAdam([got], **dict(kw, betas=(0.5, 0.5)))
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    assert all(isinstance(b, torch.Tensor) for b in fresh.param_groups[0]["betas"])
    _train(None, p0, grads[STEPS // 2 :], opt=fresh, p=got)
    np.testing.assert_array_equal(got.detach().numpy(), want.detach().numpy())


def test_nadam_tensor_betas_with_lowp_keywords_named():
    p = torch.nn.Parameter(torch.ones(4, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match=r"betas"):
        ot.NAdam([p], betas=_betas(torch.float32), master_weights=True)
    o = ot.NAdam([p], master_weights=True)
    o.param_groups[0]["betas"] = _betas(torch.float32)  # (set later: refused by the step, before it writes)
    p.grad = torch.ones(4, dtype=torch.bfloat16)
    before = p.detach().clone()
    with pytest.raises(ValueError, match=r"betas"):
        o.step()
    assert torch.equal(p.detach(), before)
