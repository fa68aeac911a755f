"""SWALP's quantizers on CuPy arrays (cuda/lowp.cu) against the same functions on NumPy arrays
(cpp/lowp.cpp), bit for bit: fixed point and block floating point, nearest and stochastic, blocks
of every kind (one element, odd sizes, the whole array, larger than the array), float32 values of
every kind, in place; the same errors for bad input; and the SWALP recipe on the GPU equal to the
CPU's, step by step.

Skipped without CuPy or without a visible GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

from gpu import raised, require_gpu, same_bits
from optkern import _backend, lowp
from optkern.swalp import SWALP

cp, _cuda = require_gpu()
_cpu = _backend.cpu

SIZES = [0, 1, 7, 1023, 70_001]


def bits_equal(got, want, what):
    assert _backend.is_cupy(got), f"{what}: expected a CuPy result"
    same_bits(cp.asnumpy(got), want, what)


def values(rng, n):
    """Normals over 12 decades with NaN, +-inf, +-0 and subnormals sprinkled in."""
    x = (rng.standard_normal(n) * 10.0 ** rng.uniform(-6, 6, n)).astype(np.float32)
    if n:
        k = rng.integers(0, n, max(n // 40, 1))
        x[k] = rng.choice(np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-42, -3e-39], np.float32), k.size)
    return x


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
@pytest.mark.parametrize("bits,frac", [(8, 6), (4, -3), (24, 20)])
def test_fixed_point_as_on_the_cpu(rounding, bits, frac):
    rng = np.random.default_rng(1501)
    kw = dict(rounding=rounding, seed=2**63 + 9, step=3, offset=2**33 + 1)
    for n in SIZES:
        x = values(rng, n)
        got = lowp.quantize_fixed_point(cp.asarray(x), bits, frac, **kw)
        bits_equal(got, lowp.quantize_fixed_point(x, bits, frac, **kw), f"n={n}")


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
@pytest.mark.parametrize("block", [0, 1, 7, 256, 5000, 10**6])
def test_block_fp_as_on_the_cpu(rounding, block):
    rng = np.random.default_rng(1502)
    kw = dict(rounding=rounding, seed=77, step=2**40, offset=5)
    for n in SIZES:
        x = values(rng, n)
        if n > 100:
            x[:50] = 0.0  # a block of zeros (and no finite maximum) where blocks are small
        got = lowp.quantize_block_fp(cp.asarray(x), 8, block, **kw)
        bits_equal(got, lowp.quantize_block_fp(x, 8, block, **kw), f"n={n}")


def test_in_place_and_on_the_device():
    rng = np.random.default_rng(1503)
    x = values(rng, 17 * 241).reshape(17, 241)
    d = cp.asarray(x)
    want = lowp.quantize_block_fp(x, 6, 64, seed=1)
    assert lowp.quantize_block_fp(d, 6, 64, seed=1, out=d) is d
    bits_equal(d, want, "in place")
    y = lowp.quantize_fixed_point(cp.asarray(x), 8, 4)
    assert _backend.is_cupy(y) and y.shape == (17, 241) and y.dtype == np.float32


def _cases(xp):
    """(name, function name, args) of bad native calls, built with array module xp."""
    x = xp.zeros(100, xp.float32)
    return [
        ("bits_low", "lowp_quantize_fixed_point", (x, x.copy(), 1, 4, True, 0, 0, 0)),
        ("bits_high", "lowp_quantize_block_fp", (x, x.copy(), 25, 0, True, 0, 0, 0)),
        ("frac", "lowp_quantize_fixed_point", (x, x.copy(), 8, 101, False, 0, 0, 0)),
        ("block", "lowp_quantize_block_fp", (x, x.copy(), 8, -1, False, 0, 0, 0)),
        ("x_dtype", "lowp_quantize_fixed_point", (x.astype(xp.float64), x.copy(), 8, 4, False, 0, 0, 0)),
        ("short_out", "lowp_quantize_block_fp", (x, x[:99].copy(), 8, 0, False, 0, 0, 0)),
        ("out_overlaps", "lowp_quantize_fixed_point", (x[1:], x[:-1], 8, 4, False, 0, 0, 0)),
        ("out_dtype", "lowp_quantize_block_fp", (x, xp.zeros(100, xp.float64), 8, 0, False, 0, 0, 0)),
    ]


@pytest.mark.parametrize("k", range(len(_cases(np))), ids=[c[0] for c in _cases(np)])
def test_bad_input_raises_the_cpu_error(k):
    name, fn, host_args = _cases(np)[k]
    _, _, dev_args = _cases(cp)[k]
    assert raised(lambda: getattr(_cuda, fn)(*dev_args)) == raised(lambda: getattr(_cpu, fn)(*host_args)), name


def test_mixed_kinds_are_named():
    with pytest.raises(TypeError, match=r"^out: expected a float32 cupy array"):
        lowp.quantize_fixed_point(cp.zeros(3, cp.float32), out=np.zeros(3, np.float32))
    with pytest.raises(TypeError, match=r"params\[1\]"):
        SWALP([cp.zeros(3, cp.float32), np.zeros(3, np.float32)], lr=0.1)


@pytest.mark.parametrize("number", ["block_fp", "fixed_point"])
def test_swalp_recipe_on_the_gpu_equals_the_cpu(number):
    """Quantized SGD with momentum and weight decay, SWA from step 3: the weights, momentum
    buffers and the average, step by step."""
    rng = np.random.default_rng(1504)
    host = [rng.standard_normal(n).astype(np.float32) for n in (5, 300, 1031)]
    kw = dict(lr=0.05, momentum=0.9, weight_decay=1e-3, number=number, swa_start=3, cycle=2, seed=11)
    a = SWALP([p.copy() for p in host], **kw)
    b = SWALP([cp.asarray(p) for p in host], **kw)
    for t in range(6):
        grads = [rng.standard_normal(p.size).astype(np.float32) for p in host]
        a.step(grads)
        b.step([cp.asarray(g) for g in grads])
        for i in range(len(host)):
            bits_equal(b.params[i], a.params[i], f"step {t} params[{i}]")
            bits_equal(b.buffers[i], a.buffers[i], f"step {t} buffers[{i}]")
            bits_equal(b.averages[i], a.averages[i], f"step {t} averages[{i}]")
