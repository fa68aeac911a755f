"""CUDA twin of test_hunt45f_weight_norm_range.py (45th hunt, f): the GPU's weight norm forward
where g / ‖v‖ falls below the normal range (w = g (v / ‖v‖)), and its backward where s / ‖v‖ is
subnormal or rounds to 0 with k = s / ‖v‖² out of range, or g / ‖v‖ subnormal (the row redone
scaled, wn_redo_row).
Same data and bounds as the CPU test. Skipped without CuPy / a device; runs
on the CPU under tools/cuda_emu."""

import numpy as np
import pytest

from gpu import require_gpu
from optkern import norm

cp, _ = require_gpu()

from test_hunt45f_weight_norm_range import ROWS, ulps, wn_ref  # noqa: E402


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_scale_below_normal_range(dtype):
    v = ROWS[dtype]
    g = np.array([1e-3, -3e-4], dtype)
    w, saved = norm.weight_norm(cp.asarray(v), cp.asarray(g))
    want, _, _ = wn_ref(v, g, np.zeros_like(v))
    assert ulps(cp.asnumpy(w), want, dtype) <= 1.5


@pytest.mark.parametrize(
    "v, g, dw",
    [
        (  # float32: s / ‖v‖ ~ 1e-41 (subnormal)
            np.array([[3e20, 1e20, -2e20, 1.2345678e20], [2e20, -1e20, 5e19, 1e20]], np.float32),
            np.array([1e30, -2e29], np.float32),
            np.array([[1.3e-40, -2e-40, 3e-41, 7e-41], [-1.1e-40, 2.5e-40, 9e-41, 4e-41]], np.float32),
        ),
        (  # float64: s / ‖v‖ ~ 1.2e-324 rounds to 0
            np.array([[3e20, 1e20, -2e20, 1.2345678e20]]),
            np.array([1e300]),
            np.array([[1.0, 2.0, 2.0, 0.0]]) * np.finfo(np.float64).smallest_subnormal,
        ),
    ],
)
def test_backward_s_over_norm_below_normal_range(v, g, dw):
    _, saved = norm.weight_norm(cp.asarray(v), cp.asarray(g))
    dg, dv = norm.weight_norm_backward(cp.asarray(dw), cp.asarray(v), cp.asarray(g), saved)
    _, _, want_dv = wn_ref(v, g, dw)
    assert ulps(cp.asnumpy(dv), want_dv, v.dtype) <= 4


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_scale_below_normal_range(dtype):
    big = {np.float32: 3e37, np.float64: 3e307}[dtype]
    v = np.array([[big, 1e-10, 2.5]], dtype)
    g = np.array([1.2345e-3], dtype)
    dw = np.array([[1.0, 1e6, -3.3e6]], dtype)
    _, saved = norm.weight_norm(cp.asarray(v), cp.asarray(g))
    dg, dv = norm.weight_norm_backward(cp.asarray(dw), cp.asarray(v), cp.asarray(g), saved)
    _, want_dg, want_dv = wn_ref(v, g, dw)
    assert ulps(cp.asnumpy(dv), want_dv, dtype) <= 4
    assert ulps(cp.asnumpy(dg), want_dg, dtype) <= 1


def test_scale_underflowing_to_zero_and_subnormal_norm():
    sub = float(np.finfo(np.float32).smallest_subnormal)
    v = np.array([[-4.7379955e08, -1.9063781e10]], np.float32)
    g = np.array([-4.042e-39], np.float32)
    dw = np.array([[1.488715e10, -7.1938153e-09]], np.float32)
    w, saved = norm.weight_norm(cp.asarray(v), cp.asarray(g))
    _, dv = norm.weight_norm_backward(cp.asarray(dw), cp.asarray(v), cp.asarray(g), saved)
    want_w, _, want_dv = wn_ref(v, g, dw)
    assert np.max(np.abs(cp.asnumpy(w).astype(np.float64) - want_w)) <= sub
    assert np.max(np.abs(cp.asnumpy(dv).astype(np.float64) - want_dv)) <= 2 * sub
    # a subnormal saved norm: the backward's row scaled
    v = np.array([[1.4e-43, -1.4e-43], [3e-41, 1e-41]], np.float32)
    g = np.array([1.3656698e-23, 2.5e-30], np.float32)
    dw = np.array([[-3.0837486e09, 1.105051e07], [1.5, -2.5]], np.float32)
    _, saved = norm.weight_norm(cp.asarray(v), cp.asarray(g))
    dg, dv = norm.weight_norm_backward(cp.asarray(dw), cp.asarray(v), cp.asarray(g), saved)
    _, want_dg, want_dv = wn_ref(v, g, dw)
    for r in range(2):
        assert ulps(cp.asnumpy(dg)[r], want_dg[r], np.float32) <= 1
        assert ulps(cp.asnumpy(dv)[r], want_dv[r], np.float32) <= 4
