"""SWALP's quantizers (optkern.lowp.quantize_fixed_point / quantize_block_fp) against float64
references, and the SWALP recipe (optkern.swalp.SWALP): its low-precision SGD step against a float64
reference step, its SWA model against the float64 mean of the quantized iterates."""

import numpy as np
import pytest

from optkern import lowp, random
from optkern.swalp import SWALP

SIZES = [0, 1, 7, 1023, 70_001]


def ref_grid(x, bits, log2_step, u=None):
    """float64 reference: 2^s clip(floor(x 2^-s + u) or rint(x 2^-s), -2^(bits-1), 2^(bits-1) - 1),
    the range cut to the grid points float32 holds (|i| 2^s <= FLT_MAX)."""
    y = np.asarray(x, np.float64) * 2.0 ** (-log2_step)
    i = np.floor(y + u) if u is not None else np.rint(y)
    fits = np.floor(float(np.finfo(np.float32).max) * 2.0 ** (-log2_step))
    i = np.clip(i, max(-(2.0 ** (bits - 1)), -fits), min(2.0 ** (bits - 1) - 1, fits))
    return (i * 2.0**log2_step).astype(np.float32)


def ref_block_exponent(x):
    """floor(log2) of the largest finite |x| (-126 when there is none but zeros)."""
    a = np.abs(np.asarray(x, np.float64))
    a = a[np.isfinite(a)]
    m = a.max() if a.size else 0.0
    return int(np.frexp(m)[1]) - 1 if m > 0 else -126


def ref_block_fp(x, bits, block, u=None):
    out = np.empty_like(x)
    flat, o = x.ravel(), out.ravel()
    b = block or max(flat.size, 1)
    for lo in range(0, flat.size, b):
        part = flat[lo : lo + b]
        if not (np.isfinite(part) & (part != 0)).any():  # no grid: zeros, NaN and +-inf kept as they are
            o[lo : lo + b] = part  # (a -0 may come back +0: equal here)
            continue
        e = ref_block_exponent(part)
        o[lo : lo + b] = ref_grid(flat[lo : lo + b], bits, e - bits + 2, None if u is None else u[lo : lo + b])
    return out


def sample(rng, n):
    """Normals over several magnitudes, with zeros, a subnormal and specials when there is room."""
    x = (rng.standard_normal(n) * 10.0 ** rng.integers(-3, 3, n)).astype(np.float32)
    if n >= 7:
        x[:5] = [0.0, -0.0, 1e-42, np.nan, np.inf]
    return x


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
@pytest.mark.parametrize("bits,frac", [(8, 6), (4, 1), (12, -2)])
def test_fixed_point_against_float64(n, rounding, bits, frac):
    rng = np.random.default_rng(20261131)
    x = sample(rng, n)
    seed, offset = int(rng.integers(1 << 40)), int(rng.integers(1 << 20))
    got = lowp.quantize_fixed_point(x, bits, frac, rounding=rounding, seed=seed, offset=offset)
    u = random.uniform(n, seed=seed, offset=offset).astype(np.float64) if rounding == "stochastic" else None
    np.testing.assert_array_equal(got, ref_grid(x, bits, -frac, u))


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
@pytest.mark.parametrize("block", [0, 64, 100])
def test_block_fp_against_float64(n, rounding, block):
    rng = np.random.default_rng(20261132)
    x = sample(rng, n)
    if n > 200:  # blocks of very different magnitudes, one all-zero block
        x[64:128] *= np.float32(1e-30)
        x[128:192] = 0.0
        x[[130, 150]] = [np.inf, -np.inf]  # (kept: a block with no finite non-zero value)
    seed = int(rng.integers(1 << 40))
    got = lowp.quantize_block_fp(x, 8, block, rounding=rounding, seed=seed)
    u = random.uniform(n, seed=seed).astype(np.float64) if rounding == "stochastic" else None
    np.testing.assert_array_equal(got, ref_block_fp(x, 8, block, u))


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_block_fp_keeps_values_near_float32s_limit_finite(bits, rounding):
    """A block with absmax >= 2^127: its bottom grid point -2^(bits-1) step would be -2^128, past
    float32; finite values stay finite on both sides (the grid stops at the last float32 points)."""
    big = np.finfo(np.float32).max
    x = np.array([-big, big, -3.39e38, 1.0, -(2.0**127)], np.float32)
    for seed in range(20):
        got = lowp.quantize_block_fp(x, bits, 0, rounding=rounding, seed=seed)
        assert np.isfinite(got).all(), got
        u = random.uniform(x.size, seed=seed).astype(np.float64) if rounding == "stochastic" else None
        np.testing.assert_array_equal(got, ref_block_fp(x, bits, 0, u))


def test_block_fp_keeps_bits_minus_one_significant_bits_of_the_absmax():
    x = np.array([0.7, -0.3, 0.01], np.float32)  # E = -1, step 2^-7
    got = lowp.quantize_block_fp(x, 8, rounding="nearest")
    np.testing.assert_array_equal(got, np.rint(x.astype(np.float64) * 128) / 128)
    assert np.all(np.abs(got - x) <= 2.0**-8)


@pytest.mark.parametrize("number", ["fixed_point", "block_fp"])
def test_stochastic_rounding_is_unbiased(number):
    rng = np.random.default_rng(20261133)
    n = 200_000
    v = np.float32(rng.uniform(-0.9, 0.9))
    x = np.full(n, v, np.float32)
    if number == "fixed_point":
        q = lowp.quantize_fixed_point(x, 8, 5, seed=int(rng.integers(1 << 40)))
        step = 2.0**-5
    else:
        x[0] = 1.0  # the block's exponent: E = 0, step 2^-6
        q = lowp.quantize_block_fp(x, 8, seed=int(rng.integers(1 << 40)))[1:]
        step = 2.0**-6
    assert set(np.unique(q)) <= {np.floor(v / step) * step, np.ceil(v / step) * step}
    se = q.astype(np.float64).std() / np.sqrt(q.size)
    assert abs(q.astype(np.float64).mean() - float(v)) <= 3 * se + 1e-12


def test_stochastic_rounding_is_deterministic_per_seed_step_offset():
    x = np.random.default_rng(20261134).standard_normal(5000).astype(np.float32)
    a = lowp.quantize_block_fp(x, 8, 64, seed=3, step=2)
    np.testing.assert_array_equal(a, lowp.quantize_block_fp(x, 8, 64, seed=3, step=2))
    assert not np.array_equal(a, lowp.quantize_block_fp(x, 8, 64, seed=3, step=3))
    assert not np.array_equal(a, lowp.quantize_block_fp(x, 8, 64, seed=4, step=2))
    b = lowp.quantize_fixed_point(x, 8, 6, seed=3, step=2)
    np.testing.assert_array_equal(lowp.quantize_fixed_point(x[64:], 8, 6, seed=3, step=2, offset=64), b[64:])


def test_in_place_and_bad_input():
    x = np.random.default_rng(20261135).standard_normal(1000).astype(np.float32)
    want = lowp.quantize_block_fp(x, 8, 64, seed=1)
    assert lowp.quantize_block_fp(x, 8, 64, seed=1, out=x) is x
    np.testing.assert_array_equal(x, want)
    with pytest.raises(ValueError, match="out"):
        lowp.quantize_fixed_point(x[1:], out=x[:-1])
    with pytest.raises(TypeError, match="x"):
        lowp.quantize_fixed_point(x.astype(np.float64))
    with pytest.raises(ValueError, match="bits"):
        lowp.quantize_block_fp(x, 1)
    with pytest.raises(ValueError, match="bits"):
        lowp.quantize_block_fp(x, 25)
    with pytest.raises(ValueError, match="block"):
        lowp.quantize_block_fp(x, 8, -1)
    with pytest.raises(ValueError, match="rounding"):
        lowp.quantize_fixed_point(x, rounding="up")
    with pytest.raises(TypeError, match="out"):
        lowp.quantize_fixed_point(x, out=np.empty(3, np.float32))


# ---- the recipe ------------------------------------------------------------------------------------


def least_squares(rng, n=64, d=(20, 7)):
    """A linear model y = X W1 + b1 with its gradient; returns (grad_fn, loss_fn, params, optimum)."""
    X = rng.standard_normal((n, d[0])).astype(np.float32)
    w_true = rng.standard_normal(d).astype(np.float32) * 0.5
    b_true = rng.standard_normal(d[1]).astype(np.float32) * 0.1
    Y = X @ w_true + b_true + 0.01 * rng.standard_normal((n, d[1])).astype(np.float32)

    def grads(w, b, rows):
        r = X[rows] @ w + b - Y[rows]
        return [(X[rows].T @ r / len(rows)).astype(np.float32), r.mean(0).astype(np.float32)]

    A = np.hstack([X, np.ones((n, 1), np.float32)]).astype(np.float64)
    opt = np.linalg.lstsq(A, Y.astype(np.float64), rcond=None)[0]
    return grads, [np.zeros(d, np.float32), np.zeros(d[1], np.float32)], [opt[:-1], opt[-1]]


def test_swalp_step_against_float64_reference():
    """Each step from SWALP's own state: quantized gradient, float64 SGD momentum step, quantized
    buffers and weights (nearest rounding, so the reference needs no random words): equal but where
    float32 and float64 round to different sides of a grid midpoint."""
    rng = np.random.default_rng(20261136)
    grads, params, _ = least_squares(rng)
    lr, mu, wd = 0.05, 0.9, 1e-3
    opt = SWALP(params, lr, mu, wd, block=0, rounding="nearest")
    total = exact = 0
    for t in range(1, 31):
        rows = rng.choice(64, 16, replace=False)
        w0 = [p.astype(np.float64) for p in params]
        b0 = [b.astype(np.float64) for b in opt.buffers]
        gs = grads(params[0], params[1], rows)
        opt.step(gs)
        for p, w, b, g, buf in zip(params, w0, b0, gs, opt.buffers):
            gq = ref_block_fp(g, 8, 0).astype(np.float64)
            b = gq + wd * w if t == 1 else mu * b + gq + wd * w
            w = w - lr * b
            want_b = ref_block_fp(b.astype(np.float32), 8, 0)
            want_w = ref_block_fp(w.astype(np.float32), 8, 0)
            for got, want in ((buf, want_b), (p, want_w)):
                step = 2.0 ** (ref_block_exponent(want) - 6)
                assert np.all(np.abs(got.astype(np.float64) - want) <= 2 * step)  # (2: the exponent may flip too)
                total += got.size
                exact += int(np.sum(got == want))
    assert exact >= 0.99 * total


def test_swalp_average_is_the_float64_mean_of_the_quantized_iterates():
    rng = np.random.default_rng(20261137)
    grads, params, _ = least_squares(rng)
    opt = SWALP(params, 0.05, 0.9, swa_start=10, cycle=3, seed=int(rng.integers(1 << 40)))
    kept = []
    for t in range(1, 41):
        opt.step(grads(params[0], params[1], rng.choice(64, 16, replace=False)))
        if t >= 10 and (t - 10) % 3 == 0:
            kept.append([p.astype(np.float64) for p in params])
    assert opt.swa.n_averaged == len(kept) == 11
    for i in range(2):
        mean = np.mean([k[i] for k in kept], axis=0)
        np.testing.assert_allclose(opt.averages[i], mean, rtol=0, atol=len(kept) * 2.0**-23 * np.abs(mean).max())
        # the iterates sit on the 8-bit grid, the average does not
        e = ref_block_exponent(params[i])
        np.testing.assert_array_equal(params[i], np.rint(params[i] * 2.0 ** (6 - e)) * 2.0 ** (e - 6))


def test_swalp_average_lands_closer_to_the_optimum_than_the_last_iterate():
    """SWALP's point: 8-bit SGD at a constant lr rattles around the optimum, its average does not."""
    rng = np.random.default_rng(20261138)
    grads, params, opt_w = least_squares(rng)
    opt = SWALP(params, 0.1, 0.5, swa_start=200, cycle=1, seed=int(rng.integers(1 << 40)))
    for _ in range(600):
        opt.step(grads(params[0], params[1], rng.choice(64, 8, replace=False)))

    def dist(ws):
        return np.sqrt(sum(np.sum((w.astype(np.float64) - o) ** 2) for w, o in zip(ws, opt_w)))

    assert dist(opt.averages) < 0.5 * dist(params)


def test_swalp_bad_input():
    p = [np.zeros(5, np.float32)]
    with pytest.raises(ValueError, match="number"):
        SWALP(p, 0.1, number="float")
    with pytest.raises(ValueError, match="bits"):
        SWALP(p, 0.1, bits={"weight": 8})
    with pytest.raises(TypeError, match="params"):
        SWALP([np.zeros(5)], 0.1)
    with pytest.raises(ValueError, match="lr"):
        SWALP(p, -1.0)
    opt = SWALP(p, 0.1)
    with pytest.raises(ValueError, match=r"^grads\[0\]: expected shape \(5,\), got \(4,\)"):
        opt.step([np.zeros(4, np.float32)])
    with pytest.raises(TypeError, match=r"^grads\[0\]: expected float32, got float64"):
        opt.step([np.zeros(5)])
    with pytest.raises(TypeError, match=r"^grads\[0\]: expected a numpy.ndarray, got list"):
        opt.step([[0.0] * 5])
    with pytest.raises(ValueError, match="grads"):
        opt.step([])
