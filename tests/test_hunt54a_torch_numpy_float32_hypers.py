"""A NumPy float32 ``lr`` steps optkern.torch's optimizers bit for bit like torch.optim (hunt 54a).

Under NumPy 2's promotion rules (NEP 50) an ``np.float32`` combined with a Python float stays
float32, so torch.optim's for-loop and foreach steps (a CPU and a CUDA user's defaults) compute
the step scalars that are quotients or products of lr (Adam's and AdamW's ``lr / bc1``, the decay
``1 - lr * weight_decay``, NAdam's coefficients, Adagrad's decayed lr) in float32, as with a
float32 tensor lr: torch 2.13's for-loop with ``np.float32(lr)`` is its for-loop with
``torch.tensor(lr)`` bit for bit (checked below). optkern.torch read it as a Python float (double
scalars; torch's ``fused=True`` path, which passes lr to C++ as a double, does the same): 2 (Adam),
3 (AdamW), 15 (NAdam), 15 (Adagrad) of 1023 float32 elements an ulp off torch's for-loop after 20
steps. It now steps as with a float32 tensor lr (the rules' ``float32_lr``). ``eps`` and coupled
``weight_decay`` enter no such product (the same bits as their Python floats); SGD's, RMSprop's and
Adadelta's scalars are lr itself. torch refuses ``np.float32`` Adam / AdamW betas ("both floats or
both Tensors": np.float32 is not a Python float), and so does optkern.torch.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import optkern.torch as ot  # noqa: E402
from torch_ieee_sqrt import ieee_sqrt  # noqa: E402

N, STEPS = 1023, 20
F32 = np.float32
CASES = [
    ("Adam", dict(lr=F32(1e-3), eps=F32(1e-8), weight_decay=F32(1e-2))),
    ("Adam", dict(lr=F32(3e-3), amsgrad=True)),
    ("AdamW", dict(lr=F32(1e-3), eps=F32(1e-8), weight_decay=F32(1e-2))),
    ("AdamW", dict(lr=F32(1e-3), weight_decay=0.1)),  # (a Python weight_decay: lr * wd in float32 still)
    ("SGD", dict(lr=F32(0.013), momentum=F32(0.9), dampening=F32(0.1), weight_decay=F32(1e-2))),
    ("SGD", dict(lr=F32(0.013), momentum=F32(0.9), nesterov=True)),
    ("NAdam", dict(lr=F32(2e-3), weight_decay=F32(1e-2))),
    ("NAdam", dict(lr=F32(2e-3), weight_decay=F32(1e-2), decoupled_weight_decay=True)),
    ("Adagrad", dict(lr=F32(1e-2), lr_decay=0.01, eps=F32(1e-10))),
    ("RMSprop", dict(lr=F32(1e-3), momentum=F32(0.5), centered=True)),
    ("Adadelta", dict(lr=F32(0.7), rho=0.9)),
]
IDS = [f"{n}-{i}" for i, (n, _) in enumerate(CASES)]


def _steps(make):
    """20 steps of ``make([p])`` from a seeded start on seeded grads: the param."""
    gen = torch.Generator().manual_seed(N)
    p = torch.randn(N, generator=gen).requires_grad_()
    opt = make([p])
    for _ in range(STEPS):
        p.grad = torch.randn(N, generator=gen)
        opt.step()
    return p.detach()


def _as(kw, kind):
    """``kw`` with its NumPy float32 entries as Python floats of the same value, or ``lr`` as a
    float32 tensor."""
    if kind == "python":
        return {k: float(v) if isinstance(v, np.float32) else v for k, v in kw.items()}
    return dict(kw, lr=torch.tensor(kw["lr"]))


@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_numpy_float32_hyper_parameters_step_as_torchs_for_loop(name, kw):
    with ieee_sqrt():
        want = _steps(lambda ps: getattr(torch.optim, name)(ps, foreach=False, **kw))
    torch.testing.assert_close(_steps(lambda ps: getattr(ot, name)(ps, **kw)), want, rtol=0, atol=0)


@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_torchs_for_loop_and_foreach_take_a_numpy_float32_lr_as_a_float32_tensor(name, kw):
    """The premise, on torch itself: an np.float32 lr steps its for-loop as a float32 tensor lr does,
    and its foreach step as its for-loop (both with torch's own sqrt: ``ieee_sqrt`` replaces the
    for-loop's, not ``_foreach_sqrt``; torch's foreach refuses a tensor lr). Not NAdam's foreach: it
    rounds otherwise than torch's for-loop with Python floats too (32 of 1023 elements here)."""
    with ieee_sqrt():
        loop = _steps(lambda ps: getattr(torch.optim, name)(ps, foreach=False, **kw))
        tensor = _steps(lambda ps: getattr(torch.optim, name)(ps, foreach=False, **_as(kw, "tensor")))
    assert torch.equal(tensor, loop)
    if name == "NAdam":
        return
    loop = _steps(lambda ps: getattr(torch.optim, name)(ps, foreach=False, **kw))
    assert torch.equal(_steps(lambda ps: getattr(torch.optim, name)(ps, foreach=True, **kw)), loop)


@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_ours_take_a_numpy_float32_lr_as_a_float32_tensor(name, kw):
    mine = _steps(lambda ps: getattr(ot, name)(ps, **kw))
    assert torch.equal(mine, _steps(lambda ps: getattr(ot, name)(ps, **_as(kw, "tensor"))))


@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_python_float_hyper_parameters_still_step_as_torchs_for_loop(name, kw):
    """The same values as Python floats: double scalars, in torch and here."""
    kw = _as(kw, "python")
    with ieee_sqrt():
        want = _steps(lambda ps: getattr(torch.optim, name)(ps, foreach=False, **kw))
    torch.testing.assert_close(_steps(lambda ps: getattr(ot, name)(ps, **kw)), want, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_numpy_float32_betas_are_refused_as_torch_refuses_them(name):
    p = torch.zeros(3, requires_grad=True)
    for mod in (torch.optim, ot):
        with pytest.raises(ValueError, match="^betas must be either both floats or both Tensors$"):
            getattr(mod, name)([p], betas=(F32(0.9), F32(0.999)))


@pytest.mark.parametrize("name,kw", [("Adam", {}), ("AdamW", {}), ("NAdam", {}), ("Adagrad", {"lr_decay": 0.01})])
def test_a_low_precision_step_takes_a_numpy_float32_lr_as_a_float32_tensor(name, kw):
    """The master-weights step reads the same flag (its float32 master: the same bits either way)."""

    def steps(lr):
        gen = torch.Generator().manual_seed(7)
        p = torch.randn(N, generator=gen).to(torch.bfloat16).requires_grad_()
        opt = getattr(ot, name)([p], lr=lr, master_weights=True, weight_decay=0.01, **kw)
        for _ in range(5):
            p.grad = torch.randn(N, generator=gen).to(torch.bfloat16)
            opt.step()
        return opt.state[p]["master_param"]

    assert torch.equal(steps(F32(0.0123)), steps(torch.tensor(F32(0.0123))))
    assert not torch.equal(steps(F32(0.0123)), steps(float(F32(0.0123))))  # (the case tells them apart)


FUSED_CASES = [
    ("Adam", dict(lr=F32(1e-3), weight_decay=F32(1e-2))),
    ("AdamW", dict(lr=F32(1e-3))),
    ("Adagrad", dict(lr=F32(1e-2), lr_decay=0.01)),
]
# (not SGD: torch's fused SGD with momentum rounds otherwise than its for-loop for a Python lr too,
# 1-3 of 1023 elements; optkern.torch's follows the for-loop; its lr enters no float32 product)


@pytest.mark.parametrize("kind", ["numpy", "tensor"])
@pytest.mark.parametrize("name,kw", FUSED_CASES, ids=[n for n, _ in FUSED_CASES])
def test_fused_true_steps_as_torchs_fused_step(name, kw, kind):
    """torch's ``fused=True`` step takes lr (a NumPy float32 or a float32 tensor) to C++ as a double:
    double scalars, as for a Python float; so does optkern.torch's with fused=True (it took the
    for-loop's float32 scalars: 5 (Adam), 4 (AdamW), 9 (Adagrad) of 1023 elements off before)."""
    kw = kw if kind == "numpy" else _as(kw, "tensor")
    want = _steps(lambda ps: getattr(torch.optim, name)(ps, fused=True, **kw))
    assert torch.equal(_steps(lambda ps: getattr(ot, name)(ps, fused=True, **kw)), want)


@pytest.mark.parametrize("name,kw", FUSED_CASES, ids=[n for n, _ in FUSED_CASES])
def test_fused_and_for_loop_differ_for_these_cases(name, kw):
    """The premise: here torch's fused step and its for-loop give other bits (the test above would
    pass with the for-loop's rule without it), and its fused step is its Python-float for-loop."""
    with ieee_sqrt():
        loop = _steps(lambda ps: getattr(torch.optim, name)(ps, foreach=False, **kw))
        as_double = _steps(lambda ps: getattr(torch.optim, name)(ps, foreach=False, **_as(kw, "python")))
    fused = _steps(lambda ps: getattr(torch.optim, name)(ps, fused=True, **kw))
    assert not torch.equal(fused, loop)
    assert torch.equal(fused, as_double)
