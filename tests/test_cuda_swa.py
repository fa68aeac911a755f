"""optkern.swa on CuPy arrays: _cuda.swa_lerp_ (cuda/swa.cu) against _cpu.swa_lerp_ bit for bit (the
same rules::lerp, whose two fmas are explicit: no compiler's contraction changes a bit), and
AveragedParams on CuPy params against the same on NumPy params, SWA and EMA.

Skipped without CuPy or without a visible GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

from gpu import raised, require_gpu, same_bits
from optkern import _backend
from optkern.swa import AveragedParams

cp, _cuda = require_gpu()
_cpu = _backend.cpu
SIZES = [0, 1, 7, 1023, 32_769, 70_001]


def assert_bits(dev, host, what):
    same_bits(cp.asnumpy(dev), host, what)


@pytest.mark.parametrize("w", [1.0, 0.5, 1 / 3, 1e-3, 0.999, 0.0])
def test_lerp_equals_the_cpu_bit_for_bit(w):
    rng = np.random.default_rng(801)
    avgs = [rng.standard_normal(n).astype(np.float32) for n in SIZES]
    params = [rng.standard_normal(n).astype(np.float32) * np.float32(3.0) for n in SIZES]
    if avgs[2].size:
        avgs[2][:3] = [np.inf, -0.0, np.nan]
    d_avgs = [cp.asarray(a) for a in avgs]
    _cuda.swa_lerp_(d_avgs, [cp.asarray(p) for p in params], w)
    _cpu.swa_lerp_(avgs, params, w)
    for i, (d, h) in enumerate(zip(d_avgs, avgs)):
        assert_bits(d, h, f"averages[{i}]")


def test_many_arrays_and_unaligned_views():
    """300 arrays (256 per launch), views starting off the 16-byte grid (the scalar path)."""
    rng = np.random.default_rng(802)
    sizes = [int(n) for n in rng.integers(0, 500, 300)]
    avgs = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    params = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    bufs = [cp.asarray(np.concatenate([np.zeros(1, np.float32), a])) for a in avgs]
    d_avgs = [b[1:] for b in bufs]
    _cuda.swa_lerp_(d_avgs, [cp.asarray(p) for p in params], 0.25)
    _cpu.swa_lerp_(avgs, params, 0.25)
    for i, (d, h) in enumerate(zip(d_avgs, avgs)):
        assert_bits(d, h, f"averages[{i}]")
    assert all(float(b[0]) == 0.0 for b in bufs), "written before an array"


def test_empty_lists_launch_nothing():
    _cuda.swa_lerp_([], [], 0.5)
    _cuda.swa_lerp_([cp.zeros(0, cp.float32)], [cp.zeros(0, cp.float32)], 0.5)


@pytest.mark.parametrize(
    "case", ["float64_average", "short_param", "fewer_params", "param_is_average", "averages_twice"]
)
def test_bad_input_raises_the_cpu_error(case):
    def build(xp):
        a = [xp.zeros(5, xp.float32), xp.zeros(9, xp.float32)]
        p = [xp.ones(5, xp.float32), xp.ones(9, xp.float32)]
        return {
            "float64_average": ([a[0], xp.zeros(9)], p),
            "short_param": (a, [p[0], p[1][:8]]),
            "fewer_params": (a, p[:1]),
            "param_is_average": (a, [p[0], a[1]]),
            "averages_twice": ([a[0], a[0][:3]], [p[0], p[0][:3]]),
        }[case]

    assert raised(lambda: _cuda.swa_lerp_(*build(cp), 0.5)) == raised(lambda: _cpu.swa_lerp_(*build(np), 0.5))


@pytest.mark.parametrize("w", [float("nan"), 2.0, -1.0, float("inf")])
def test_weight_outside_0_1_raises_the_cpu_error_before_writing(w):
    a, p = [cp.zeros(5, cp.float32)], [cp.ones(5, cp.float32)]
    assert raised(lambda: _cuda.swa_lerp_(a, p, w)) == raised(
        lambda: _cpu.swa_lerp_([np.zeros(5, np.float32)], [np.ones(5, np.float32)], w)
    )
    assert not cp.asnumpy(a[0]).any()


@pytest.mark.parametrize("mode", ["swa", "ema"])
def test_averaged_params_on_cupy_equal_numpy(mode):
    rng = np.random.default_rng(803)
    host = [rng.standard_normal(n).astype(np.float32) for n in (3, 1000, 4099)]
    a = AveragedParams(host, mode=mode, decay=0.9)
    b = AveragedParams([cp.asarray(p) for p in host], mode=mode, decay=0.9)
    assert all(_backend.is_cupy(x) for x in b.averages)
    for _ in range(7):
        it = [rng.standard_normal(p.size).astype(np.float32) for p in host]
        a.update(it)
        b.update([cp.asarray(x) for x in it])
        for i, (d, h) in enumerate(zip(b.averages, a.averages)):
            assert_bits(d, h, f"averages[{i}]")
    out = [cp.zeros(p.size, cp.float32) for p in host]
    b.copy_to(out)
    for o, h in zip(out, a.averages):
        assert_bits(o, h, "copy_to")
    assert b.state_dict()["n_averaged"] == 7


def test_mixed_kinds_are_named():
    with pytest.raises(TypeError, match=r"params\[1\]"):
        AveragedParams([cp.zeros(3, cp.float32), np.zeros(3, np.float32)])
