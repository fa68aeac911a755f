"""CUDA twin of test_hunt45k_weight_norm.py (45th hunt, k): the GPU's weight norm backward with a
subnormal g in the scaled redo (wn_redo_row: g 2^-c too), and one-element slices (dv = 0 exactly).
Same data and bounds as the CPU test. Skipped without CuPy / a device; runs on the CPU under
tools/cuda_emu."""

import numpy as np
import pytest

from gpu import require_gpu
from optkern import norm

cp, _ = require_gpu()

from test_hunt45f_weight_norm_range import ulps, wn_ref  # noqa: E402


def bwd(v, g, dw):
    _, saved = norm.weight_norm(cp.asarray(v), cp.asarray(g))
    dg, dv = norm.weight_norm_backward(cp.asarray(dw), cp.asarray(v), cp.asarray(g), saved)
    return cp.asnumpy(dg), cp.asnumpy(dv)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_subnormal_g_huge_dw(dtype):
    fi = np.finfo(dtype)
    v = np.array([[1.0, -0.75, 0.3], [2.5, 1.25, -0.6]], dtype)
    g = np.array([fi.tiny * 0.0123, -fi.tiny * 0.3711], dtype)
    dw = np.array([[fi.max / 4, fi.max / 8, -fi.max / 5], [fi.max / 3, -fi.max / 16, fi.max / 7]], dtype)
    dg, dv = bwd(v, g, dw)
    _, want_dg, want_dv = wn_ref(v, g, dw)
    for r in range(2):
        assert ulps(dv[r], want_dv[r], dtype) <= 4
        assert ulps(dg[r], want_dg[r], dtype) <= 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_element_rows(dtype):
    sub = np.finfo(dtype).smallest_subnormal
    v = np.array([[1e-20], [-2.0], [-3 * sub], [1e30]], dtype)
    g = np.array([1.0, 0.5, 3.0, 1e-30], dtype)
    dw = np.array([[1.0], [3.0], [2.0], [5e20]], dtype)
    dg, dv = bwd(v, g, dw)
    np.testing.assert_array_equal(dv, np.zeros_like(dv))
    np.testing.assert_array_equal(dg, dw[:, 0] * np.sign(v[:, 0]))
