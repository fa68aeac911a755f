"""Tensor hyper-parameters whose step scalars torch.optim computes in tensor ops optkern.torch does
not follow are refused by name, before anything is written; those it follows step like torch.

torch takes any hyper-parameter as a tensor, and its for-loop computes what it derives from one in
the tensor's dtype; optkern.torch read each as its value. 20 steps of 1000 elements: every element
off torch with a float16 / bfloat16 ``lr`` (NAdam, Adagrad with lr_decay), a float16 / bfloat16 /
float32 ``dampening`` on float64 params (SGD's ``1 - dampening`` rounded to it), a tensor
``lr_decay`` of any dtype (Adagrad's decayed lr as a reciprocal times lr: 132-159 elements even
float32 / float64), a half or float32 decoupled ``weight_decay`` (NAdam), a tensor ``momentum_decay``
of any dtype (NAdam: 300 of 300 elements, float64).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")

from torch_ieee_sqrt import ieee_sqrt  # noqa: E402 (after the torch skip)

H16, B16, F32, F64 = torch.float16, torch.bfloat16, torch.float32, torch.float64

REFUSED = [
    ("NAdam", dict(lr=3e-3), "lr", H16),
    ("NAdam", dict(lr=3e-3), "lr", B16),
    ("NAdam", dict(lr=3e-3, weight_decay=0.1, decoupled_weight_decay=True), "weight_decay", F32),
    ("NAdam", dict(lr=3e-3, weight_decay=0.1, decoupled_weight_decay=True), "weight_decay", H16),
    ("NAdam", dict(lr=3e-3, momentum_decay=4e-3), "momentum_decay", F64),
    ("Adagrad", dict(lr=3e-2, lr_decay=0.01), "lr", H16),
    ("Adagrad", dict(lr=3e-2, lr_decay=0.01), "lr_decay", F64),
    ("Adagrad", dict(lr=3e-2, lr_decay=0.01), "lr_decay", F32),
    ("SGD", dict(lr=3e-2, momentum=0.9, dampening=0.1), "dampening", F32),
    ("SGD", dict(lr=3e-2, momentum=0.9, dampening=0.1), "dampening", B16),
    ("RMSprop", dict(lr=3e-3, alpha=0.3), "alpha", H16),
    ("Adadelta", dict(lr=0.7, rho=0.3), "rho", H16),
]


def _train(make, p0, grads):
    p = torch.tensor(p0, requires_grad=True)
    opt = make([p])
    for g in grads:
        p.grad = torch.tensor(g)
        opt.step()
    return p.detach().numpy().copy()


def _data(seed, dtype=np.float64, n=300, steps=12):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(n).astype(dtype), [rng.standard_normal(n).astype(dtype) for _ in range(steps)]


@pytest.mark.parametrize("name,kw,key,dt", REFUSED, ids=[f"{n}-{k}-{d}" for n, _, k, d in REFUSED])
def test_unfollowed_tensor_hyper_parameter_refused_by_name(name, kw, key, dt):
    # torch steps otherwise than with the tensor's value (what optkern.torch stepped with)
    p0, grads = _data(7)
    tkw = dict(kw, **{key: torch.tensor(kw[key], dtype=dt)})
    with ieee_sqrt():
        want = _train(lambda ps: getattr(torch.optim, name)(ps, foreach=False, **tkw), p0, grads)
        vkw = dict(kw, **{key: float(tkw[key])})
        value = _train(lambda ps: getattr(torch.optim, name)(ps, foreach=False, **vkw), p0, grads)
    assert not np.array_equal(value, want)
    p = torch.nn.Parameter(torch.ones(5, dtype=torch.float64))
    with pytest.raises(ValueError, match=rf"^param_groups\[0\]\[{key!r}\]: "):
        getattr(ot, name)([p], **tkw)
    # set in the group later: refused by the step before it writes
    o = getattr(ot, name)([p], **kw)
    p.grad = torch.ones(5, dtype=torch.float64)
    o.step()
    o.param_groups[0][key] = tkw[key]
    before = p.detach().clone()
    with pytest.raises(ValueError, match=rf"^param_groups\[0\]\[{key!r}\]: "):
        o.step()
    assert torch.equal(p.detach(), before)


FOLLOWED = [
    ("SGD", dict(lr=3e-2, momentum=0.9, dampening=0.75), "dampening", F32),  # (1 - 0.75 exact)
    ("SGD", dict(lr=3e-2, momentum=0.9, dampening=0.1), "dampening", F64),
    ("RMSprop", dict(lr=3e-3, alpha=0.9, centered=True), "alpha", H16),  # (Sterbenz: 1 - alpha exact)
    ("Adagrad", dict(lr=3e-2), "lr", H16),  # (no lr_decay: lr / 1)
    ("Adadelta", dict(lr=0.7, rho=0.9), "rho", B16),
    ("NAdam", dict(lr=3e-3, weight_decay=0.1), "weight_decay", H16),  # (L2: grad.add(p, alpha=wd))
    ("NAdam", dict(lr=3e-3, eps=1e-6), "eps", H16),
]


@pytest.mark.parametrize("name,kw,key,dt", FOLLOWED, ids=[f"{n}-{k}-{d}" for n, _, k, d in FOLLOWED])
@pytest.mark.parametrize("pdt", [np.float32, np.float64])
def test_followed_tensor_hyper_parameter_steps_like_torch(name, kw, key, dt, pdt):
    p0, grads = _data(8, pdt)

    def make(mod, **extra):
        return lambda ps: getattr(mod, name)(ps, **dict(kw, **{key: torch.tensor(kw[key], dtype=dt)}), **extra)

    with ieee_sqrt():
        want = _train(make(torch.optim, foreach=False), p0, grads)
    np.testing.assert_array_equal(_train(make(ot), p0, grads), want)


def test_state_dict_with_an_unfollowed_tensor_refused_by_name():
    # (torch saves the tensor in its groups)
    p = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    t = torch.optim.Adagrad([p], lr=torch.tensor(0.1, dtype=torch.float16), lr_decay=0.01)
    o = ot.Adagrad([p], lr=0.1, lr_decay=0.01)
    with pytest.raises(ValueError, match=r"state_dict\['param_groups'\]\[0\]\['lr'\]"):
        o.load_state_dict(t.state_dict())
    assert o.param_groups[0]["lr"] == 0.1
