"""CUDA twin of test_hunt46a_mean_lo.py (46th hunt, a): the GPU's row norms (layer, instance) of rows
far from 0 normalize with the mean's low part (rules::mean_lo) in the forward, the dx kernel and the
parameter sums (GradSumOp). Same data, reference and bounds as the CPU test. Skipped without CuPy /
a device; runs on the CPU under tools/cuda_emu."""

import numpy as np
import pytest

from gpu import require_gpu
from optkern.norm import functional as F

cp, _ = require_gpu()

from test_hunt46a_mean_lo import EPS, group_case, offset_rows, ref_rows, within  # noqa: E402


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_norm_far_from_zero(dtype):
    R, M = 16, 257
    x = offset_rows(dtype, (R, M))
    rng = np.random.default_rng(1)
    w = (1.0 + 0.1 * rng.standard_normal(M)).astype(dtype)
    dy = rng.standard_normal((R, M)).astype(dtype)
    gx, gw, gdy = cp.asarray(x), cp.asarray(w), cp.asarray(dy)
    y, saved = F.layer_norm(gx, (M,), gw, cp.zeros(M, dtype), eps=EPS)
    dx, dw, db = (cp.asnumpy(a) for a in F.layer_norm_backward(gdy, gx, gw, saved))
    ry, rdx, rdw, rdb = ref_rows(x, np.broadcast_to(w, (R, M)), dy, M)
    within(cp.asnumpy(y), ry, 4.0, 4)
    within(dx, rdx, 4.0, 16)
    within(dw, rdw, np.sqrt(R) * 4, 16)
    within(db, rdb, np.sqrt(R) * 4, 4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_instance_norm_far_from_zero(dtype):
    N, C, H, W = 2, 3, 7, 9
    x = offset_rows(dtype, (N, C, H, W), seed=2)
    rng = np.random.default_rng(3)
    w = (1.0 + 0.1 * rng.standard_normal(C)).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    gx, gw = cp.asarray(x), cp.asarray(w)
    y, saved = F.instance_norm(gx, weight=gw, bias=cp.zeros(C, dtype), eps=EPS)
    dx, dw, _ = (cp.asnumpy(a) for a in F.instance_norm_backward(cp.asarray(dy), gx, gw, saved))
    rows = (N * C, H * W)
    wr = np.broadcast_to(np.tile(w, N)[:, None], rows)
    ry, rdx, _, _ = ref_rows(x.reshape(rows), wr, dy.reshape(rows), H * W)
    within(cp.asnumpy(y).reshape(rows), ry, 4.0, 4)
    within(dx.reshape(rows), rdx, 4.0, 16)
    x64 = x.astype(np.float64) - float(x.flat[0])
    xh = (x64 - x64.mean((2, 3), keepdims=True)) / np.sqrt(x64.var((2, 3), keepdims=True) + EPS)
    within(dw, (dy.astype(np.float64) * xh).sum((0, 2, 3)), 4 * np.sqrt(N * H * W), 16)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_group_norm_far_from_zero(dtype):
    y, dx, ry, rdx = group_case(dtype, cp)
    within(y, ry, 4.0, 4)
    within(dx, rdx, 4.0, 16)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_instance_norm_with_running_buffers_far_from_zero(dtype):
    N, C, S = 2, 3, 40
    x = offset_rows(dtype, (N, C, S), seed=7)
    dy = np.random.default_rng(8).standard_normal(x.shape).astype(dtype)
    gx = cp.asarray(x)
    y, saved = F.instance_norm(gx, running_mean=cp.zeros(C, dtype), running_var=cp.ones(C, dtype), eps=EPS)
    dx = cp.asnumpy(F.instance_norm_backward(cp.asarray(dy), gx, None, saved)[0])
    ry, rdx, _, _ = ref_rows(x.reshape(N * C, S), np.ones((N * C, S)), dy.reshape(N * C, S), S)
    within(cp.asnumpy(y).reshape(N * C, S), ry, 4.0, 4)
    within(dx.reshape(N * C, S), rdx, 4.0, 16)
