"""Defects of hunt 27 fixed in the native code (C++ and its CUDA twin), against the torch
behaviour they are measured by.

* Eval-mode channel backward (batch norm with ``training=False``, instance norm with
  ``use_input_stats=False``): ``dx = dy * weight * rstd`` does not depend on x, but the kernel formed
  ``rstd * (g - 0 - x̂ * 0)``: where x̂ is not finite (x NaN, or a finite x whose x̂ overflows:
  y = ±inf) ``x̂ * 0`` is NaN and so is dx. torch's dx is finite there.
* Dropout's float32 scale: the kernel used ``float32(1 / (1 - p))`` (the double quotient rounded
  once), commented "as torch's dropout"; torch forms ``1 - p`` in float32 first
  (``noise.div_(1 - p)`` on a float32 tensor, CPU; the CUDA kernel's ``1.0 / (float)(1 - p)``),
  which differs by an ulp for about a quarter of the p values.
"""

import numpy as np
import pytest

from optkern import norm

torch = pytest.importorskip("torch", reason="torch is not installed")
F = torch.nn.functional


def _eval(fn, x, w, rm, rv):
    if fn == "batch_norm":
        return norm.batch_norm(x, w, None, rm, rv, training=False)
    return norm.instance_norm(x, w, None, rm, rv, use_input_stats=False)


def _torch_eval(fn, x, w, rm, rv, dy):
    tx, tw = torch.from_numpy(x.copy()).requires_grad_(), torch.from_numpy(w.copy()).requires_grad_()
    trm, trv = torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy())
    if fn == "batch_norm":
        y = F.batch_norm(tx, trm, trv, tw, None, training=False)
    else:
        y = F.instance_norm(tx, trm, trv, tw, None, use_input_stats=False)
    y.backward(torch.from_numpy(dy))
    return tx.grad.numpy()


def _eval_case(dtype, bad):
    """(N=2, C=2, S=2) x whose element [0, 0, 0] is ``bad``; a running_var of 0.01 (rstd ~ 10)."""
    x = np.array([[[bad, 1.0], [0.5, 2.0]], [[-1.0, 0.25], [3.0, -2.0]]], dtype)
    return x, np.array([1.5, -0.5], dtype), np.zeros(2, dtype), np.full(2, 1e-2, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fn", ["batch_norm", "instance_norm"])
def test_eval_forward_of_the_cases_is_torchs(dtype, fn):
    """(not a defect: y = ±inf / NaN where torch has it, so the cases below are torch's too)"""
    for bad in (np.finfo(dtype).max / 2, np.nan):
        x, w, rm, rv = _eval_case(dtype, bad)
        y, _ = _eval(fn, x, w, rm, rv)
        tf = F.batch_norm if fn == "batch_norm" else F.instance_norm
        kw = {"training": False} if fn == "batch_norm" else {"use_input_stats": False}
        ty = tf(torch.from_numpy(x), torch.from_numpy(rm), torch.from_numpy(rv), torch.from_numpy(w), None, **kw)
        np.testing.assert_allclose(y, ty.numpy(), rtol=1e-6)


@pytest.mark.parametrize("bad", ["overflow", "nan"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fn", ["batch_norm", "instance_norm"])
def test_eval_dx_does_not_depend_on_x(fn, dtype, bad):
    x, w, rm, rv = _eval_case(dtype, np.finfo(dtype).max / 2 if bad == "overflow" else np.nan)
    dy = np.ones_like(x)
    _, s = _eval(fn, x, w, rm, rv)
    dx, _, _ = (norm.batch_norm_backward if fn == "batch_norm" else norm.instance_norm_backward)(dy, x, w, s)
    ref = _torch_eval(fn, x, w, rm, rv, dy)
    assert np.isfinite(ref).all()  # torch: dy * w * rstd everywhere
    # measured: dx[0, 0, 0] is NaN (the other elements already match)
    np.testing.assert_allclose(dx, ref, rtol=1e-6)


def _dropout_scales(dtype, ps):
    """(ours, torch's) scale of a kept element for each p: the largest value of dropout(ones) (4096
    elements: for p <= 0.99 none kept has odds below 1e-17)."""
    tdt = torch.float32 if dtype == np.float32 else torch.float64
    ours, theirs = [], []
    for p in ps:
        ours.append(norm.dropout(np.ones(4096, dtype), float(p), 5).max())
        theirs.append(F.dropout(torch.ones(4096, dtype=tdt), float(p)).max().item())
    return np.array(ours, np.float64), np.array(theirs, np.float64)


P_GRID = np.linspace(0.001, 0.99, 400)


def test_torch_dropout_scales():
    """torch's scale, as its float32 kernel forms it (float32(1 - p) first, then the quotient), and
    in float64 the double quotient: what the optkern scale is compared with below."""
    _, t32 = _dropout_scales(np.float32, P_GRID)
    np.testing.assert_array_equal(t32, (np.float32(1) / (1 - P_GRID).astype(np.float32)).astype(np.float64))
    ours, t64 = _dropout_scales(np.float64, P_GRID)
    np.testing.assert_array_equal(t64, 1.0 / (1.0 - P_GRID))
    np.testing.assert_array_equal(ours, t64)  # float64: optkern's is torch's


def test_dropout_float32_scale_is_torchs():
    ours, theirs = _dropout_scales(np.float32, P_GRID)
    np.testing.assert_array_equal(ours, theirs)
