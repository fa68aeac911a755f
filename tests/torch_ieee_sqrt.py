"""torch.optim with an IEEE (correctly rounded) float32 sqrt put in for torch's own.

torch's CPU sqrt is not correctly rounded: torch 2.13 differs from IEEE sqrt on ~0.7% of random
float32 inputs on an Intel Xeon with AVX-512 and on more on AMD Zen 3 (AVX2), and its float64 sqrt
on ~1.3% of random float64 inputs (AVX-512 Xeon, measured), while optkern's sqrt is IEEE's on
every target (as the GPU's is). With this one op replaced, torch.optim's
for-loop implementation is optkern's bit for bit (tests/test_optim_torch_float32.py,
tests/test_torch_adapter.py): the substitution isolates the one rounding the libraries do not
share, so the tests need no ulp allowance that holds on one CPU and not on another.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

_SQRT = torch.Tensor.sqrt


def _sqrt(t):
    if t.dtype == torch.float64:  # (torch's own float64 sqrt is not correctly rounded either: NumPy's is)
        with np.errstate(invalid="ignore"):  # (a negative's NaN, as torch's, without a warning)
            return torch.from_numpy(np.sqrt(t.detach().cpu().numpy())).to(t.device)
    # float64 has more than 2 x 24 + 2 bits: its sqrt rounded to float32 is correctly rounded
    return _SQRT(t.double()).to(t.dtype)


def _sqrt_(t):
    return t.copy_(_sqrt(t.double()))


@contextlib.contextmanager
def ieee_sqrt():
    """Within the block, Tensor.sqrt and Tensor.sqrt_ (what torch.optim's for-loop calls) are IEEE's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.Tensor, "sqrt", _sqrt)
        mp.setattr(torch.Tensor, "sqrt_", _sqrt_)
        yield


def torch_optim_stepper(name: str, params, **hp):
    """``step(grads)`` of ``torch.optim.<name>`` over the tensors ``params`` (its for-loop form, IEEE
    sqrt): each NumPy array of ``grads`` becomes its param's ``.grad``, then one ``opt.step()``. The
    reference that optkern's steps are compared with bit for bit."""
    opt = getattr(torch.optim, name)(params, foreach=False, **hp)

    def step(grads) -> None:
        for p, g in zip(params, grads):
            p.grad = torch.tensor(g)
        with ieee_sqrt():
            opt.step()

    return step


def step_either(opt) -> None:
    """``opt.step()``: under ``ieee_sqrt()`` when ``opt`` is torch.optim's (the reference), plainly when
    it is optkern's."""
    if type(opt).__module__.startswith("torch.optim"):
        with ieee_sqrt():
            opt.step()
    else:
        opt.step()


def run_seeded(lib, name, dtype, sizes, hyper, key, value, steps=20, set_later=False, placeholder=None):
    """``lib.<name>`` (torch.optim's for-loop form or optkern.torch's) over seeded random params of
    ``sizes`` for ``steps`` steps of seeded random grads; the params after. ``key=value`` is the
    hyper-parameter under test: given to the constructor, or (``set_later``) set on the group before
    the third step, the constructor taking ``placeholder``."""
    gen = torch.Generator().manual_seed(56)
    params = [torch.randn(n, generator=gen, dtype=dtype).requires_grad_() for n in sizes]
    impl = {"foreach": False} if lib is torch.optim else {}
    opt = getattr(lib, name)(params, **{key: placeholder if set_later else value}, **hyper, **impl)
    for t in range(steps):
        if set_later and t == 2:
            opt.param_groups[0][key] = value
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen, dtype=dtype)
        step_either(opt)
    return [p.detach() for p in params]
