"""A NumPy float16 hyper-parameter is refused by name (TypeError, nothing written), in optkern.optim,
its functional forms and optkern.torch: torch.optim computes its step scalars from one in float16
(NEP 50), which the rules (double, or torch's float32 ops for a float32 lr) do not follow.
float32 / float64 NumPy scalars still run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import optkern.functional as F
import optkern.optim as O
import optkern.torch as OT
from optim_registry import OPTIMIZERS

HALF = np.float16(0.01)
MSG = r"a numpy\.float16 scalar \(0\.010002\d*\) is refused"
# (every optimizer of the registry that takes lr, and one other hyper-parameter each)
OTHER = {
    "SGD": ("momentum", np.float16(0.5)),
    "Adam": ("weight_decay", np.float16(0.01)),
    "AdamW": ("weight_decay", np.float16(0.01)),
    "NAdam": ("weight_decay", np.float16(0.01)),
    "RMSprop": ("alpha", np.float16(0.9)),
    "Adagrad": ("lr_decay", np.float16(0.01)),
    "Adadelta": ("rho", np.float16(0.9)),
    "AdagradNorm": ("weight_decay", np.float16(0.01)),
}
NAMES = [info.name for info in OPTIMIZERS if info.name in OTHER]


def _params(rng, n=7):
    return [rng.standard_normal(n).astype(np.float32)]


def test_torch_rounds_a_float16_lr_s_step_scalars():
    """Why refused: torch.optim.Adam with np.float16(0.01) steps otherwise than with float(that value)."""
    g = torch.Generator().manual_seed(0)
    start, grads = torch.randn(1001, generator=g), [torch.randn(1001, generator=g) for _ in range(3)]

    def run(lr):
        p = torch.nn.Parameter(start.clone())
        opt = torch.optim.Adam([p], lr=lr, foreach=False)
        for gr in grads:
            p.grad = gr.clone()
            opt.step()
        return p.detach()

    assert (run(HALF) != run(float(HALF))).sum() > 100


def test_the_registry_names_every_checked_optimizer():
    assert set(NAMES) >= {"SGD", "Adam", "AdamW", "NAdam", "RMSprop", "Adagrad", "Adadelta"}


@pytest.mark.parametrize("name", NAMES)
def test_optim_constructor_refuses_a_float16_lr_and_other_hyper(name):
    rng = np.random.default_rng(1)
    cls = getattr(O, name)
    with pytest.raises(TypeError, match=r"^lr: " + MSG):
        cls(_params(rng), lr=HALF)
    key, v = OTHER[name]
    with pytest.raises(TypeError, match=rf"^{key}: a numpy\.float16 scalar"):
        cls(_params(rng), lr=0.01, **{key: v})


def test_optim_adam_betas_float16_named():
    with pytest.raises(TypeError, match=r"^betas\[1\]: a numpy\.float16 scalar"):
        O.Adam(_params(np.random.default_rng(2)), betas=(0.9, np.float16(0.999)))


@pytest.mark.parametrize("name", NAMES)
def test_optim_group_lr_set_to_float16_is_refused_before_writing(name):
    rng = np.random.default_rng(3)
    params = _params(rng)
    opt = getattr(O, name)(params, lr=0.01)
    opt.param_groups[0]["lr"] = HALF
    before = params[0].copy()
    with pytest.raises(TypeError, match=r"^param_groups\[0\]\['lr'\]: " + MSG):
        opt.step([rng.standard_normal(7).astype(np.float32)])
    assert np.array_equal(params[0], before)


def test_functional_adam_refuses_a_float16_lr_before_writing():
    rng = np.random.default_rng(4)
    p, g = _params(rng), _params(rng)
    m, v = [np.zeros(7, np.float32)], [np.zeros(7, np.float32)]
    before = [a.copy() for a in (p[0], m[0], v[0])]
    with pytest.raises(TypeError, match=r"^lr: " + MSG):
        F.adam_(p, g, m, v, step=1, lr=HALF)
    assert all(np.array_equal(a, b) for a, b in zip((p[0], m[0], v[0]), before))


def test_lbfgs_refuses_a_float16_lr():
    with pytest.raises(TypeError, match=r"^lr: " + MSG):
        O.LBFGS(_params(np.random.default_rng(5)), lr=HALF)


@pytest.mark.parametrize("name", [n for n in ("SGD", "Adam", "AdamW", "NAdam", "RMSprop", "Adagrad", "Adadelta")])
def test_torch_adapter_refuses_a_float16_lr_before_writing(name):
    p = torch.nn.Parameter(torch.linspace(-1, 1, 9))
    with pytest.raises(TypeError, match=r"lr: " + MSG):
        getattr(OT, name)([p], lr=HALF)
    opt = getattr(OT, name)([p], lr=0.01)
    opt.param_groups[0]["lr"] = HALF
    p.grad = torch.ones(9)
    before = p.detach().clone()
    state = {k: v.clone() for k, v in opt.state[p].items()}  # (Adagrad's: made by its constructor)
    with pytest.raises(TypeError, match=r"lr'?\]?: " + MSG):
        opt.step()
    assert torch.equal(p.detach(), before)
    assert opt.state[p].keys() == state.keys() and all(torch.equal(opt.state[p][k], v) for k, v in state.items())


@pytest.mark.parametrize("scalar", [np.float32(0.01), np.float64(0.01)])
def test_wider_numpy_scalars_still_run(scalar):
    rng = np.random.default_rng(6)
    a, b = _params(rng), None
    b = [a[0].copy()]
    g = rng.standard_normal(7).astype(np.float32)
    O.SGD(a, lr=scalar).step([g])
    O.SGD(b, lr=float(scalar)).step([g])
    assert np.array_equal(a[0], b[0])
