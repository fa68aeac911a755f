"""Weight norm's saved ``‖v‖`` per slice: the square root of the double sum of squares, taken in
double and rounded once (cpp/norm_cpu.hpp's row_norm2, cuda/norm_weight.cu). It was the float32
square root of the sum rounded to float32: ~13% of the slices 1 ulp off the correctly rounded norm."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import optkern.norm as N
from ulps import bits_apart_f32


@pytest.mark.parametrize("M", [7, 33, 1023])
def test_norm_close_to_rounded_once(M):
    rng = np.random.default_rng(5400 + M)
    v = (rng.standard_normal((800, M)) * 10.0 ** rng.uniform(-3, 3, (800, 1))).astype(np.float32)
    _, saved = N.weight_norm(v, np.ones(800, np.float32), 0)
    want = np.sqrt((v.astype(np.float64) ** 2).sum(axis=1)).astype(np.float32)
    d = bits_apart_f32(saved.norm, want)
    assert d.max() <= 1
    assert np.count_nonzero(d) < 0.1 * d.size  # (the float32 square root: 13-15%; now 2-7%, float32 products)


@pytest.mark.parametrize("dim", [None, 0, 1, -1])
def test_w_and_grads_match_torch(dim):
    rng = np.random.default_rng(5401)
    v = rng.standard_normal((7, 33)).astype(np.float32)
    gshape = () if dim is None else tuple(s if i == dim % 2 else 1 for i, s in enumerate(v.shape))
    g = rng.standard_normal(gshape).astype(np.float32)
    dw = rng.standard_normal(v.shape).astype(np.float32)
    w, saved = N.weight_norm(v, g, dim)
    dg, dv = N.weight_norm_backward(dw, v, g, saved)
    vt = torch.from_numpy(v).double().requires_grad_()
    gt = torch.from_numpy(g).double().requires_grad_()
    wt = torch._weight_norm(vt, gt, -1 if dim is None else dim % 2)
    wt.backward(torch.from_numpy(dw).double())
    np.testing.assert_allclose(w, wt.detach().numpy(), rtol=3e-7, atol=1e-7)
    np.testing.assert_allclose(dv, vt.grad.numpy(), rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(dg, gt.grad.numpy(), rtol=2e-6, atol=1e-6)
