"""Low-precision formats (optkern.lowp) against float64 references."""

import numpy as np
import pytest

from optkern import lowp

ml_dtypes = pytest.importorskip("ml_dtypes")

SIZES = [0, 1, 7, 1023, 4099]


def special_f32():
    return np.array(
        [
            0.0,
            -0.0,
            np.inf,
            -np.inf,
            np.nan,
            -np.nan,
            65504,
            65519.996,
            65520,
            -65520,
            2.0**-25,
            2.0**-24,
            3 * 2.0**-26,
            2.0**-14,
            2.0**-14 - 2.0**-24,
            1e-45,
            -1e-40,
            3.4e38,
            3.39e38,
            1.0 + 2.0**-8,
            1.0 + 3 * 2.0**-8,
            1.0 + 2.0**-11,
            1.0 + 3 * 2.0**-11,
        ],
        np.float32,
    )


def random_f32(n, rng):
    """All kinds of float32: random bit patterns (every exponent, NaN payloads) and plain values."""
    u = rng.integers(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32).view(np.float32)
    return np.concatenate([u, rng.standard_normal(n).astype(np.float32), special_f32()])


def nearest_even_ref(x, fmt):
    """Round float32 x to the format by float64 arithmetic: enumerate all finite
    half values (sorted), take the nearest; ties to the even bit pattern."""
    h = np.arange(65536, dtype=np.uint16)
    with np.errstate(invalid="ignore"):
        vals = (h.view(np.float16) if fmt == "float16" else h.view(ml_dtypes.bfloat16)).astype(np.float64)
    fin = np.isfinite(vals) & (h < 0x8000)  # non-negative finite patterns, increasing with the bits
    pos, pbits = vals[fin], h[fin]
    order = np.argsort(pos, kind="stable")
    pos, pbits = pos[order], pbits[order]
    top, ulp_top = pos[-1], pos[-1] - pos[-2]
    out = np.empty(x.size, np.uint16)
    with np.errstate(invalid="ignore"):  # signalling NaN patterns
        xd = x.astype(np.float64).tolist()
    for i, v in enumerate(xd):
        sign = 0x8000 if np.signbit(v) else 0
        a = abs(v)
        if np.isnan(v):
            out[i] = 0xFFFF  # any NaN, checked separately
            continue
        if a >= top + ulp_top / 2:
            out[i] = sign | (0x7C00 if fmt == "float16" else 0x7F80)
            continue
        j = np.searchsorted(pos, a)
        if j == pos.size:  # above the largest finite, below the overflow threshold
            out[i] = sign | pbits[-1]
            continue
        if pos[j] == a:
            out[i] = sign | pbits[j]
            continue
        lo, hi = pos[j - 1], pos[j]
        if a - lo < hi - a or (a - lo == hi - a and pbits[j - 1] % 2 == 0):
            out[i] = sign | pbits[j - 1]
        else:
            out[i] = sign | pbits[j]
    return out


@pytest.mark.parametrize("fmt", ["bfloat16", "float16"])
def test_to_half_matches_float64_reference(fmt):
    rng = np.random.default_rng(901)
    x = random_f32(3000, rng)
    got = lowp.to_half(x, fmt, raw=True)
    ref = nearest_even_ref(x, fmt)
    nan = np.isnan(x)
    np.testing.assert_array_equal(got[~nan], ref[~nan])
    back = lowp.from_half(got, fmt)
    assert np.isnan(back[nan]).all()
    np.testing.assert_array_equal(np.signbit(back[nan]), np.signbit(x[nan]))


@pytest.mark.parametrize("fmt", ["bfloat16", "float16"])
def test_to_half_matches_numpy_and_ml_dtypes_casts(fmt):
    rng = np.random.default_rng(902)
    x = random_f32(200_000, rng)
    ref_dt = np.float16 if fmt == "float16" else ml_dtypes.bfloat16
    with np.errstate(all="ignore"):
        ref = x.astype(ref_dt).view(np.uint16)
    got = lowp.to_half(x, fmt, raw=True)
    nan = np.isnan(x)
    np.testing.assert_array_equal(got[~nan], ref[~nan])


@pytest.mark.parametrize("fmt", ["bfloat16", "float16"])
def test_from_half_every_bit_pattern_exact(fmt):
    h = np.arange(65536, dtype=np.uint16)
    with np.errstate(invalid="ignore"):  # signalling NaN patterns
        got = lowp.from_half(h, fmt).astype(np.float64)
    # float64 reference from the bit fields
    s = np.where(h & 0x8000, -1.0, 1.0)
    if fmt == "float16":
        e, m = (h >> 10) & 0x1F, (h & 0x3FF).astype(np.float64)
        ref = np.where(e == 0, m * 2.0**-24, (1 + m / 1024) * 2.0 ** (e.astype(np.float64) - 15))
        special = e == 0x1F
    else:
        e, m = (h >> 7) & 0xFF, (h & 0x7F).astype(np.float64)
        ref = np.where(e == 0, m * 2.0**-133, (1 + m / 128) * 2.0 ** (e.astype(np.float64) - 127))
        special = e == 0xFF
    ref = s * ref
    ref[special & (m == 0)] = s[special & (m == 0)] * np.inf
    nan = special & (m != 0)
    np.testing.assert_array_equal(got[~nan], ref[~nan])
    assert np.isnan(got[nan]).all()


def test_bfloat16_spellings_agree():
    rng = np.random.default_rng(903)
    x = rng.standard_normal(1023).astype(np.float32)
    bf = lowp.to_bfloat16(x)
    assert bf.dtype == ml_dtypes.bfloat16
    raw = lowp.to_bfloat16(x, raw=True)
    assert raw.dtype == np.uint16
    np.testing.assert_array_equal(bf.view(np.uint16), raw)
    np.testing.assert_array_equal(lowp.from_half(bf), lowp.from_half(raw, "bfloat16"))
    assert lowp.to_float16(x).dtype == np.float16


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("fmt", ["bfloat16", "float16"])
def test_round_trip_sizes(n, fmt):
    rng = np.random.default_rng(904)
    x = rng.standard_normal(n).astype(np.float32)
    back = lowp.from_half(lowp.to_half(x, fmt), None)
    ref_dt = np.float16 if fmt == "float16" else ml_dtypes.bfloat16
    np.testing.assert_array_equal(back, x.astype(ref_dt).astype(np.float32))


@pytest.mark.parametrize("fmt", ["bfloat16", "float16"])
@pytest.mark.parametrize("value", [1.0 + 2.0**-10, -3.3, 1e-3, 7e-6, 1e-7])
def test_stochastic_rounding_unbiased(fmt, value):
    """Mean of many roundings of one value within 3 standard errors of it, every
    result one of the two neighbours."""
    n = 200_000
    x = np.full(n, value, np.float32)
    r = lowp.from_half(lowp.stochastic_round(x, fmt, seed=11, step=5), None).astype(np.float64)
    nb = np.unique(r)
    assert nb.size <= 2
    exact = float(np.float32(value))
    assert nb.min() <= exact <= nb.max()
    if nb.size == 2:
        p = (exact - nb[0]) / (nb[1] - nb[0])
        se = (nb[1] - nb[0]) * np.sqrt(p * (1 - p) / n)
        assert abs(r.mean() - exact) <= 3 * se
        # not nearest rounding in disguise: both neighbours occur about p / 1 - p of the time
        assert abs(np.mean(r == nb[1]) - p) <= 5 * np.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("fmt", ["bfloat16", "float16"])
def test_stochastic_rounding_deterministic_and_bracketing(fmt):
    rng = np.random.default_rng(905)
    x = random_f32(5000, rng)
    x = x[np.isfinite(x) & (np.abs(x) < 6e4)]
    a = lowp.stochastic_round(x, fmt, seed=7, step=3, raw=True)
    np.testing.assert_array_equal(a, lowp.stochastic_round(x, fmt, seed=7, step=3, raw=True))
    assert not np.array_equal(a, lowp.stochastic_round(x, fmt, seed=7, step=4, raw=True))
    assert not np.array_equal(a, lowp.stochastic_round(x, fmt, seed=8, step=3, raw=True))
    # offset continues the stream: element i of offset k is element k + i of offset 0
    np.testing.assert_array_equal(lowp.stochastic_round(x[5:], fmt, seed=7, step=3, offset=5, raw=True), a[5:])
    # always one of the two neighbours that bracket x (exact values stay exact)
    v = lowp.from_half(a, fmt).astype(np.float64)
    xd = x.astype(np.float64)
    ref_dt = np.float16 if fmt == "float16" else ml_dtypes.bfloat16
    near = x.astype(ref_dt).astype(np.float64)
    exact = near == xd
    np.testing.assert_array_equal(v[exact], xd[exact])
    other = np.where(
        near > xd, np.nextafter(near.astype(ref_dt), ref_dt(-np.inf)), np.nextafter(near.astype(ref_dt), ref_dt(np.inf))
    ).astype(np.float64)
    lo, hi = np.minimum(near, other), np.maximum(near, other)
    assert ((v >= lo) & (v <= hi))[~exact].all()


def test_stochastic_rounding_keeps_specials():
    x = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 3.3e38, 65510.0], np.float32)
    bf = lowp.from_half(lowp.stochastic_round(x, "bfloat16", seed=1), None)
    assert np.isposinf(bf[0]) and np.isneginf(bf[1]) and np.isnan(bf[2])
    assert bf[3] == 0 and np.signbit(bf[4]) and np.isfinite(bf[5])
    f = lowp.from_half(lowp.stochastic_round(x, "float16", seed=1), None)
    assert np.isposinf(f[0]) and np.isneginf(f[1]) and np.isnan(f[2]) and f[6] in (65504.0,)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("block", [256, 2048])
def test_blockwise_round_trip_bound(n, block):
    rng = np.random.default_rng(906)
    x = (rng.standard_normal(n) * np.exp(3 * rng.standard_normal(n))).astype(np.float32)
    for v, bound in ((x, 0.45 / 64), (np.abs(x), 0.45 / 128)):
        codes, scales = lowp.quantize_blockwise(v, block)
        assert codes.shape == v.shape and scales.size == -(-n // block)
        y = lowp.dequantize_blockwise(codes, scales, block)
        s = np.repeat(np.abs(scales).astype(np.float64), block)[:n]
        # float64 reference: absmax per block, and the error bound (below scale / 127)
        ref_s = np.array([np.abs(v[i : i + block]).max() for i in range(0, n, block)])
        np.testing.assert_array_equal(np.abs(scales), ref_s.astype(np.float32))
        # (1 + 4e-4: the encoder's band, as lowp's docstring states; random unsigned blocks reach 1 + 4.3e-5)
        assert np.all(np.abs(y.astype(np.float64) - v) <= s * bound * (1 + 4e-4) + 1e-30)
        assert np.all(np.abs(y.astype(np.float64) - v) <= s / 127)


def test_blockwise_picks_nearest_code_and_keeps_zero_and_absmax():
    rng = np.random.default_rng(907)
    x = rng.standard_normal(256).astype(np.float32) * 1e-3
    x[3] = 0.0
    codes, scales = lowp.quantize_blockwise(x, 256)
    y = lowp.dequantize_blockwise(codes, scales, 256)
    assert y[3] == 0.0
    assert np.max(np.abs(y)) == np.max(np.abs(x))
    table = lowp.decode_map(signed=True).astype(np.float64) * abs(float(scales[0]))
    best = np.abs(x[:, None].astype(np.float64) - table[None, :]).min(axis=1)
    np.testing.assert_allclose(np.abs(y - x.astype(np.float64)), best, rtol=0, atol=1e-7 * abs(scales[0]))


def test_small_second_moments_keep_relative_precision():
    """Values 1e-5 of the block's absmax survive to ~7% (linear int8 would give 0)."""
    v = np.full(256, 1e-5, np.float32)
    v[0] = 1.0
    y = lowp.dequantize_blockwise(*lowp.quantize_blockwise(v, 256), 256)
    assert np.all(np.abs(y[1:] - 1e-5) <= 0.07 * 1e-5)


def test_bad_input_named():
    x = np.zeros(10, np.float32)
    with pytest.raises(TypeError, match="x: expected float32"):
        lowp.to_half(x.astype(np.float64))
    with pytest.raises(ValueError, match="dtype"):
        lowp.to_half(x, "float8")
    with pytest.raises(ValueError, match="rounding"):
        lowp.to_half(x, rounding="up")
    with pytest.raises(TypeError, match="dtype"):
        lowp.from_half(np.zeros(3, np.uint16))
    with pytest.raises(TypeError, match="dtype"):
        lowp.from_half(np.zeros(3, np.float16), "bfloat16")
    with pytest.raises(ValueError, match="block"):
        lowp.quantize_blockwise(x, 100)
    codes, scales = lowp.quantize_blockwise(x, 256)
    with pytest.raises(ValueError, match="scales"):
        lowp.dequantize_blockwise(codes, np.zeros(2, np.float32), 256)
    with pytest.raises(TypeError, match="codes"):
        lowp.dequantize_blockwise(codes.astype(np.int8), scales, 256)
    with pytest.raises(ValueError, match="seed"):
        lowp.stochastic_round(x, seed=-1)


def _words_ref(n, seed, stream, offset):
    """Philox word of element offset + i in stream `stream` (counter words 2, 3) of `seed`, from
    the independent Python Philox of test_random.py (lane g % 4 of block g // 4)."""
    from test_random import philox_ref

    key = [seed & 0xFFFFFFFF, seed >> 32]
    blocks: dict = {}
    out = np.empty(n, np.uint64)
    for i in range(n):
        g = offset + i
        b = g // 4
        if b not in blocks:
            blocks[b] = philox_ref([b & 0xFFFFFFFF, b >> 32, stream & 0xFFFFFFFF, stream >> 32], key)
        out[i] = blocks[b][g % 4]
    return out


# offsets: block-aligned, mid-block, and across the 32-bit carry of the block counter (mid-block,
# and block-aligned: AVX-512 then fills whole batches in place); 9000 elements span more than one
# batch of words (cpp/philox_cpu.hpp fill_words: 4096 at a time)
@pytest.mark.parametrize("offset", [0, 3, 4 * 2**32 - 4 * 5 - 1, 4 * 2**32 - 4 * 5])
def test_stochastic_rounding_takes_the_documented_philox_words(offset):
    rng = np.random.default_rng(20261201)
    n, seed, step = 9000, int(rng.integers(0, 2**63)) * 2 + 1, 2**33 + 7
    x = (rng.standard_normal(n) * 10.0 ** rng.integers(-20, 20, n)).astype(np.float32)
    w = _words_ref(n, seed, step, offset)
    u = x.view(np.uint32).astype(np.uint64)
    want = ((u + (w >> 16)) >> 16).astype(np.uint16)  # bf16: add 16 random bits, truncate
    got = lowp.stochastic_round(x, "bfloat16", seed=seed, step=step, offset=offset, raw=True)
    np.testing.assert_array_equal(got, want)
    # SWALP's fixed point <8, 4>: floor(x 2^4 + u), u the word's top 24 bits / 2^24, clipped
    y = np.floor(x.astype(np.float64) * 16.0 + (w >> 8).astype(np.float64) * 2.0**-24)
    want_q = (np.clip(y, -128, 127) / 16.0).astype(np.float32)
    got_q = lowp.quantize_fixed_point(x, 8, 4, seed=seed, step=step, offset=offset)
    np.testing.assert_array_equal(got_q, want_q)


def test_to_float16_over_a_sweep_of_all_float32_bit_patterns():
    """Every 4097th float32 bit pattern (1M, both signs, every exponent) and the patterns around
    each rounding threshold (overflow, normal/subnormal, the flush to zero): round to nearest even
    as NumPy's cast; a NaN quiet with its sign and top payload bits. Where the CPU has F16C the
    conversion is vcvtps2ph's (cpp/lowp_convert_loops.hpp), otherwise the scalar rule; the test
    also runs with OPTKERN_PORTABLE=1 and OPTKERN_NO_AVX512=1 (tests/test_lowp_q8.py::test_other_loops_too)."""
    sweep = np.arange(0, 2**32, 4097, dtype=np.uint64).astype(np.uint32)
    edges = np.array([0x477FE000, 0x477FF000, 0x38800000, 0x387FC000, 0x33000000, 0x33800000, 0x7F800000], np.uint32)
    near = (edges[:, None] + np.arange(-40, 41, dtype=np.int64)[None, :]).astype(np.uint32).ravel()
    bits = np.concatenate([sweep, near, near | np.uint32(0x80000000)])
    x = bits.view(np.float32)
    # an odd length: the vector loop's tail is the scalar rule
    got = lowp.to_half(x[:-3], "float16", raw=True)
    nan = np.isnan(x[:-3])
    with np.errstate(all="ignore"):
        want = x[:-3].astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(got[~nan], want[~nan])
    b = bits[:-3][nan]
    want_nan = ((b >> 16) & 0x8000) | 0x7E00 | ((b >> 13) & 0x3FF)
    np.testing.assert_array_equal(got[nan], want_nan.astype(np.uint16))


@pytest.mark.parametrize("block", [64, 256, 4096])
def test_dequantize_is_the_decode_map_times_the_block_scale(block):
    """Every code under positive (unsigned map) and negative (signed map) scales, a partial last
    block and a length that is not a multiple of 8: float32(map value) * |scale|, independently of
    the native decoder."""
    rng = np.random.default_rng(20261202)
    n = 5 * block + 13
    codes = rng.integers(0, 256, n).astype(np.uint8)
    codes[:256] = np.arange(256)
    nb = lowp.n_blocks(n, block)
    scales = (10.0 ** rng.uniform(-30, 30, nb) * rng.choice([-1.0, 1.0], nb)).astype(np.float32)
    scales[:2] = [1.0, -1.0]
    got = lowp.dequantize_blockwise(codes, scales, block)
    per = np.repeat(scales, block)[:n]
    want = np.where(per < 0, lowp.decode_map(signed=True)[codes], lowp.decode_map(signed=False)[codes])
    np.testing.assert_array_equal(got, (want * np.abs(per)).astype(np.float32))
