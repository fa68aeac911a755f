"""CUDA twin of test_hunt39b_norm.py (39th hunt, b): the GPU's scaled fallback (cuda/norm_scaled.cuh;
rows or channels whose x² overflows, or tiny ones with an eps below 2**-100) summed each thread's
share in float32, around the first element: for rows of 65536 values ±c near the overflow, y came
out ~1e-6 off (10-20 ulps), the CPU's ~2e-4 (fixed there too). Both now sum in double, the CPU's
corrected two-pass, and agree with a float64 reference to a few ulps. Skipped without CuPy / a
device; runs on the CPU under tools/cuda_emu."""

import numpy as np
import pytest

from optkern import _backend, norm

cp = pytest.importorskip("cupy", reason="CuPy is not installed: CUDA norm tests skipped")
if not _backend.cuda_built():
    pytest.skip("optkern was built without the CUDA module", allow_module_level=True)
try:
    if _backend.cuda_module().device_count() == 0:
        pytest.skip("no CUDA device", allow_module_level=True)
except Exception as e:  # pragma: no cover - driver problems
    pytest.skip(f"CUDA unavailable: {e}", allow_module_level=True)

M = 65536
_CASES = {"overflow": (1.7e20, 1e-5), "tiny-eps": (1.7e-18, 1e-45)}


def _data(case, shape, seed=0):
    c, eps = _CASES[case]
    rng = np.random.default_rng(seed)
    signs = np.where(rng.random(shape) < 0.5, -1.0, 1.0)
    return (np.float32(c) * signs).astype(np.float32), eps


def _rel(a, ref):
    a = cp.asnumpy(a).astype(np.float64)
    return float(np.max(np.abs(a - ref)) / np.max(np.abs(ref)))


def _ref_rms(x, eps):
    x64 = x.astype(np.float64)
    return x64 / np.sqrt((x64**2).mean(-1, keepdims=True) + float(np.float32(eps)))


def _ref_ln(x, eps, axis=-1):
    x64 = x.astype(np.float64)
    d = x64 - x64.mean(axis, keepdims=True)
    return d / np.sqrt((d**2).mean(axis, keepdims=True) + float(np.float32(eps)))


@pytest.mark.parametrize("case", sorted(_CASES))
def test_row_norms_of_long_extreme_rows_are_accurate(case):
    x, eps = _data(case, (2, M))
    g = cp.asarray(x)
    assert _rel(norm.rms_norm(g, M, eps=eps)[0], _ref_rms(x, eps)) < 2e-7
    assert _rel(norm.layer_norm(g, M, eps=eps)[0], _ref_ln(x, eps)) < 2e-7
    y = norm.group_norm(g.reshape(2, 4, M // 4), 1, eps=eps)[0]
    assert _rel(y.reshape(2, M), _ref_ln(x, eps)) < 2e-7


@pytest.mark.parametrize("case", sorted(_CASES))
def test_batch_norm_of_extreme_channels_is_accurate(case):
    x, eps = _data(case, (M, 2))
    y, _ = norm.batch_norm(cp.asarray(x), eps=eps)
    assert _rel(y, _ref_ln(x, eps, axis=0)) < 2e-7


@pytest.mark.parametrize("dw_scale", [1.0, 1e37])
def test_weight_norm_backward_of_a_subnormal_norm_row_is_accurate(dw_scale):
    # the redo's s = Σ dw v and ‖v 2**-b‖² by one thread in float32: dg 1.3e-4 off for 65536 values
    v, _ = _data("overflow", (2, M))
    v = (np.sign(v) * 1e-42).astype(np.float32)  # ±1e-42: a subnormal ‖v‖
    dw = (np.float32(dw_scale) * (1 + 0.1 * np.random.default_rng(3).random((2, M)))).astype(np.float32)
    g = cp.ones(2, dtype=cp.float32)
    _, s = norm.weight_norm(cp.asarray(v), g, 0)
    dg, _ = norm.weight_norm_backward(cp.asarray(dw), cp.asarray(v), g, s)
    v64, d = v.astype(np.float64), dw.astype(np.float64)
    ref = (d * v64).sum(1) / np.sqrt((v64**2).sum(1))
    assert np.max(np.abs(cp.asnumpy(dg) - ref) / np.abs(ref)) < 1e-6
