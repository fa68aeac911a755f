"""Hunt 39c: NAdam's ``mu_product`` reaches 0 and must load / pass back as it is. The product of
momentum factors (each about beta1 / 2) underflows: float32 after about 120 steps at the
defaults (torch's float32 state does too), at once with ``betas[0] = 0``. The state checks
took (0, 1] only: ``load_state_dict`` refused NAdam's own state dict (``mu_product: must be in
(0.0, 1.0], got 0.0``) and ``nadam_`` the value it returned, for it to be passed back. Also:
the float32 product equals torch.optim.NAdam's (foreach and for-loop) at every one of 300
steps (the hunt's check of its rounding; no change needed there)."""

import numpy as np
import pytest

from optkern.functional import nadam_
from optkern.optim import NAdam


def _stepped(n_steps, **kw):
    p = np.linspace(-1, 1, 7, dtype=np.float32)
    opt = NAdam([p], **kw)
    rng = np.random.default_rng(3903)
    grads = [rng.standard_normal(7).astype(np.float32) for _ in range(n_steps + 5)]
    for g in grads[:n_steps]:
        opt.step([g])
    return p, opt, grads[n_steps:]


@pytest.mark.parametrize(("n_steps", "kw"), [(300, {}), (2, {"betas": (0.0, 0.999)})])
def test_a_state_dict_whose_mu_product_underflowed_loads_and_resumes_the_same(n_steps, kw):
    p, opt, rest = _stepped(n_steps, **kw)
    sd = opt.state_dict()
    assert sd["state"][0]["mu_product"] == 0.0
    q = p.copy()
    opt2 = NAdam([q], **kw)
    opt2.load_state_dict(sd)
    for g in rest:
        opt.step([g])
        opt2.step([g])
    np.testing.assert_array_equal(q, p)


def test_nadam_functional_takes_back_a_zero_mu_product():
    p = np.ones(3)
    st = [np.zeros(3), np.zeros(3)]
    mu = nadam_([p], [np.ones(3)], [st[0]], [st[1]], step=1, beta1=0.0)
    assert mu == 0.0
    mu = nadam_([p], [np.ones(3)], [st[0]], [st[1]], step=2, beta1=0.0, mu_product=mu)
    assert mu == 0.0 and np.isfinite(p).all()


@pytest.mark.parametrize("bad", [-1e-300, 1.5, float("nan")])
def test_out_of_range_mu_products_stay_refused_by_name(bad):
    _, opt, _ = _stepped(1)
    sd = opt.state_dict()
    sd["state"][0]["mu_product"] = bad
    with pytest.raises(ValueError, match="mu_product"):
        NAdam([np.zeros(7, np.float32)]).load_state_dict(sd)
    with pytest.raises(ValueError, match="^mu_product"):
        nadam_([np.ones(1)], [np.ones(1)], [np.zeros(1)], [np.zeros(1)], step=1, mu_product=bad)


def test_float32_mu_product_equals_torchs_at_every_step():
    torch = pytest.importorskip("torch")
    p, opt, _ = _stepped(0)
    tps = [torch.tensor(p.copy(), requires_grad=True) for _ in range(2)]
    tos = [torch.optim.NAdam([t], foreach=fe) for t, fe in zip(tps, (False, True))]
    rng = np.random.default_rng(3904)
    for _ in range(300):
        g = rng.standard_normal(7).astype(np.float32)
        opt.step([g])
        for t, o in zip(tps, tos):
            t.grad = torch.tensor(g)
            o.step()
        mine = opt.state_dict()["state"][0]["mu_product"]
        assert all(float(mine) == o.state[t]["mu_product"].item() for t, o in zip(tps, tos))
