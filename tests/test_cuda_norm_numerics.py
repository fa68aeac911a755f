"""The GPU norms at the edges of the floating-point range (issue 20): the same inputs as
test_norm_numerics.py, where the CPU results are checked against scaled float64 references; here
the CuPy results must equal the CPU's to the dtype's rounding (reduction orders differ), and NaN
where the CPU has NaN. Skipped without CuPy, the CUDA module and a device."""

import math

import numpy as np
import pytest

from gpu import require_gpu
from optkern import norm

cp, _ = require_gpu()

RTOL = {np.float32: 1e-5, np.float64: 1e-13}


def _wide(shape, dtype, seed, lo, hi):
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    mag = np.exp(rng.uniform(math.log(lo), math.log(hi), n))
    return (mag * rng.choice([-1.0, 1.0], n)).astype(dtype).reshape(shape)


def _cases(dtype):
    big = 1e30 if dtype == np.float32 else 1e300
    tiny = 1e-40 if dtype == np.float32 else 1e-300
    sub = float(np.finfo(dtype).smallest_subnormal)
    bad = np.random.default_rng(3).standard_normal((3, 9)).astype(dtype)
    bad[1, 4] = np.inf
    return {
        "huge": _wide((3, 1023), dtype, 1, big / 100, big),
        "wide": _wide((2, 3001), dtype, 2, tiny, big),
        "tiny": _wide((2, 7), dtype, 3, tiny, tiny * 8),
        "subnormal": np.array([[3 * sub * 2**10, 4 * sub * 2**10]], dtype),
        "zeros": np.zeros((2, 5), dtype),
        "non-finite": bad,
    }


CALLS = {
    "layer_norm": lambda x, eps: norm.layer_norm(x, x.shape[1], eps=eps),
    "rms_norm": lambda x, eps: norm.rms_norm(x, x.shape[1], eps=eps),
    "group_norm": lambda x, eps: norm.group_norm(x[:, :, None], 1, eps=eps),
    "instance_norm": lambda x, eps: norm.instance_norm(x[:, None, :], eps=eps),
    "batch_norm": lambda x, eps: norm.batch_norm(x.T.copy(), eps=eps),  # rows become channels
}


def _same(g, c, dtype, scale=0.0):
    """g equals c to RTOL, or to RTOL * scale absolutely: a mean of values of both signs carries
    the rounding of its terms (scale = max |x|), a normalized output the rounding of the mean it
    subtracts (scale = max |y|); reduction orders differ between the CPU and the GPU."""
    g = cp.asnumpy(g)
    assert np.array_equal(np.isnan(g), np.isnan(c))
    atol = max(float(np.finfo(dtype).tiny), RTOL[dtype] * scale)
    np.testing.assert_allclose(g, c, rtol=RTOL[dtype], atol=atol)


def _amax(a):
    a = np.abs(a[np.isfinite(a)])
    return float(a.max()) if a.size else 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", ["huge", "wide", "tiny", "subnormal", "zeros", "non-finite"])
@pytest.mark.parametrize("fn", sorted(CALLS))
@pytest.mark.parametrize("eps", ["1e-5", "tiny"])
def test_norms_match_the_cpu_at_the_edges(dtype, case, fn, eps):
    eps = 1e-5 if eps == "1e-5" else (1e-40 if dtype == np.float32 else 1e-300)  # tiny: far below the squares
    x = _cases(dtype)[case]
    y_c, s_c = CALLS[fn](x, eps)
    y_g, s_g = CALLS[fn](cp.asarray(x), eps)
    _same(y_g, y_c, dtype, _amax(y_c))
    for name in s_c._fields:
        a = getattr(s_c, name)
        if isinstance(a, np.ndarray):
            _same(getattr(s_g, name), a, dtype, _amax(x) if name == "mean" else 0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", ["huge", "wide", "tiny", "subnormal"])
def test_weight_norm_matches_the_cpu_at_the_edges(dtype, case):
    v = _cases(dtype)[case]
    g = np.full(v.shape[0], 2.0, dtype)
    w_c, s_c = norm.weight_norm(v, g)
    w_g, s_g = norm.weight_norm(cp.asarray(v), cp.asarray(g))
    _same(w_g, w_c, dtype)
    _same(s_g.norm, s_c.norm, dtype)
    dw = np.random.default_rng(4).standard_normal(v.shape).astype(dtype)
    dg_c, dv_c = norm.weight_norm_backward(dw, v, g, s_c)
    dg_g, dv_g = norm.weight_norm_backward(cp.asarray(dw), cp.asarray(v), cp.asarray(g), s_g)
    _same(dg_g, dg_c, dtype)
    _same(dv_g, dv_c, dtype)


@pytest.mark.parametrize(
    "dtype, v, dw",
    [
        (np.float64, [[3e-200, 4e-200]], [[1e-200, 2e-200]]),  # s = Σ dw v underflows to 0
        (np.float32, [[3e-20, 4e-20]], [[1e-25, 2e-25]]),  # s subnormal
        (np.float64, [[1.5e-323, 2e-323, 0.0]], [[1e-300, 1e-300, 1e-300]]),  # subnormal ‖v‖, g / ‖v‖ = inf
        (np.float32, [[1e-45, 1e-45, 0.0], [2e-44, -3e-44, 1e-44]], [[1e-3, -2e-3, 3e-3], [0.0, 0.0, 0.0]]),
    ],
)
def test_weight_norm_rows_of_underflowing_sums_or_subnormal_norms_match_the_cpu(dtype, v, dw):
    """The rows the CPU computes again scaled (tests/test_hunt31_norm.py checks its results against
    exact references): the same rows on the GPU, forward and backward (a dw = 0 row: zeros)."""
    v, dw = np.array(v, dtype), np.array(dw, dtype)
    g = np.linspace(0.5, 2.0, v.shape[0]).astype(dtype)
    w_c, s_c = norm.weight_norm(v, g)
    w_g, s_g = norm.weight_norm(cp.asarray(v), cp.asarray(g))
    _same(w_g, w_c, dtype)
    dg_c, dv_c = norm.weight_norm_backward(dw, v, g, s_c)
    dg_g, dv_g = norm.weight_norm_backward(cp.asarray(dw), cp.asarray(v), cp.asarray(g), s_g)
    _same(dg_g, dg_c, dtype)
    _same(dv_g, dv_c, dtype)
