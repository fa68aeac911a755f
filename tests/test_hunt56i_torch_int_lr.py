"""An integer tensor ``lr`` steps Adam, AdamW, NAdam and Adagrad (lr_decay) bit for bit like
torch.optim's for-loop (56th session's leftover pass, i).

torch divides and multiplies such an lr with Python floats (``lr / bias_correction1``, NAdam's
``-lr * (1 - mu) / (1 - mu_product)``, ``1 - lr * weight_decay``, Adagrad's decayed lr): integer
tensor op float is a tensor of torch's default dtype, float32, so its scalars are those of a
float32 tensor lr of the same value. optkern.torch's NAdam (and Adagrad with lr_decay) refused it,
suggesting a float64 tensor, where torch steps it; its Adam computed it through torch's own
expressions rather than the rules' ``float32_lr`` that a float32 tensor lr takes (one definition).
Under a float64 default dtype the same ops are double: the scalars of the Python float.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")

from torch_ieee_sqrt import ieee_sqrt  # noqa: E402 (after the torch skip)

SHAPES = [(1,), (7,), (1023,), (3, 5)]
STEPS = 20
CASES = [
    ("Adam", dict()),
    ("Adam", dict(amsgrad=True, weight_decay=0.1, maximize=True)),
    ("Adam", dict(weight_decay=0.1, decoupled_weight_decay=True)),
    ("AdamW", dict(weight_decay=0.1)),
    ("NAdam", dict()),
    ("NAdam", dict(weight_decay=0.1)),
    ("NAdam", dict(weight_decay=0.1, decoupled_weight_decay=True)),
    ("Adagrad", dict(lr_decay=0.01, weight_decay=0.1)),
]


def _train(make, params, grads, lrs, lr0):
    ps = [torch.tensor(p, requires_grad=True) for p in params]
    opt = make(ps, lr0.clone())
    for gs, lr in zip(grads, lrs):
        opt.param_groups[0]["lr"].fill_(int(lr))  # (a scheduler's way with a tensor lr)
        for p, g in zip(ps, gs):
            p.grad = torch.tensor(g)
        opt.step()
    return [p.detach().numpy().copy() for p in ps]


def _compare(name, kw, dtype, lr0, seed):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    # (small grads, so that an lr of whole units leaves the params in a range of varied roundings)
    grads = [[1e-2 * rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(STEPS)]
    lrs = rng.integers(1, 6, STEPS)
    theirs = getattr(torch.optim, name)
    with ieee_sqrt():
        want = _train(lambda ps, lr: theirs(ps, lr=lr, foreach=False, **kw), params, grads, lrs, lr0)
    got = _train(lambda ps, lr: getattr(ot, name)(ps, lr=lr, **kw), params, grads, lrs, lr0)
    for i, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_array_equal(a, b, err_msg=f"param {i}")


@pytest.mark.parametrize("lr_dtype", [torch.int64, torch.int32])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}-{sorted(kw)}" for n, kw in CASES])
def test_integer_tensor_lr_steps_bitwise_like_torch(name, kw, dtype, lr_dtype):
    _compare(name, kw, dtype, torch.tensor(3, dtype=lr_dtype), seed=len(name) * 100 + len(kw))


@pytest.mark.parametrize("name,kw", [CASES[2], CASES[6]], ids=["Adam", "NAdam"])
def test_one_element_integer_lr(name, kw):
    _compare(name, kw, np.float32, torch.tensor([2]), seed=7)  # (torch's _to_scalar squeezes it)


@pytest.mark.parametrize("name,kw", [CASES[2], CASES[6], CASES[7]], ids=["Adam", "NAdam", "Adagrad"])
def test_integer_lr_under_float64_default_dtype(name, kw):
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        _compare(name, kw, np.float32, torch.tensor(3), seed=11)
    finally:
        torch.set_default_dtype(old)


@pytest.mark.parametrize("name", ["NAdam", "Adagrad"])
def test_half_tensor_lr_still_refused(name):
    # (a float16 lr's quotients round to float16 in torch: not followed, refused before any write)
    w = torch.nn.Parameter(torch.ones(3))
    w.grad = torch.ones(3)
    kw = {"lr_decay": 0.1} if name == "Adagrad" else {}
    opt = getattr(ot, name)([w], lr=0.5, **kw)
    opt.param_groups[0]["lr"] = torch.tensor(0.5, dtype=torch.float16)
    with pytest.raises(ValueError, match=r"\['lr'\]: a float16 tensor"):
        opt.step()
    assert torch.equal(w.detach(), torch.ones(3))
