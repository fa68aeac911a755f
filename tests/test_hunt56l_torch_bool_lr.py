"""A bool tensor ``lr`` (56th session's leftover pass, l): torch.optim's Adam, AdamW and Adagrad step
with it (``lr / bias_correction1``, ``1 - lr * weight_decay``, Adagrad's decayed lr: bool op float
is a tensor of torch's default dtype, as an integer lr's), so optkern.torch steps them bit for bit
like torch's for-loop; torch's SGD, RMSprop, Adadelta and NAdam negate it (``alpha=-lr``) and raise,
so optkern.torch refuses it there, TypeError naming lr, before anything is written. It refused all
of them with "expected a real number"."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")

from torch_ieee_sqrt import ieee_sqrt  # noqa: E402 (after the torch skip)

SHAPES = [(1,), (7,), (1023,), (3, 5)]
STEPS = 12
STEPPED = [
    ("Adam", dict()),
    ("Adam", dict(amsgrad=True, weight_decay=0.1, maximize=True)),
    ("Adam", dict(weight_decay=0.1, decoupled_weight_decay=True)),
    ("AdamW", dict(weight_decay=0.1)),
    ("Adagrad", dict()),
    ("Adagrad", dict(lr_decay=0.01, weight_decay=0.1)),
]
REFUSED = ["SGD", "RMSprop", "Adadelta", "NAdam"]


def _train(make, params, grads, lrs):
    ps = [torch.tensor(p, requires_grad=True) for p in params]
    opt = make(ps, torch.tensor(True))
    for gs, lr in zip(grads, lrs):
        opt.param_groups[0]["lr"].fill_(bool(lr))  # (a False step: only the states move)
        for p, g in zip(ps, gs):
            p.grad = torch.tensor(g)
        opt.step()
    return [p.detach().numpy().copy() for p in ps]


def _compare(name, kw, dtype, seed):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = [[1e-2 * rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(STEPS)]
    lrs = rng.integers(0, 2, STEPS)
    lrs[0] = 1
    theirs = getattr(torch.optim, name)
    with ieee_sqrt():
        want = _train(lambda ps, lr: theirs(ps, lr=lr, foreach=False, **kw), params, grads, lrs)
    got = _train(lambda ps, lr: getattr(ot, name)(ps, lr=lr, **kw), params, grads, lrs)
    assert not np.array_equal(want[2], params[2])  # (the params moved)
    for i, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_array_equal(a, b, err_msg=f"param {i}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,kw", STEPPED, ids=[f"{n}-{sorted(kw)}" for n, kw in STEPPED])
def test_bool_lr_steps_bitwise_like_torch(name, kw, dtype):
    _compare(name, kw, dtype, seed=len(name) * 100 + len(kw))


@pytest.mark.parametrize("name,kw", [STEPPED[2], STEPPED[5]], ids=["Adam", "Adagrad"])
def test_bool_lr_under_float64_default_dtype(name, kw):
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        _compare(name, kw, np.float32, seed=11)
    finally:
        torch.set_default_dtype(old)


@pytest.mark.parametrize("name", REFUSED)
def test_bool_lr_refused_where_torch_refuses(name):
    w = torch.nn.Parameter(torch.ones(3))
    w.grad = torch.ones(3)
    with pytest.raises(RuntimeError, match="bool tensor"):  # (torch's own: the reason to refuse)
        getattr(torch.optim, name)([w], lr=torch.tensor(True), foreach=False).step()
    w = torch.nn.Parameter(torch.ones(3))
    w.grad = torch.ones(3)
    with pytest.raises(TypeError, match=r"param_groups\[0\]\['lr'\]: a bool tensor"):
        getattr(ot, name)([w], lr=torch.tensor(True))
    opt = getattr(ot, name)([w], lr=0.5)
    opt.param_groups[0]["lr"] = torch.tensor(True)  # (assigned later: refused at the step, nothing written)
    with pytest.raises(TypeError, match=r"param_groups\[0\]\['lr'\]: a bool tensor"):
        opt.step()
    assert torch.equal(w.detach(), torch.ones(3))
    assert not opt.state[w] or "step" not in opt.state[w] or float(opt.state[w]["step"]) == 0
