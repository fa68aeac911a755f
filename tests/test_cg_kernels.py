"""The fused vector passes of hessian.cg (cpp/cg.cpp) on odd sizes (across OpenMP chunks of 65536):
the sums against float64, the vector updates bit for bit against NumPy's `x + alpha * p` (they round
where NumPy rounds, rules/second_order.hpp), the same bits for any thread count, and bad input
refused before anything is written."""

import numpy as np
import pytest

import optkern
from optkern import _backend

K = _backend.cpu
SIZES = [0, 1, 7, 1023, 65536 + 129, 3 * 65536 + 5]


def _vectors(n, dtype, count, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n).astype(dtype) for _ in range(count)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
def test_curvature_against_float64_and_update_like_numpy(dtype, n):
    x, r, p, y = _vectors(n, dtype, 4)
    damping, alpha = 0.37, -1.25
    # the damped product is NumPy's y + damping * p in the dtype; the dot adds exact float64 products
    ref_ad = (y + damping * p).astype(np.float64)
    curv = K.cg_curvature(p, y, damping)
    assert curv == pytest.approx(float(p.astype(np.float64) @ ref_ad), rel=1e-13, abs=1e-13 * n)
    plain = float(p.astype(np.float64) @ y)
    assert K.cg_curvature(p, y, 0.0) == pytest.approx(plain, rel=1e-13, abs=1e-13 * n)
    # the vectors round like NumPy's loop, each product and each sum in the dtype: bit for bit
    xr = x + alpha * p
    rr = r - alpha * (y + damping * p)
    got = K.cg_update_(x, r, p, y, alpha, damping)
    np.testing.assert_array_equal(x, xr)
    np.testing.assert_array_equal(r, rr)
    assert got == pytest.approx(float(r.astype(np.float64) @ r.astype(np.float64)), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
def test_direction_rounds_like_numpy(dtype, n):
    p, z = _vectors(n, dtype, 2, seed=1)
    ref = z + 0.75 * p  # NumPy's rounding: the product, then the sum
    K.cg_direction_(p, z, 0.75)
    np.testing.assert_array_equal(p, ref)


def test_sums_do_not_depend_on_the_thread_count():
    n = 5 * 65536 + 17
    base = _vectors(n, np.float32, 4, seed=2)
    results = []
    for threads in (1, 2, 3):
        x, r, p, y = (v.copy() for v in base)
        with optkern.limit_threads(threads):
            c = K.cg_curvature(p, y, 1e-3)
            rr = K.cg_update_(x, r, p, y, 0.5, 1e-3)
        results.append((c, rr, x.tobytes(), r.tobytes()))
    assert results[0] == results[1] == results[2]


def test_zero_damping_reads_the_product_only():
    """damping = 0 ignores p in the product term: an Inf in p does not turn y + 0 p into NaN."""
    p = np.array([np.inf, 1.0])
    y = np.array([0.0, 2.0])
    assert np.isnan(K.cg_curvature(p, y, 0.0))  # inf * 0 in the dot itself, as NumPy's dot
    x, r = np.zeros(2), np.ones(2)
    K.cg_update_(x, r, np.ones(2), y, 0.5, 0.0)
    np.testing.assert_array_equal(r, [1.0, 0.0])


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda v: K.cg_update_(v["x"], v["r"], v["p"], v["y"].astype(np.float32), 1.0, 0.0), TypeError, "y"),
        (lambda v: K.cg_update_(v["x"], v["r"], v["p"], v["y"][:5], 1.0, 0.0), ValueError, "y"),
        (lambda v: K.cg_update_(v["x"], v["ro"], v["p"], v["y"], 1.0, 0.0), ValueError, "r"),
        (lambda v: K.cg_update_(v["x"], v["x"], v["p"], v["y"], 1.0, 0.0), ValueError, "x|r"),
        (lambda v: K.cg_update_(v["x"], v["r"], v["x"], v["y"], 1.0, 0.0), ValueError, "x|p"),
        (lambda v: K.cg_update_(v["x"], v["r"], v["p"], v["y"], float("nan"), 0.0), ValueError, "alpha"),
        (lambda v: K.cg_update_(v["x"], v["r"], v["p"], v["y"], 1.0, float("inf")), ValueError, "damping"),
        (lambda v: K.cg_update_(v["x"][::2], v["r"][:4], v["p"][:4], v["y"][:4], 1.0, 0.0), ValueError, "x"),
        (lambda v: K.cg_update_(v["x"].reshape(2, 4), v["r"], v["p"], v["y"], 1.0, 0.0), ValueError, "x"),
        (lambda v: K.cg_update_([1.0] * 8, v["r"], v["p"], v["y"], 1.0, 0.0), TypeError, "x"),
        (lambda v: K.cg_direction_(v["ro"], v["p"], 1.0), ValueError, "p"),
        (lambda v: K.cg_direction_(v["p"], v["p"], 1.0), ValueError, "p|z"),
        (lambda v: K.cg_direction_(v["p"], v["y"], float("inf")), ValueError, "beta"),
        (lambda v: K.cg_curvature(v["p"], v["y"].astype(np.int64), 0.0), TypeError, "y"),
    ],
)
def test_bad_input_raises_before_writing(call, exc, match):
    v = dict(zip("xrpy", _vectors(8, np.float64, 4, seed=3)))
    ro = np.ones(8)
    ro.flags.writeable = False
    v["ro"] = ro
    before = {k: a.copy() for k, a in v.items()}
    with pytest.raises(exc, match=match):
        call(v)
    for k, a in v.items():
        np.testing.assert_array_equal(a, before[k], err_msg=k)
