"""The 8-bit state path of the low-precision step (cpp/lowp_loop.hpp) pinned bit for bit to its
definition: decode with ``dequantize``, the fp32 rule, a new per-block absmax, encode with
``quantize`` -- i.e. exactly ``dequantize_blockwise`` -> fp32-state step -> the scalar quantize of rules/lowp.hpp
(``_cpu.lowp_quantize_blockwise_reference``; optkern.lowp.quantize_blockwise, which runs the step's
block loops, is checked against it in the same tests)."""

import numpy as np
import pytest

from child_pytest import run_pytest
from optkern import _cpu, lowp
from q8_rule import quantize_rule

SIZES = [1, 7, 64, 1023, 4097]


def reference(x, block):
    """The definition: ``rules/lowp.hpp``'s scalar quantize element by element (CPU only). Checks on
    the way that ``optkern.lowp.quantize_blockwise`` (the step's vectorized block loops) agrees."""
    codes = np.empty(x.size, np.uint8)
    scales = np.empty(lowp.n_blocks(x.size, block), np.float32)
    _cpu.lowp_quantize_blockwise_reference(x, codes, scales, block)
    fast_c, fast_s = quantize_rule(x, block)
    np.testing.assert_array_equal(fast_s, scales, err_msg="quantize_blockwise's scales")
    np.testing.assert_array_equal(fast_c, codes, err_msg="quantize_blockwise's codes")
    return codes, scales


def step(rule, x, flags, ps, gs, masters, states, scales, pf, sf, t, block):
    _cpu.lowp_step(rule, x, flags, ps, gs, masters, states, scales, pf, sf, False, 0, t, block)


@pytest.mark.parametrize("block", [64, 256, 2048])
@pytest.mark.parametrize("pf", ["float32", "bfloat16"])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_q8_adam_step_is_dequantize_fp32_step_quantize(block, pf, amsgrad):
    rng = np.random.default_rng(20261131)
    k = 3 if amsgrad else 2
    p32 = [rng.standard_normal(n).astype(np.float32) for n in SIZES]
    ps = [lowp.to_half(p, "bfloat16", raw=True) for p in p32] if pf != "float32" else p32
    masters = [p.copy() for p in p32] if pf != "float32" else None
    codes = [[np.zeros(n, np.uint8) for n in SIZES] for _ in range(k)]
    scales = [[np.zeros(lowp.n_blocks(n, block), np.float32) for n in SIZES] for _ in range(k)]
    x = [1e-2, 0.9, 0.999, 1e-8, 0.01]
    for t in range(1, 6):
        gs = [rng.standard_normal(n).astype(np.float32) * (10.0 ** rng.integers(-4, 3, n)) for n in SIZES]
        gs = [g.astype(np.float32) for g in gs]
        if pf != "float32":
            gs = [lowp.to_half(g, "bfloat16", raw=True) for g in gs]
        # the reference: dequantize, fp32-state step on copies, quantize
        rp = [p.copy() for p in ps]
        rm = [m.copy() for m in masters] if masters is not None else None
        rs = [[lowp.dequantize_blockwise(c, s, block) for c, s in zip(cs, ss)] for cs, ss in zip(codes, scales)]
        step("adam", x, [False, True], rp, gs, rm, rs, None, pf, "float32", t, block)
        step("adam", x, [False, True], ps, gs, masters, codes, scales, pf, "int8", t, block)
        for i in range(len(SIZES)):
            np.testing.assert_array_equal(ps[i], rp[i])
            if masters is not None:
                np.testing.assert_array_equal(masters[i], rm[i])
            for j in range(k):
                want_c, want_s = reference(rs[j][i], block)
                np.testing.assert_array_equal(scales[j][i], want_s)
                np.testing.assert_array_equal(codes[j][i], want_c)


def boundary_values(signed: bool) -> np.ndarray:
    """Values (fractions of a block scale of 1) at and around every midpoint between adjacent
    codes of the map, a few float32 ulps either side, and special values."""
    levels = np.unique(np.abs(lowp.decode_map(signed)))
    mids = ((levels[1:].astype(np.float64) + levels[:-1]) / 2).astype(np.float32)
    out = [levels]
    for towards in (np.float32(2), np.float32(-1)):
        x = mids
        for _ in range(5):  # the midpoint and 4 ulps on each side
            out.append(x)
            x = np.nextafter(x, towards)
    vals = np.concatenate(out)
    tiny = np.array([0.0, 1e-9, 1e-7, 5e-8, 1e-6, 4.9e-7, 1.0, 0.99999994, 1e-38, 1e-45], np.float32)
    vals = np.concatenate([vals, tiny])
    return np.concatenate([vals, -vals]) if signed else vals


@pytest.mark.parametrize("signed", [False, True])
def test_q8_encode_at_every_code_boundary(signed):
    """SGD's first momentum step stores b = g exactly: each block's codes are the encoder's
    output for g (blocks hold a 1, so their scale is 1 and g / scale = g)."""
    rng = np.random.default_rng(20261132)
    block = 256
    v = boundary_values(signed)
    rng.shuffle(v)
    nb = -(-v.size // (block - 1))
    g = np.zeros(nb * block, np.float32)
    for b in range(nb):
        part = v[b * (block - 1) : (b + 1) * (block - 1)]
        g[b * block : b * block + part.size] = part
        g[b * block + block - 1] = 1.0
    if signed:
        g[::block] = -1.0  # every block signed
    codes, scales = encode_through_step(g, block)
    want_c, want_s = reference(g, block)
    np.testing.assert_array_equal(scales, want_s)
    np.testing.assert_array_equal(codes, want_c)


def test_q8_decode_of_every_code():
    """SGD with momentum 1, dampening 1 and lr 1 from p = 0 leaves p = -b: the decoded state, every
    code of both maps under positive (unsigned map) and negative (signed map) block scales."""
    block = 256
    scales = np.array([1.0, -1.0, 0.37, -3e-5, 6.5e4, -2.5e-30, 0.0], np.float32)
    codes = np.tile(np.arange(256, dtype=np.uint8), scales.size)
    p = np.zeros(codes.size, np.float32)
    g = np.ones(codes.size, np.float32)
    sc = scales.copy()
    step(
        "sgd",
        [1.0, 1.0, 1.0, 0.0],
        [False, False, False, False],
        [p],
        [g],
        None,
        [[codes.copy()]],
        [[sc]],
        "float32",
        "int8",
        2,
        block,
    )
    want = lowp.dequantize_blockwise(codes, scales, block)
    np.testing.assert_array_equal(-p, want)


def encode_through_step(g: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Codes and scales of the loop's encoder for `g` (SGD's first momentum step stores b = g)."""
    codes = np.zeros(g.size, np.uint8)
    scales = np.zeros(lowp.n_blocks(g.size, block), np.float32)
    p = np.zeros_like(g)
    step(
        "sgd",
        [0.0, 0.0, 0.0, 0.0],
        [False, False, True, False],
        [p],
        [g],
        None,
        [[codes]],
        [[scales]],
        "float32",
        "int8",
        1,
        block,
    )
    return codes, scales


@pytest.mark.parametrize("signed", [False, True])
def test_q8_encode_at_every_code_boundary_under_odd_scales(signed):
    """Code boundaries under scales that are not powers of two (x / scale then rounds, so a
    reformulation of the division, e.g. by a reciprocal, would show here), every block's absmax one
    of them."""
    rng = np.random.default_rng(20261133)
    block = 256
    v = boundary_values(signed)
    v = v[np.abs(v) <= 1]
    for scale in np.array([0.37, 3.1e-5, 6.5e4, 1.7e-30, 2.9e30, 0.999999, 1.0000001], np.float32):
        rng.shuffle(v)
        nb = -(-v.size // (block - 1))
        g = np.zeros(nb * block, np.float32)
        for b in range(nb):
            part = v[b * (block - 1) : (b + 1) * (block - 1)]
            g[b * block : b * block + part.size] = part * scale
            g[b * block + block - 1] = -scale if signed and b % 2 else scale
        if signed:
            g[::block] = -np.abs(g[::block]) - np.float32(1e-38)  # every block signed
        got_c, got_s = encode_through_step(g, block)
        want_c, want_s = reference(g, block)
        np.testing.assert_array_equal(got_s, want_s)
        np.testing.assert_array_equal(got_c, want_c, err_msg=f"scale {scale}")


@pytest.mark.parametrize("signed", [False, True])
def test_q8_encode_dense_sweep_of_the_unit_interval(signed):
    """Every 61st float32 in [0, 1] (17M values, all decades of the map) as fractions of random
    block scales, against the scalar quantize."""
    rng = np.random.default_rng(20261134)
    block = 4096
    v = np.arange(0, 0x3F800001, 61, dtype=np.uint32).view(np.float32)
    rng.shuffle(v)
    nb = -(-v.size // (block - 1))
    v = np.concatenate([v, np.zeros(nb * (block - 1) - v.size, np.float32)]).reshape(nb, block - 1)
    scale = (10.0 ** rng.uniform(-3, 3, nb)).astype(np.float32)
    g = np.empty((nb, block), np.float32)
    g[:, :-1] = v * scale[:, None]
    g[:, -1] = scale
    if signed:
        g[:, :-1] *= rng.choice(np.array([-1, 1], np.float32), size=(nb, block - 1))
        g[:, 0] = -np.abs(g[:, 0]) - np.float32(1e-38)
    g = g.ravel()
    got_c, got_s = encode_through_step(g, block)
    want_c, want_s = reference(g, block)
    np.testing.assert_array_equal(got_s, want_s)
    np.testing.assert_array_equal(got_c, want_c)


@pytest.mark.parametrize("block", [64, 256, 2048])
def test_q8_encode_random_blocks_with_specials(block):
    """Log-uniform magnitudes over 12 decades, random signs, scales from subnormal to huge, and
    NaN / inf / zero / subnormal entries: the loop's codes and scales are the scalar quantize's."""
    rng = np.random.default_rng(20261135)
    n = 301 * block + 17
    g = (10.0 ** rng.uniform(-12, 0, n) * rng.choice([-1.0, 1.0], n)).astype(np.float32)
    nb = lowp.n_blocks(n, block)
    scale = (10.0 ** rng.uniform(-40, 38, nb)).astype(np.float32)
    g = (g * np.repeat(scale, block)[:n]).astype(np.float32)
    g[rng.integers(0, n, 50)] = np.nan
    g[rng.integers(0, n, 20)] = np.inf
    g[rng.integers(0, n, 20)] = -np.inf
    g[rng.integers(0, n, 50)] = 0.0
    g[rng.integers(0, n, 50)] = np.float32(1e-44)
    g[: block * 10] = np.abs(g[: block * 10])  # unsigned blocks too
    got_c, got_s = encode_through_step(g, block)
    want_c, want_s = reference(g, block)
    np.testing.assert_array_equal(got_s, want_s)
    np.testing.assert_array_equal(got_c, want_c)


def _loops():
    from optkern import _backend

    return _backend.cpu.build_info()["lowp_loops"]


_EXPECT = {"OPTKERN_PORTABLE": "portable", "OPTKERN_NO_AVX512": "avx2", "OPTKERN_NO_AVX512_VBMI": "avx512"}


@pytest.mark.parametrize("switch", list(_EXPECT))
def test_other_loops_too(switch):
    """The tests above, the step's bf16-state words and bf16 stores and stochastic_round's words run the fastest
    hand-written loops the CPU has (cpp/lowp_q8_avx512.hpp -- with AVX512_VBMI its decode by byte
    lookups -- or lowp_q8_avx2.hpp, philox_cpu.hpp's fill_words); OPTKERN_PORTABLE=1 turns them all
    off, OPTKERN_NO_AVX512=1 the AVX-512 ones, OPTKERN_NO_AVX512_VBMI=1 the byte-lookup decode and
    the 64-value encode (cpp/cpu_avx2.hpp), and the same tests pin those loops."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    ranks = list(_EXPECT.values()) + ["avx512-vbmi"]  # (slowest first)
    if ranks.index(_loops()) <= ranks.index(_EXPECT[switch]):
        pytest.skip(f"this CPU runs the {_loops()} loops already (the tests above pinned them)")
    here = Path(__file__).parent
    tests = [
        __file__,
        str(here / "test_lowp_step.py") + "::test_bf16_states_are_stochastic_roundings_of_the_fp32_step",
        str(here / "test_lowp.py") + "::test_stochastic_rounding_takes_the_documented_philox_words",
        str(here / "test_lowp.py") + "::test_to_float16_over_a_sweep_of_all_float32_bit_patterns",
        str(here / "test_hunt37_lowp_bf16.py"),  # (the bf16 stores: lowp_bf16_avx512.hpp or scalar)
        str(here / "test_hunt37_lowp_q8.py"),  # (8-bit blocks of every encoder case)
    ]
    env = dict(os.environ, **{switch: "1"})
    probe = "from optkern import _backend; print(_backend.cpu.build_info()['lowp_loops'])"
    r = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == _EXPECT[switch], r.stdout + r.stderr
    r = run_pytest(tests, {switch: "1"}, "not other_loops")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert " passed" in r.stdout


@pytest.mark.parametrize("block", [64, 256, 4096])
@pytest.mark.parametrize("tail", [0, 8, 13, 63])
def test_q8_decode_of_whole_and_partial_blocks(block, tail):
    """dequantize_blockwise equals the map's value times the block's |scale|, rounded once in
    float32, bit for bit: blocks of 64-code groups (AVX512_VBMI's byte lookups), a last block whose
    length leaves groups of 16 and 8 (the arithmetic AVX-512 decode) and fewer (the scalar one)."""
    rng = np.random.default_rng(block + tail)
    n = 3 * block + tail
    codes = rng.integers(0, 256, n).astype(np.uint8)
    nb = -(-n // block)
    scales = (rng.standard_normal(nb) * 10.0 ** rng.integers(-30, 30, nb)).astype(np.float32)
    scales[1] = 0.0
    got = lowp.dequantize_blockwise(codes, scales, block)
    s = np.repeat(scales, block)[:n]
    want = np.where(s < 0, lowp.decode_map(True)[codes] * -s, lowp.decode_map(False)[codes] * s).astype(np.float32)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
