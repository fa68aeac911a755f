"""optkern._cuda's twin of test_hunt47m_native_lists: penalty_grad_ refuses l1 / l2 past float32's
range natively, as the CPU module now does (the kernel rounded them to inf: inf / NaN grads), and
a bare array where a list of arrays is expected gets the CPU module's refusal (one shared check).

Skipped without CuPy or without a visible GPU."""

from __future__ import annotations

import numpy as np
import pytest

from gpu import raised, require_gpu
from optkern import _backend

cp, _cuda = require_gpu()
_cpu = _backend.cpu


@pytest.mark.parametrize("name", ["l1", "l2"])
@pytest.mark.parametrize("v", [1e39, 3.5e38])
def test_penalty_grad_refuses_coefficients_past_float32_as_the_cpu(name, v):
    kw = {"l1": 0.0, "l2": 0.0, name: v}

    def call(xp, mod):
        p = [xp.asarray(np.array([1.0, 0.0, -2.0], np.float32))]
        g = [xp.zeros(3, dtype=xp.float32)]
        return g, lambda: mod.penalty_grad_(p, g, kw["l1"], kw["l2"], None)

    dg, dcall = call(cp, _cuda)
    hg, hcall = call(np, _cpu)
    got = raised(dcall)
    assert got == raised(hcall)
    assert got[1].startswith(f"{name}: ")
    assert not cp.asnumpy(dg[0]).any()


def test_penalty_grad_float64_and_float32_edge_pass():
    big = float(np.finfo(np.float32).max)
    p = [cp.asarray(np.array([1.0, 0.0, -1.0], np.float32))]
    g = [cp.zeros(3, dtype=cp.float32)]
    _cuda.penalty_grad_(p, g, big, 0.0, None)
    np.testing.assert_array_equal(cp.asnumpy(g[0]), np.float32([big, 0.0, -big]))
    p64 = [cp.asarray(np.array([1.0, 0.0, -1.0]))]
    g64 = [cp.zeros(3)]
    _cuda.penalty_grad_(p64, g64, 1e39, 0.0, None)
    np.testing.assert_array_equal(cp.asnumpy(g64[0]), [1e39, 0.0, -1e39])


@pytest.mark.parametrize("which", ["params", "grads"])
def test_a_bare_array_gets_the_cpus_refusal(which):
    def call(xp, mod):
        lists = [xp.ones(3, dtype=xp.float32) for _ in range(2)]
        bare = xp.ones((2, 3), dtype=xp.float32)
        p, g = (bare, lists) if which == "params" else (lists, bare)
        return lambda: mod.penalty_grad_(p, g, 0.0, 1.0, None)

    got = raised(call(cp, _cuda))
    want = raised(call(np, _cpu))
    assert got == (want[0], want[1].replace("numpy.ndarray", "cupy.ndarray"))
    assert got[1] == f"{which}: expected a list of arrays, got cupy.ndarray"
