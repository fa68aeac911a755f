"""CUDA twin of test_hunt42e_norm.py's float32 sums (42nd hunt, j): the GPU kernels still summed in float.

- cuda/norm_rop.cu's col_sums_kernel (the MLP's batch-norm R-operator: one thread a column) added
  a column's N terms one after the other in float32, as cpp/norm_rop.cpp's GroupSums did: with
  directions of a common offset R{dβ} came out 2e-6 - 5e-6 off, dh 4e-5 - 1e-4 and R{dh} 1.4e-4 -
  2.4e-4 of their sizes (now 1e-8 - 5e-8, 2e-6 - 3e-6 and 2e-6 - 7e-6).
- cuda/norm_weight.cu's wn_backward_kernel summed s = Σ dw v in float per thread (M / 256 terms
  each): for a row of 1e6 terms ±(1 + ~1e-4) each thread's partial sum, past 2048, dropped the
  small part of every term alike, dg came out 3e-5 off and dv (which cancels where dw is parallel
  to v) wholly wrong (torch 2.13's CPU kernel: dg 7e-5, dv 3x its size off).

Both now sum in double and round once, as the CPU. Against float64 references of the same float32
inputs. Skipped without CuPy / a device; runs on the CPU under tools/cuda_emu."""

import numpy as np
import pytest

from gpu import require_gpu
from optkern import norm

cp, _ = require_gpu()


def _rel(a, b):
    return float(np.abs(cp.asnumpy(a).astype(np.float64) - b).max() / np.abs(b).max())


@pytest.mark.parametrize("shape", [(16384, 4), (4096, 8), (65536, 2)])
def test_batch_norm_rop_float32_column_sums(shape):
    """As test_hunt42e_norm's case (its bounds): against the array-generic formulation
    (normalization.py) in float64 on the same float32 inputs (numbers: the module docstring)."""
    from optkern.nn import normalization as nz

    rng = np.random.default_rng(1)
    N, D = shape
    h = rng.standard_normal(shape).astype(np.float32)
    dy, rh, rdy = ((1 + 0.01 * rng.standard_normal(shape)).astype(np.float32) for _ in range(3))
    gamma = (1 + rng.standard_normal(D)).astype(np.float32)
    vg, vb = (rng.standard_normal(D).astype(np.float32) for _ in range(2))
    g = cp.asarray
    _, saved = nz.norm_forward(g(h), g(gamma), cp.zeros(D, np.float32), 1e-5, 0)
    _, rsaved = nz.norm_rop_forward(g(rh), g(gamma), g(vg), g(vb), saved, 0)
    dh, rdh, _, rdb = nz.norm_rop_backward(g(dy), g(rdy), g(gamma), g(vg), saved, rsaved, 0)
    f = lambda a: a.astype(np.float64)
    _, (xhat, rstd) = nz._generic_forward(f(h), f(gamma), np.zeros(D), 1e-5, 0)
    s64 = nz.Saved(f(h), None, xhat=xhat, rstd=rstd, axis=0)
    _, rs64 = nz.norm_rop_forward(f(rh), f(gamma), f(vg), f(vb), s64, 0)
    dh64, rdh64, _, rdb64 = nz.norm_rop_backward(f(dy), f(rdy), f(gamma), f(vg), s64, rs64, 0)
    assert _rel(rdb, rdb64) <= 1e-7
    assert _rel(dh, dh64) <= 6e-6
    assert _rel(rdh, rdh64) <= 2e-5


def _weight_norm_errors(v, dw, dim):
    """(dg, dv) relative errors of the GPU's weight_norm_backward (g = 1) against float64."""
    rows = v.shape[0] if dim == 0 else 1
    g = cp.ones(rows, np.float32)
    _, saved = norm.weight_norm(cp.asarray(v), g, dim)
    dg, dv = norm.weight_norm_backward(cp.asarray(dw), cp.asarray(v), g, saved)
    vd, dwd = v.astype(np.float64).reshape(rows, -1), dw.astype(np.float64).reshape(rows, -1)
    nrm = np.sqrt((vd * vd).sum(1))
    s = (dwd * vd).sum(1)
    rdv = (dwd - (s / nrm**2)[:, None] * vd) / nrm[:, None]
    return _rel(dg, s / nrm), _rel(dv.reshape(rows, -1), rdv)


@pytest.mark.parametrize("shape, dim", [((1, 1000000), 0), ((1000000,), None), ((4, 262144), 0)])
def test_weight_norm_backward_float32_long_rows(shape, dim):
    """test_hunt42e_norm's case (dw near parallel to v, normal values): the GPU's 256 thread sums
    kept s within these bounds before too (dg 1.4e-7, dv 1e-4 - 1.7e-4); the next case is the one
    they missed. dv's bound is 1.5x the CPU's: s and ‖v‖ rounded to float32 once, magnified 1e3 by
    the cancellation, leave 3e-5 - 1.8e-4 here (torch 2.13's CPU kernel: 4e-4 - 2e-3)."""
    rng = np.random.default_rng(2)
    v = rng.standard_normal(shape).astype(np.float32)
    dw = (v + 1e-3 * rng.standard_normal(shape)).astype(np.float32)
    edg, edv = _weight_norm_errors(v, dw, dim)
    assert edg <= 1e-6
    assert edv <= 3e-4


@pytest.mark.parametrize("shape, dim", [((2, 1000000), 0), ((1000000,), None)])
def test_weight_norm_backward_float32_terms_of_a_common_size(shape, dim):
    """v = ±1, dw = v (1 + 5e-5 .. 1e-4): each thread's float partial sum of ~3900 terms passed
    2048, whose half ulp (1.2e-4) rounded away the small part of every later term: dg 3e-5 off, dv
    (dw - s v / ‖v‖², ~3e-5 of dw) 1.2x its size. Summed in double: dg 1e-8 - 3e-8, dv 7e-4 - 9e-4
    (s rounded to float32 once; the CPU's: 3e-8, 1.2e-3)."""
    rng = np.random.default_rng(4)
    v = np.where(rng.random(shape) < 0.5, -1, 1).astype(np.float32)
    dw = (v * (1 + 5e-5 + 5e-5 * rng.random(shape))).astype(np.float32)
    edg, edv = _weight_norm_errors(v, dw, dim)
    assert edg <= 2e-7
    assert edv <= 1e-2
