"""Batch norm in training mode far from 0: the mean's low part in the channel kernels (47th hunt, k).

The row norms subtract the mean's low part (rules::mean_lo, hunt 46a) and the R-operator too (hunt
47a), but batch norm's own training forward / backward (channel_norm_forward / _backward) normalized
around the batch mean rounded to the statistics dtype alone: float32 (64, 3, 17) of 1e7 + 0.5 + N(0, 1)
had y 0.51 and dx 0.06 off the float64 batch norm of the same float32 values (torch: 0.59 and 0.32);
float64 at 2^51 + 0.25, y 0.055 off. Now every channel with |mean| rstd > 1 takes its low part from its
moments computed again (others keep their bits: eval mode too, around the running mean as given).
The reference: float64 batch norm of the same values, each channel shifted by one of its values
(exact: all lie within a factor 2 of it). The CUDA twin is tests/test_cuda_hunt47k_bn_mean_lo.py.
"""

import ml_dtypes
import numpy as np
import pytest

from optkern.norm import functional as F

EPS = 1e-5


def reference(x, w, b, dy):
    """float64 (y, dx, dw, db) of training batch norm, channels on axis 1."""
    x, w, b, dy = (np.asarray(a, dtype=np.float64) for a in (x, w, b, dy))
    ax = (0,) + tuple(range(2, x.ndim))
    sh = (1, -1) + (1,) * (x.ndim - 2)
    x = x - x[(0, slice(None)) + (0,) * (x.ndim - 2)].reshape(sh)
    m = x.mean(axis=ax, keepdims=True)
    r = 1 / np.sqrt(((x - m) ** 2).mean(axis=ax, keepdims=True) + EPS)
    xh = (x - m) * r
    g = dy * w.reshape(sh)
    dx = r * (g - g.mean(axis=ax, keepdims=True) - xh * (g * xh).mean(axis=ax, keepdims=True))
    return xh * w.reshape(sh) + b.reshape(sh), dx, (dy * xh).sum(axis=ax), dy.sum(axis=ax)


def far_data(dtype, shape, seed=0):
    rng = np.random.default_rng(seed)
    base = 1e7 + 0.5 if dtype == np.float32 else 2.0**51 + 0.25
    C = shape[1]
    x = (base + rng.standard_normal(shape)).astype(dtype)
    w, b = (1 + 0.1 * rng.standard_normal(C)).astype(dtype), rng.standard_normal(C).astype(dtype)
    return x, w, b, rng.standard_normal(shape).astype(dtype)


def run(x, w, b, dy, xp=np):
    d = [xp.asarray(a) for a in (x, w, b, dy)]
    y, sv = F.batch_norm(d[0], d[1], d[2], training=True, eps=EPS)
    dx, dw, db = F.batch_norm_backward(d[3], d[0], d[1], sv)
    as_np = getattr(xp, "asnumpy", np.asarray)
    return [as_np(a).astype(np.float64) for a in (y, dx, dw, db)]


@pytest.mark.parametrize("shape", [(64, 3, 17), (1000, 3), (7, 2, 300)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_far_training_matches_float64(dtype, shape):
    check_far(dtype, shape, np)


def check_far(dtype, shape, xp):
    x, w, b, dy = far_data(dtype, shape)
    got = run(x, w, b, dy, xp)
    want = reference(x, w, b, dy)
    eps = np.finfo(dtype).eps
    n = x.size // shape[1]
    # (|y| up to ~5, |dx| a few; dγ, dβ sums of n terms of size ~1)
    for name, a, r, s in zip(("y", "dx", "dw", "db"), got, want, (8.0, 8.0, 8.0 * np.sqrt(n), 8.0 * np.sqrt(n))):
        err = np.max(np.abs(a - r))
        assert err <= 16 * eps * s, (name, err, err / (eps * s))  # (y were 4e6 ulps off in float32)


def test_far_backward_finite_differences():
    """dx of a far float64 channel against central differences of Σ y dy, y from the float64
    reference() (not optkern's forward, whose error would be differenced with it)."""
    x, w, b, dy = far_data(np.float64, (6, 2, 5), seed=3)
    x = (x - 2.0**51).astype(np.float64) + 2.0**20  # (|mean| r ~ 1e6: far, with room for the steps)
    _, dx, _, _ = run(x, w, b, dy)
    rng = np.random.default_rng(1)
    h = 1e-4
    for idx in [tuple(rng.integers(0, s) for s in x.shape) for _ in range(6)]:
        xp_, xm = x.copy(), x.copy()
        xp_[idx] += h
        xm[idx] -= h
        fp = np.sum(reference(xp_, w, b, dy)[0] * dy)
        fm = np.sum(reference(xm, w, b, dy)[0] * dy)
        assert abs((fp - fm) / (2 * h) - dx[idx]) <= 1e-5 * (1 + abs(dx[idx])), idx


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
@pytest.mark.parametrize("shape", [(500, 2, 3), (3000, 2)])
def test_far_half(dtype, shape):
    check_half(dtype, shape, np)


def check_half(dtype, shape, xp):
    """Half storage, statistics in float32: a channel at 2048 (float16, ulp 2) or 256 (bfloat16) of
    steps of the storage's ulp. With dy = 1, dγ = Σ x̂ is exactly 0 around the exact mean; around the
    float32-rounded one it was n · lo · r (float16: 3e-2, where the float32 sums give ~1e-5)."""
    rng = np.random.default_rng(2)
    base, step = (2048.0, 2.0) if dtype == np.float16 else (256.0, 2.0)
    x = (base + step * rng.integers(-2, 3, shape) + step * (rng.random(shape) < 0.37)).astype(dtype)
    C = shape[1]
    w, b = np.ones(C, dtype), np.zeros(C, dtype)
    dy = np.ones(shape, dtype)
    y, dx, dw, db = run(x, w, b, dy, xp)
    ry, _, rdw, _ = reference(x, w, b, dy)
    n = x.size // C
    assert np.max(np.abs(dw - rdw)) <= 1e-3, (dw, rdw)
    # y as the float32 computation rounded once: within one half ulp of the exact value
    assert np.max(np.abs(y - ry) / np.maximum(np.abs(ry), 1e-2)) <= float(np.finfo(dtype).eps), n
    assert np.all(np.isfinite(dx))


def test_eval_and_ordinary_keep_their_bits():
    """Eval mode with the batch's own statistics as running buffers normalizes around them as given (no
    low part); a far channel beside ordinary ones leaves theirs as a call without it computes them."""
    x, w, b, dy = far_data(np.float32, (64, 3, 17))
    x[:, 1] = np.random.default_rng(4).standard_normal((64, 17)).astype(np.float32)
    y, sv = F.batch_norm(x, w, b, training=True, eps=EPS)
    y1, _ = F.batch_norm(np.ascontiguousarray(x[:, 1:2]), w[1:2], b[1:2], training=True, eps=EPS)
    assert np.array_equal(np.asarray(y)[:, 1:2], np.asarray(y1))
    rm, rv = np.asarray(sv.mean).copy(), 1 / np.asarray(sv.rstd).astype(np.float64) ** 2 - EPS
    ye, _ = F.batch_norm(x, w, b, rm, rv.astype(np.float32), training=False, eps=EPS)
    m, r = rm.reshape(1, 3, 1), (1 / np.sqrt(rv.astype(np.float32).astype(np.float64) + EPS)).reshape(1, 3, 1)
    want = (x.astype(np.float64) - m) * r * w.reshape(1, 3, 1) + b.reshape(1, 3, 1)  # (around rm as given)
    assert np.max(np.abs(np.asarray(ye, np.float64) - want)) <= 1e-5
