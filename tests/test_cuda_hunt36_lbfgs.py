"""CUDA L-BFGS's max |x| (lbfgs_stats' max |g|, lbfgs_direction_'s max |d|) against the CPU's, bit
for bit, where the vector holds a NaN: the CPU's SIMD max (a max and a NaN flag) gives the one quiet
NaN, 0x7ff8000000000000, whichever NaN it met; the GPU took |x| of the NaN it met (fabs: its sign
cleared, its payload kept), so a NaN with a payload came back with other bits than the CPU's. Both
now take rules::abs_max_step (rules/second_order.hpp)."""

import numpy as np
import pytest

from gpu import require_gpu

cp, K = require_gpu()

from optkern import _backend  # noqa: E402

CPU = _backend.cpu
CANONICAL = 0x7FF8000000000000

# NaNs with a sign and a payload, per dtype (their bit patterns)
NANS = {
    np.float64: [0xFFF8000000000000, 0xFFF8000000000123, 0x7FF8000000000456, 0xFFF0000000000001],
    np.float32: [0xFFC00000, 0xFFC00123, 0x7FC00456],
}


def _with_nan(dtype, n, at, bits):
    g = np.random.default_rng(n + at).standard_normal(n).astype(dtype)
    ui = np.uint64 if dtype == np.float64 else np.uint32
    g.view(ui)[at] = ui(bits)
    return g


def _bits(x):
    return int(np.asarray(x, np.float64).view(np.uint64))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,at", [(1, 0), (7, 3), (70001, 65537), (300001, 5)])
def test_lbfgs_stats_max_of_a_nan_has_the_cpus_bits(dtype, n, at):
    for bits in NANS[dtype]:
        g = _with_nan(dtype, n, at, bits)
        want, got = np.full(2, 1.0), cp.full(2, 1.0)
        CPU.lbfgs_stats(g, want)
        K.lbfgs_stats(cp.asarray(g), got)
        got = cp.asnumpy(got)
        assert _bits(want[0]) == CANONICAL, hex(_bits(want[0]))
        assert _bits(got[0]) == _bits(want[0]), (hex(bits), hex(_bits(got[0])))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,at", [(7, 3), (70001, 65537)])
def test_lbfgs_direction_max_of_a_nan_has_the_cpus_bits(dtype, n, at):
    for bits in NANS[dtype]:
        g = _with_nan(dtype, n, at, bits)
        dc, oc = np.empty(n, dtype), np.full(2, 1.0)
        CPU.lbfgs_direction_([], [], [], [], g, -1.0, dc, oc)
        dd, od = cp.empty(n, dtype), cp.full(2, 1.0)
        K.lbfgs_direction_([], [], [], [], cp.asarray(g), -1.0, dd, od)
        od = cp.asnumpy(od)
        assert _bits(oc[1]) == CANONICAL, hex(_bits(oc[1]))
        assert _bits(od[1]) == _bits(oc[1]), (hex(bits), hex(_bits(od[1])))
