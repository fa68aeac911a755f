"""Rows far from 0 normalized with the mean's low part (46th hunt, a).

The row norms saved the row's mean rounded to x's dtype and normalized with it: (x - mean) r. Float32
rows of 1e7 + 0.5 + N(0, 1) (mean ulp 1, σ 1) had y up to 0.49 off the float64 normalization of the
same float32 values (torch's: 1.5), and the backward, whose x̂ is the same, dγ = Σ dy x̂ as far off.
Now rows with |mean| r > 1 subtract the mean's low part too (rules::mean_lo): y, dx, dγ within a few
ulps of the exact ones; other rows keep (x - mean) r to the bit. The reference is float64 NumPy of
the same inputs (their float64 moments are exact to far below the float32 ulps checked), independent
of the kernels. The same data and bounds run on the GPU in tests/test_cuda_hunt46a_mean_lo.py.
"""

import numpy as np
import pytest

from optkern.norm import functional as F

EPS = 1e-5


def offset_rows(dtype, shape, seed=0):
    """Rows centred half an ulp of their dtype off an integer of it, σ ~ 1: the mean's rounding is
    half of σ (float32 1e7: ulp 1; float64 2^51: ulp 0.5, 1e15 + N(0, 1) had y 0.06 off too)."""
    rng = np.random.default_rng(seed)
    base = 1e7 + 0.5 if dtype == np.float32 else 2.0**51 + 0.25
    return (base + rng.standard_normal(shape)).astype(dtype)


def ref_rows(x, w, dy, M):
    """(y, dx, dγ, dβ) in float64 of rows of M values (x, dy, w: (R, M)). x is shifted by one of its
    values first (exact: all lie within a factor 2 of it), so the float64 sums are of values near 0."""
    x, dy, w = (np.asarray(a, np.float64) for a in (x, dy, w))
    x = x - x.flat[0]
    m = x.mean(1, keepdims=True)
    r = 1.0 / np.sqrt(x.var(1, keepdims=True) + EPS)
    xh = (x - m) * r
    g = dy * w
    dx = r * (g - g.mean(1, keepdims=True) - xh * (g * xh).mean(1, keepdims=True))
    return xh * w, dx, (dy * xh).sum(0), dy.sum(0)


def within(got, want, scale, k):
    """|got - want| <= k float32 / float64 ulps of `scale` (a typical magnitude of want)."""
    eps = np.finfo(got.dtype).eps
    err = np.max(np.abs(np.asarray(got, np.float64) - want))
    assert err <= k * eps * scale, (err, k * eps * scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_norm_far_from_zero(dtype):
    R, M = 16, 257
    x = offset_rows(dtype, (R, M))
    rng = np.random.default_rng(1)
    w = (1.0 + 0.1 * rng.standard_normal(M)).astype(dtype)
    dy = rng.standard_normal((R, M)).astype(dtype)
    y, saved = F.layer_norm(x, (M,), w, np.zeros(M, dtype), eps=EPS)
    dx, dw, db = F.layer_norm_backward(dy, x, w, saved)
    ry, rdx, rdw, rdb = ref_rows(x, np.broadcast_to(w, (R, M)), dy, M)
    within(y, ry, 4.0, 4)  # (|y| up to ~4: a few ulps of it; was 0.49 in float32)
    within(dx, rdx, 4.0, 16)
    within(dw, rdw, np.sqrt(R) * 4, 16)
    within(db, rdb, np.sqrt(R) * 4, 4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_instance_norm_far_from_zero(dtype):
    N, C, H, W = 2, 3, 7, 9
    x = offset_rows(dtype, (N, C, H, W), seed=2)
    rng = np.random.default_rng(3)
    w = (1.0 + 0.1 * rng.standard_normal(C)).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    y, saved = F.instance_norm(x, weight=w, bias=np.zeros(C, dtype), eps=EPS)
    dx, dw, db = F.instance_norm_backward(dy, x, w, saved)
    rows = (N * C, H * W)
    wr = np.broadcast_to(np.tile(w, N)[:, None], rows)
    ry, rdx, _, _ = ref_rows(x.reshape(rows), wr, dy.reshape(rows), H * W)
    within(y.reshape(rows), ry, 4.0, 4)
    within(dx.reshape(rows), rdx, 4.0, 16)
    x64, dy64 = x.astype(np.float64) - float(x.flat[0]), dy.astype(np.float64)  # (shifted: as ref_rows)
    xh = (x64 - x64.mean((2, 3), keepdims=True)) / np.sqrt(x64.var((2, 3), keepdims=True) + EPS)
    within(dw, (dy64 * xh).sum((0, 2, 3)), 4 * np.sqrt(N * H * W), 16)
    within(db, dy64.sum((0, 2, 3)), 4 * np.sqrt(N * H * W), 4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_near_zero_keep_the_plain_formula(dtype):
    # |mean| r <= 1: no low part, y = (x - mean) r to the bit (no affine: γ = 1, β = 0 add nothing)
    rng = np.random.default_rng(4)
    x = (0.3 + rng.standard_normal((8, 300))).astype(dtype)
    y, saved = F.layer_norm(x, (300,))
    assert np.all(np.abs(saved.mean * saved.rstd) <= 1)
    np.testing.assert_array_equal(y, (x - saved.mean[:, None]) * saved.rstd[:, None])


def group_case(dtype, xp=np):
    """Group norm of (2, 6, 5, 3) offset rows in 3 groups: (rows of Cg = 2 runs of S = 15, with γ per
    run); returns the results as NumPy arrays and the float64 reference's (y, dx)."""
    N, C, G, S = 2, 6, 3, 15
    x = offset_rows(dtype, (N, C, 5, 3), seed=5)
    rng = np.random.default_rng(6)
    w = (1.0 + 0.1 * rng.standard_normal(C)).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    gx, gw = xp.asarray(x), xp.asarray(w)
    y, saved = F.group_norm(gx, G, gw, xp.zeros(C, dtype), eps=EPS)
    dx = F.group_norm_backward(xp.asarray(dy), gx, gw, saved)[0]
    rows = (N * G, C // G * S)
    wr = np.broadcast_to(np.tile(np.repeat(w, S), N).reshape(rows), rows)
    ry, rdx, _, _ = ref_rows(x.reshape(rows), wr, dy.reshape(rows), rows[1])
    as_np = getattr(xp, "asnumpy", np.asarray)
    return as_np(y).reshape(rows), as_np(dx).reshape(rows), ry, rdx


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_group_norm_far_from_zero(dtype):
    y, dx, ry, rdx = group_case(dtype)
    within(y, ry, 4.0, 4)
    within(dx, rdx, 4.0, 16)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_instance_norm_with_running_buffers_far_from_zero(dtype):
    # (its y came from the channel kernels, around the rounded mean, while its backward, the row
    # kernel's, formed x̂ around the exact one: y and dx now both the exact ones')
    N, C, S = 2, 3, 40
    x = offset_rows(dtype, (N, C, S), seed=7)
    dy = np.random.default_rng(8).standard_normal(x.shape).astype(dtype)
    rm, rv = np.zeros(C, dtype), np.ones(C, dtype)
    y, saved = F.instance_norm(x, running_mean=rm, running_var=rv, eps=EPS)
    dx = F.instance_norm_backward(dy, x, None, saved)[0]
    ry, rdx, _, _ = ref_rows(x.reshape(N * C, S), np.ones((N * C, S)), dy.reshape(N * C, S), S)
    within(y.reshape(N * C, S), ry, 4.0, 4)
    within(dx.reshape(N * C, S), rdx, 4.0, 16)
