"""optkern.lowp's conversions and blockwise quantizers on CuPy arrays (cuda/lowp.cu) against the
same functions on NumPy arrays (cpp/lowp.cpp), bit for bit: every half bit pattern widened, float32
bit patterns of every kind (NaN, inf, subnormal, ties) rounded to nearest and stochastically,
8-bit blocks of odd sizes with special values, and the same errors for bad input.

Skipped without CuPy or without a visible GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

from gpu import raised, require_gpu, same_bits
from optkern import _backend, lowp
from q8_rule import dequantize_rule, quantize_rule

cp, _cuda = require_gpu()
_cpu = _backend.cpu


def bits_equal(got, want, what):
    assert _backend.is_cupy(got), f"{what}: expected a CuPy result"
    same_bits(cp.asnumpy(got), want, what)


def float_patterns(rng, n):
    """float32 values of every kind: random bit patterns (NaN, inf, subnormals, huge, tiny), values
    halfway between halves (ties), and ordinary normals."""
    raw = rng.integers(0, 2**32, n // 2, dtype=np.uint64).astype(np.uint32).view(np.float32)
    ties = (rng.integers(0, 2**16, n // 4, dtype=np.uint32) << 16 | 0x8000).view(np.float32)
    normal = rng.standard_normal(n - raw.size - ties.size).astype(np.float32) * np.float32(1000.0)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 65504, 65520, 3.4e38, 1e-45, -1e-40], np.float32)
    return np.concatenate([specials, raw, ties, normal]).astype(np.float32)


@pytest.mark.parametrize("fmt", ["bfloat16", "float16"])
def test_every_half_widens_as_on_the_cpu(fmt):
    h = np.arange(2**16, dtype=np.uint32).astype(np.uint16)
    bits_equal(lowp.from_half(cp.asarray(h), fmt), lowp.from_half(h, fmt), f"from_half {fmt}")


@pytest.mark.parametrize("fmt", ["bfloat16", "float16"])
@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_rounding_to_half_as_on_the_cpu(fmt, rounding):
    x = float_patterns(np.random.default_rng(601), 300_001).reshape(-1)
    kw = dict(rounding=rounding, seed=2**63 + 5, step=11, offset=2**40 + 3, raw=True)
    bits_equal(lowp.to_half(cp.asarray(x), fmt, **kw), lowp.to_half(x, fmt, **kw), f"to_half {fmt} {rounding}")


def test_results_live_on_the_device_in_their_formats():
    x = cp.asarray(np.linspace(-2, 2, 11, dtype=np.float32)).reshape(11, 1)
    h = lowp.to_half(x, "float16")
    assert _backend.is_cupy(h) and h.dtype == np.float16 and h.shape == (11, 1)
    b = lowp.to_half(x, "bfloat16")  # (no bfloat16 in CuPy: the raw bits)
    assert _backend.is_cupy(b) and b.dtype == np.uint16
    back = lowp.from_half(b, "bfloat16")
    assert _backend.is_cupy(back) and back.dtype == np.float32 and back.shape == (11, 1)
    codes, scales = lowp.quantize_blockwise(x, 64)
    assert _backend.is_cupy(codes) and _backend.is_cupy(scales) and codes.shape == (11, 1)


def block_values(rng, n, kind):
    x = rng.standard_normal(n).astype(np.float32)
    if kind == "positive":
        x = np.abs(x) * np.float32(1e-3)
    elif kind == "special" and n:
        k = rng.integers(0, n, max(n // 50, 1))
        x[k] = rng.choice(np.array([np.nan, np.inf, -np.inf, -0.0, 1e-42, -1e-42, 0.0], np.float32), k.size)
    elif kind == "zero_blocks":
        x[: min(n, 300)] = 0.0
        x[-min(n, 70) :] = -0.0
    return x


@pytest.mark.parametrize("block", [64, 256, 4096])
@pytest.mark.parametrize("kind", ["normal", "positive", "special", "zero_blocks"])
def test_blockwise_quantization_as_on_the_cpu(block, kind):
    rng = np.random.default_rng(602)
    for n in [0, 1, 63, 64, 65, 1000, 4097, 70_001]:
        x = block_values(rng, n, kind)
        c, s = quantize_rule(cp.asarray(x), block)
        want_c, want_s = quantize_rule(x, block)
        bits_equal(c, want_c, f"codes n={n}")
        bits_equal(s, want_s, f"scales n={n}")
        bits_equal(lowp.dequantize_blockwise(c, s, block), lowp.dequantize_blockwise(want_c, want_s, block), "back")


@pytest.mark.parametrize("block", [64, 4096])
def test_dequantizing_any_codes_and_scales_as_on_the_cpu(block):
    rng = np.random.default_rng(603)
    n = 3 * block + 17
    codes = rng.integers(0, 256, n, dtype=np.uint16).astype(np.uint8)
    scales = (rng.standard_normal(lowp.n_blocks(n, block)) * 10).astype(np.float32)
    scales[:4] = [0.0, -0.0, np.inf, np.nan]
    # (the kernels' decode of any scales: the public function refuses NaN / inf ones, hunt 55i)
    got = dequantize_rule(cp.asarray(codes), cp.asarray(scales), block)
    bits_equal(got, dequantize_rule(codes, scales, block), "dequantize")


def _cases(xp):
    """(name, function name, args) of bad native calls, built with array module xp."""
    f32, u16, u8 = xp.zeros(100, xp.float32), xp.zeros(100, xp.uint16), xp.zeros(100, xp.uint8)
    out32 = xp.zeros(100, xp.float32)
    return [
        ("half_wrong_dtype", "lowp_to_half", (u16, u16.copy(), "bfloat16", False, 0, 0, 0)),
        ("half_bad_format", "lowp_to_half", (f32, u16, "float8", False, 0, 0, 0)),
        ("half_short_out", "lowp_to_half", (f32, u16[:7], "float16", True, 0, 0, 0)),
        ("widen_out_dtype", "lowp_from_half", (u16, u16.copy(), "float16")),
        ("widen_out_overlaps_x", "lowp_from_half", (out32.view(xp.uint16)[:100], out32, "bfloat16")),
        ("quantize_bad_block", "lowp_quantize_blockwise", (f32, u8, xp.zeros(2, xp.float32), 100)),
        ("quantize_few_scales", "lowp_quantize_blockwise", (f32, u8, xp.zeros(1, xp.float32), 64)),
        ("quantize_codes_dtype", "lowp_quantize_blockwise", (f32, u16, xp.zeros(2, xp.float32), 64)),
        ("dequantize_scales_dtype", "lowp_dequantize_blockwise", (u8, xp.zeros(2, xp.float64), out32, 64)),
        ("dequantize_short_out", "lowp_dequantize_blockwise", (u8, xp.zeros(2, xp.float32), out32[:99], 64)),
    ]


@pytest.mark.parametrize("k", range(len(_cases(np))), ids=[c[0] for c in _cases(np)])
def test_bad_input_raises_the_cpu_error(k):
    name, fn, host_args = _cases(np)[k]
    _, _, dev_args = _cases(cp)[k]
    assert raised(lambda: getattr(_cuda, fn)(*dev_args)) == raised(lambda: getattr(_cpu, fn)(*host_args)), name


def test_host_arrays_are_named():
    with pytest.raises(TypeError, match=r"^out: expected a cupy.ndarray, got numpy.ndarray"):
        _cuda.lowp_from_half(cp.zeros(3, cp.uint16), np.zeros(3, np.float32), "float16")
