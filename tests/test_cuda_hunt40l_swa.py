"""_cuda.swa_lerp_ and AveragedParams on float64 CuPy arrays (the CUDA twin of
test_hunt40l_swa): bit for bit the CPU's float64 lerp, the mixed-dtype refusals the CPU's.

Skipped without CuPy or without a visible GPU."""

from __future__ import annotations

import numpy as np
import pytest

from gpu import raised, require_gpu, same_bits
from optkern import _backend
from optkern.swa import AveragedParams

cp, _cuda = require_gpu()
_cpu = _backend.cpu
SIZES = [0, 1, 7, 1023, 5_001]


@pytest.mark.parametrize("w", [1.0, 1 / 3, 1e-3, 0.999])
def test_float64_lerp_equals_the_cpu_bit_for_bit(w):
    rng = np.random.default_rng(4040)
    avgs = [rng.standard_normal(n) for n in SIZES]
    params = [rng.standard_normal(n) * 3.0 for n in SIZES]
    avgs[2][:3] = [np.inf, -0.0, np.nan]
    d_avgs = [cp.asarray(a) for a in avgs]
    _cuda.swa_lerp_(d_avgs, [cp.asarray(p) for p in params], w)
    _cpu.swa_lerp_(avgs, params, w)
    for i, (d, h) in enumerate(zip(d_avgs, avgs)):
        assert d.dtype == cp.float64
        same_bits(cp.asnumpy(d), h, f"averages[{i}]")


@pytest.mark.parametrize("case", ["float32_param", "float32_average"])
def test_mixed_dtypes_raise_the_cpu_error(case):
    def build(xp):
        a = [xp.zeros(5), xp.zeros(9)]
        p = [xp.ones(5), xp.ones(9)]
        if case == "float32_param":
            return a, [p[0], xp.ones(9, xp.float32)]
        return [a[0], xp.zeros(9, xp.float32)], p

    got = raised(lambda: _cuda.swa_lerp_(*build(cp), 0.5))
    assert got == raised(lambda: _cpu.swa_lerp_(*build(np), 0.5))
    assert got[0] is TypeError


@pytest.mark.parametrize("mode", ["swa", "ema"])
def test_float64_averaged_params_on_cupy_equal_numpy(mode):
    rng = np.random.default_rng(4041)
    host = [rng.standard_normal(n) for n in (3, 1000, 4099)]
    a = AveragedParams(host, mode=mode, decay=0.9)
    b = AveragedParams([cp.asarray(p) for p in host], mode=mode, decay=0.9)
    for _ in range(5):
        it = [rng.standard_normal(p.size) for p in host]
        a.update(it)
        b.update([cp.asarray(x) for x in it])
    for i, (d, h) in enumerate(zip(b.averages, a.averages)):
        assert d.dtype == cp.float64
        same_bits(cp.asnumpy(d), h, f"averages[{i}]")
    with pytest.raises(TypeError, match=r"^params\[1\]: float32, but params\[0\] is float64"):
        AveragedParams([cp.zeros(3), cp.zeros(3, cp.float32)])
