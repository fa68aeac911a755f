"""optkern.torch takes a 0-d NumPy array ``lr`` where torch.optim raises a TypeError: in ``LBFGS``
(torch's ``add_(alpha=lr)``) and in ``fused=True`` groups (torch's fused kernels take no array).
The documented choice (README's "From PyTorch", the classes' docstrings) is to accept it, a superset
of torch: it steps as torch's for-loop steps with it (``fused`` is only an implementation keyword
here, every step being fused), and LBFGS as with the float it holds. Pinned both ways: torch still
refuses (else the docs' difference is stale), optkern still accepts and steps as said."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import optkern.torch as okt

torch = pytest.importorskip("torch")

from torch_ieee_sqrt import ieee_sqrt  # noqa: E402 (after the torch skip)

SIZES = (1, 7, 1023)


def _params(dtype, seed=56):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=gen, dtype=dtype).requires_grad_() for n in SIZES]


def _lbfgs(lib, lr, dtype, steps=4):
    params = _params(dtype)
    d = [torch.linspace(1.0, 3.0, p.numel(), dtype=dtype) for p in params]
    opt = lib.LBFGS(params, lr=lr, max_iter=5)

    def closure():
        opt.zero_grad()
        loss = sum((di * p * p).sum() for di, p in zip(d, params))
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)
    return [p.detach().clone() for p in params]


def _adam(lib, lr, dtype, steps=20, **impl):
    params = _params(dtype)
    gen = torch.Generator().manual_seed(7)
    opt = lib.Adam(params, lr=lr, weight_decay=0.1, **impl)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen, dtype=dtype)
        with ieee_sqrt():
            opt.step()
    return [p.detach().clone() for p in params]


def test_torch_refuses_a_0d_array_lr_in_lbfgs_and_fused_steps():
    # (NumPy 2 warns first, of torch's Tensor.__array_wrap__ signature, on the way to the TypeError)
    with pytest.raises(TypeError), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        _lbfgs(torch.optim, np.array(0.5), torch.float64, steps=1)
    with pytest.raises(TypeError):
        _adam(torch.optim, np.array(1e-2), torch.float32, steps=1, fused=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_lbfgs_steps_with_a_0d_array_lr_as_with_its_float(dtype):
    ours = _lbfgs(okt, np.array(0.5), dtype)
    with_float = _lbfgs(okt, 0.5, dtype)
    for a, b in zip(ours, with_float):
        assert torch.equal(a, b)


@pytest.mark.parametrize("lr", [np.array(1e-2), np.array(1e-2, np.float32)], ids=["f64", "f32"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_a_fused_group_steps_with_a_0d_array_lr_as_torchs_fused_step_with_that_tensor(dtype, lr):
    # (torch's fused step takes a tensor lr to C++ as a double: a float32 one's scalars in double,
    # not in float32 as its for-loop's; the array steps as that tensor would)
    ours = _adam(okt, lr, dtype, fused=True)
    theirs = _adam(torch.optim, torch.from_numpy(lr.copy()), dtype, fused=True)
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)
