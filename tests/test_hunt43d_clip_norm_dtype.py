"""``clip_grads_with_norm_`` with a ``total_norm`` of another dtype than the grads, against torch.

torch.nn.utils.clip_grads_with_norm_ computes ``clamp(max_norm / (total_norm + 1e-6), max=1)`` in
the norm tensor's dtype (the 1e-6 rounded to it first in a half dtype, max_norm read in float) and
the grads' ``mul_`` reads that factor in their compute type (float for float32 and half grads,
double for double). optkern computed the factor in the grads' dtype whatever the norm's: a float64
norm of float32 grads (get_total_norm under a float64 model, a norm kept in float64), a float16
norm of float32 grads, a float32 norm of float64 grads clipped by another factor than torch's (up to
half the random cases differed in the last bit). Now the factor is computed in the norm's dtype
(``rules::clip_coef_of``), bit for bit torch's for every pair of dtypes below.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import torch
from torch.nn.utils.clip_grad import _clip_grads_with_norm_ as torch_clip

import optkern

DTYPES = {
    "float64": (np.float64, torch.float64),
    "float32": (np.float32, torch.float32),
    "float16": (np.float16, torch.float16),
    "bfloat16": (ml_dtypes.bfloat16, torch.bfloat16),
}


def _torch(a: np.ndarray, tdt):
    if a.dtype == ml_dtypes.bfloat16:  # (torch takes no ml_dtypes array: through float32, exactly)
        return torch.from_numpy(a.astype(np.float32)).to(tdt)
    return torch.from_numpy(a.copy())


@pytest.mark.parametrize("norm_dt", list(DTYPES))
@pytest.mark.parametrize("grad_dt", list(DTYPES))
def test_factor_rounded_in_the_norms_dtype_as_torch(grad_dt, norm_dt):
    rng = np.random.default_rng(43)
    gdt, tgdt = DTYPES[grad_dt]
    ndt, tndt = DTYPES[norm_dt]
    for _ in range(150):
        g = (rng.standard_normal(7) * 10 ** rng.uniform(-3, 3)).astype(gdt)
        norm = np.array([abs(rng.standard_normal()) * 10 ** rng.uniform(-4, 4)]).astype(ndt)
        max_norm = float(abs(rng.standard_normal()) * 10 ** rng.uniform(-2, 2))
        p = torch.nn.Parameter(torch.zeros(7, dtype=tgdt))
        p.grad = _torch(g, tgdt)
        torch_clip([p], max_norm, _torch(norm, tndt)[0])
        mine = g.copy()
        optkern.clip_grads_with_norm_([mine], max_norm, norm)
        want = p.grad.float().numpy() if grad_dt == "bfloat16" else p.grad.numpy()
        assert np.array_equal(mine.astype(np.float64), want.astype(np.float64)), (g, norm, max_norm)


def test_a_torch_norm_tensor_of_another_dtype_too():
    g = np.full(3, 3.0, np.float32)
    t = torch.tensor([7.0000001], dtype=torch.float64)
    p = torch.nn.Parameter(torch.zeros(3))
    p.grad = torch.from_numpy(g.copy())
    torch_clip([p], 1.3, t[0])
    optkern.clip_grads_with_norm_([g], 1.3, t)
    assert np.array_equal(g, p.grad.numpy())


def test_unknown_norm_dtype_is_refused_natively():
    from optkern import _cpu

    g = np.ones(2, np.float32)
    with pytest.raises(ValueError, match="norm_dtype: expected"):
        _cpu.clip_scale_([g], 1.0, np.ones(1), "int8")
    assert np.array_equal(g, np.ones(2, np.float32))
