"""Defects found in optkern.norm by the 32nd hunt, each with a test that failed before its fix.

Float32 means: the statistics kernels (batch norm's per-channel ``channel_stats``, the row kernels
of layer / group / instance norm) summed the deviations from the first value, Σ(x - x[0]), in
float32. Those terms are of size σ whatever the mean, so for data centred near 0 the mean was off by
~1e-7 σ -- thousands of its ulps (torch: about one) -- and Σ x̂ (exactly 0) came out ~1e-3 N: a
dy with a common offset (10 + small, as a loss's gradient often has) gave dweight = Σ dy x̂ many
times off (batch norm of (40000, 3): 60 % of its size; torch 1 %). References: float64 on the
float32 inputs.
"""

import numpy as np
import pytest

from optkern import norm


def _mean_tolerance(m):
    """A few ulps of the float32 mean, plus a little for its spread (σ = 1 here)."""
    return 4 * np.spacing(np.abs(m).astype(np.float32)).astype(np.float64) + 2e-9


_STAT_CASES = [
    ("batch", (32768, 1)),  # (N, C): one sequential sum per channel and block of 16K rows
    ("batch", (40000, 3)),
    ("batch", (8, 2, 4096)),  # (N, C, S): lane sums per run
    ("layer", (4, 4096)),
    ("instance", (1, 257, 1023)),
    ("group", (2, 4, 2048)),
]


def _forward(kind, x, dy):
    """(saved mean, mean axes, dweight, dweight's sum axes) of the kernel `kind`."""
    if kind == "batch":
        _, s = norm.batch_norm(x, training=True)
        dw = norm.batch_norm_backward(dy, x, None, s)[1]
        return s.mean, (0, *range(2, x.ndim)), dw
    if kind == "layer":
        _, s = norm.layer_norm(x, x.shape[-1:])
        return s.mean, (x.ndim - 1,), norm.layer_norm_backward(dy, x, None, s)[1]
    if kind == "instance":
        _, s = norm.instance_norm(x)
        return s.mean, tuple(range(2, x.ndim)), norm.instance_norm_backward(dy, x, None, s)[1]
    _, s = norm.group_norm(x, 2)
    return s.mean, None, norm.group_norm_backward(dy, x, None, s)[1]


def _reference(kind, x64, dy64, axes):
    """(mean, dweight) in float64."""
    if kind == "group":
        N, C = x64.shape[:2]
        xg = x64.reshape(N, 2, -1)
        m = xg.mean(axis=2, keepdims=True)
        xh = ((xg - m) / np.sqrt(xg.var(axis=2, keepdims=True) + 1e-5)).reshape(x64.shape)
        return m.reshape(N, 2), (dy64 * xh).sum(axis=(0, *range(2, x64.ndim)))
    m = x64.mean(axis=axes, keepdims=True)
    xh = (x64 - m) / np.sqrt(x64.var(axis=axes, keepdims=True) + 1e-5)
    wax = tuple(range(x64.ndim - 1)) if kind == "layer" else (0, *range(2, x64.ndim))
    if kind == "instance":
        wax = (0, *range(2, x64.ndim))
    return m, (dy64 * xh).sum(axis=wax)


@pytest.mark.parametrize("kind, shape", _STAT_CASES)
def test_float32_mean_of_data_centred_near_zero(kind, shape):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(np.float32)
    dy = (10 + 1e-3 * rng.standard_normal(shape)).astype(np.float32)
    mean, axes, _ = _forward(kind, x, dy)
    m, _ = _reference(kind, x.astype(np.float64), dy.astype(np.float64), axes)
    m = m.reshape(mean.shape)
    err = np.abs(mean.astype(np.float64) - m)
    assert np.all(err <= _mean_tolerance(m)), (err.max(), np.abs(m).max())


@pytest.mark.parametrize("kind, shape", _STAT_CASES)
def test_float32_dweight_of_a_dy_with_a_common_offset(kind, shape):
    """dweight = Σ dy x̂ with dy = 10 + small: 10 Σ x̂ cancels (Σ x̂ = 0), and a mean off by δ left
    10 r N δ of it."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape).astype(np.float32)
    dy = (10 + 1e-3 * rng.standard_normal(shape)).astype(np.float32)
    _, axes, dw = _forward(kind, x, dy)
    _, want = _reference(kind, x.astype(np.float64), dy.astype(np.float64), axes)
    err = np.abs(dw - want).max()
    assert err <= 0.03 * np.abs(want).max(), (err, np.abs(want).max())


# ---- RMS norm and weight norm: Σ x² of long float32 rows -------------------------------------
#
# sum_squares summed x² in float32 lanes of up to thousands of terms each: for rows of similar
# values every addition rounds the same way, and a constant row of 65536 had ‖x‖² 1e-5 off (RMS
# norm's y = 1 ± 1e-5, ~100 ulps; weight norm's w as far; torch within an ulp). Now summed in double
# (the products exact from float32).


@pytest.mark.parametrize("M", [2048, 65536])
@pytest.mark.parametrize("c", [3.3, 123.456, 1e4])
def test_float32_rms_norm_of_a_constant_row(M, c):
    x = np.full((2, M), c, np.float32)
    y, s = norm.rms_norm(x, (M,), None, 1e-6)
    x64 = x.astype(np.float64)
    inv = 1 / np.sqrt((x64**2).mean(axis=1) + 1e-6)
    np.testing.assert_allclose(s.inv_rms, inv, rtol=1e-7)
    np.testing.assert_allclose(y, x64 * inv[:, None], rtol=2.4e-7)  # (two roundings of y ~ 1)


@pytest.mark.parametrize("M", [2048, 65536])
def test_float32_weight_norm_of_a_constant_tensor(M):
    v = np.full((2, M // 2), 123.456, np.float32)
    w, s = norm.weight_norm(v, np.ones(1, np.float32), dim=None)
    nrm = np.sqrt((v.astype(np.float64) ** 2).sum())
    np.testing.assert_allclose(s.norm, [nrm], rtol=1e-7)
    np.testing.assert_allclose(w, v.astype(np.float64) / nrm, rtol=2.4e-7)


# ---- Σ(x - mean)² of long float32 runs of repeated values ------------------------------------
#
# Batch norm's (N, C, S) statistics summed the squared deviations of a whole run in one float32
# lane sum (S = 16384: 512 terms a lane) and the runs of a block in float32: for data of few
# distinct values (quantized inputs, ±c) every addition rounded alike, and rstd came out 3e-6 off
# (~20 ulps of y; torch within an ulp). Now chunks of 2048 are lane-summed and added in double, as
# the row kernels merge their chunks: within a few ulps (rtol 5e-7) as those are.


@pytest.mark.parametrize("c", [0.7, 3.3, 123.456])
def test_float32_batch_norm_rstd_of_data_of_two_values(c):
    x = np.empty((4, 2, 16384), np.float32)
    x[..., 0::2], x[..., 1::2] = c, -c
    _, s = norm.batch_norm(x, training=True)
    c32 = float(np.float32(c))
    np.testing.assert_allclose(s.rstd, 1 / np.sqrt(c32 * c32 + 1e-5), rtol=5e-7)
    np.testing.assert_allclose(s.mean, 0, atol=1e-12)
