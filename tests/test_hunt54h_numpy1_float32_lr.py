"""A NumPy float32 lr under NumPy 1.x's promotion: ``np.float32 op float`` is float64 there, so
torch's for-loop computes its step scalars in double, as a Python float's; optkern.torch follows
the promotion it finds (``_tensor_lr.NEP50_FLOAT32``, probed by behaviour) and both branches are
taken here by setting the probe (NumPy 2 is installed: torch's NumPy 1.x behaviour is not run)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import optkern.torch as ot  # noqa: E402
from optkern.torch import _tensor_lr  # noqa: E402

N = 1023
LR = np.float32(1e-3)


def _steps(name, lr, **kw):
    gen = torch.Generator().manual_seed(N)
    p = torch.randn(N, generator=gen).requires_grad_()
    opt = getattr(ot, name)([p], lr=lr, **kw)
    for _ in range(20):
        p.grad = torch.randn(N, generator=gen)
        opt.step()
    return p.detach()


def test_probe_reads_numpys_promotion():
    assert _tensor_lr.NEP50_FLOAT32 is (type(np.float32(1) * 1.0) is np.float32)


@pytest.mark.parametrize("name,kw", [("Adam", {}), ("AdamW", {}), ("Adagrad", {"lr_decay": 0.01})])
def test_numpy1_promotion_steps_as_a_python_float(monkeypatch, name, kw):
    as_tensor = _steps(name, torch.tensor(LR), **kw)
    as_double = _steps(name, float(LR), **kw)
    assert not torch.equal(as_tensor, as_double)  # (the cases tell the two rules apart)
    monkeypatch.setattr(_tensor_lr, "NEP50_FLOAT32", False)
    assert torch.equal(_steps(name, LR, **kw), as_double)
    assert torch.equal(_steps(name, torch.tensor(LR), **kw), as_tensor)  # (a tensor lr: not NumPy's)
    monkeypatch.setattr(_tensor_lr, "NEP50_FLOAT32", True)
    assert torch.equal(_steps(name, LR, **kw), as_tensor)
