"""The native ``running_stats_`` names the argument whose size is wrong (56th session's leftover
pass, i): it took the channel count from the batch ``mean``, so a short mean was reported as the
wrong size of ``var`` (and a wrong running buffer's count was checked against the mean's). The
count is now the one the other arguments agree on (``sig::running_channels``); nothing is written
when a size is refused. Internal callers only: tested through the _cpu binding."""

from __future__ import annotations

import numpy as np
import pytest

from optkern import _cpu

NAMES = ["running_mean", "running_var", "mean", "var"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C", [1, 7, 1023])
@pytest.mark.parametrize("wrong", range(4), ids=NAMES)
@pytest.mark.parametrize("delta", [-1, 1])
def test_the_odd_size_is_named(wrong, C, dtype, delta):
    if C + delta < 0:
        pytest.skip("no negative sizes")
    rng = np.random.default_rng(C)
    arrays = [rng.standard_normal(C).astype(dtype) for _ in NAMES]
    arrays[wrong] = rng.standard_normal(C + delta).astype(dtype)
    before = [a.copy() for a in arrays]
    with pytest.raises(ValueError, match=rf"^{NAMES[wrong]}: expected {C} elements?, got {C + delta}$"):
        _cpu.running_stats_(*arrays, 0.1)
    for a, b in zip(arrays, before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C", [0, 1, 7, 1023])
def test_right_sizes_update_as_torch_does(C, dtype):
    rng = np.random.default_rng(C + 1)
    rm, rv, m, v = (rng.standard_normal(C).astype(dtype) for _ in NAMES)
    want_m = (1 - 0.1) * rm.astype(np.float64) + 0.1 * m.astype(np.float64)
    want_v = (1 - 0.1) * rv.astype(np.float64) + 0.1 * v.astype(np.float64)
    _cpu.running_stats_(rm, rv, m, v, 0.1)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(rm, want_m, rtol=tol, atol=tol)
    np.testing.assert_allclose(rv, want_v, rtol=tol, atol=tol)


def test_none_and_non_arrays_are_still_named():
    a = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="^var: expected the batch's unbiased variance"):
        _cpu.running_stats_(a, a.copy(), a.copy(), None, 0.1)
    with pytest.raises(TypeError, match="^running_var: "):
        _cpu.running_stats_(a, [0.0, 0.0, 0.0], a.copy(), a.copy(), 0.1)
