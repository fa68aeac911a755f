"""Eval-mode batch norm (fixed running statistics) folds as torch's CPU kernel does: alpha = rstd γ
and beta = fma(-mean, alpha, β) per channel in the statistics' dtype, y = fma(x, alpha, beta)
(rules::eval_fold). y then equals torch.nn.functional.batch_norm(training=False) bit for bit with a
nonzero running mean and an affine weight too, where (x - mean) rstd γ + β was 1 ulp off in ~40%
of float32 outputs -- for every channel whose running mean is within 8 running σ of 0
(|mean| rstd <= 8, rules::eval_fold_used). Farther channels, where torch's fold loses accuracy
(tests/test_hunt47a_eval_far.py), and folds that overflow (torch's y inf / NaN) keep the plain form.
Training mode keeps its own formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import optkern.norm as N
import reference_norm as ref

SHAPES = [(1, 1), (7, 5), (37, 13), (1023, 3), (0, 3), (2, 3, 11), (3, 5, 7, 9), (7, 5, 1, 1), (1, 1023, 2, 3)]


def _t(a):
    return None if a is None else torch.from_numpy(a.copy())


def _inputs(rng, shape, dtype, affine, far=0.0):
    """x, γ, β and running statistics; each running mean within 7.9 running σ of 0 (folded), or a
    fraction ``far`` of the channels 10-1000 σ away (the plain form)."""
    C = shape[1]
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    rv = (rng.random(C) * 10.0 ** rng.uniform(-4, 2, C)).astype(dtype)
    sigma = np.sqrt(rv.astype(np.float64) + 1e-5)
    k = np.where(rng.random(C) < far, rng.uniform(10, 1000, C), rng.uniform(0, 7.9, C))
    rm = (sigma * k * rng.choice([-1.0, 1.0], C)).astype(dtype)
    w = rng.standard_normal(C).astype(dtype) if affine else None
    b = rng.standard_normal(C).astype(dtype) if affine else None
    return x, w, b, rm, rv


def _torch_eval(x, w, b, rm, rv, eps):
    return F.batch_norm(_t(x), _t(rm), _t(rv), _t(w), _t(b), training=False, eps=eps).numpy()


@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_eval_batch_norm_is_torch_s_bits(shape, dtype, affine):
    rng = np.random.default_rng(55 + len(shape) + shape[1])
    x, w, b, rm, rv = _inputs(rng, shape, dtype, affine)
    y, saved = N.batch_norm(x, w, b, rm, rv, training=False, eps=1e-5)
    np.testing.assert_array_equal(y, _torch_eval(x, w, b, rm, rv, 1e-5))
    assert not saved.training


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_plain_form_was_off_torch_s_bits(dtype):
    """The check can fail: (x - mean) rstd γ + β, each rounded (the former kernel's), differs from
    torch's bits in many elements of the same inputs."""
    rng = np.random.default_rng(551)
    x, w, b, rm, rv = _inputs(rng, (64, 13, 5), dtype, True)
    rstd = dtype(1) / np.sqrt(rv + dtype(1e-5))
    c = (1, -1, 1)
    plain = ((x - rm.reshape(c)) * rstd.reshape(c)) * w.reshape(c) + b.reshape(c)
    assert np.count_nonzero(plain != _torch_eval(x, w, b, rm, rv, 1e-5)) > 0.1 * x.size


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_module_and_instance_norm_eval_are_torch_s_bits(dtype):
    rng = np.random.default_rng(552)
    x, w, b, rm, rv = _inputs(rng, (5, 7, 9), dtype, True)
    m = N.BatchNorm(7, dtype=dtype)
    m.weight[...], m.bias[...], m.running_mean[...], m.running_var[...] = w, b, rm, rv
    np.testing.assert_array_equal(m(x, training=False), _torch_eval(x, w, b, rm, rv, 1e-5))
    y, _ = N.instance_norm(x, w, b, rm, rv, use_input_stats=False, eps=1e-5)
    want = F.instance_norm(_t(x), _t(rm), _t(rv), _t(w), _t(b), use_input_stats=False, eps=1e-5).numpy()
    np.testing.assert_array_equal(y, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_training_mode_is_not_folded(dtype):
    """Training normalizes with x̂ = (x - mean) rstd on its own (the batch statistics' kernels):
    y as the float64 reference of the same values, to float rounding, and its saved statistics."""
    rng = np.random.default_rng(553)
    x, w, b, _, _ = _inputs(rng, (33, 5, 7), dtype, True)
    y, saved = N.batch_norm(x, w, b, training=True, eps=1e-5)
    y64, mean64, _ = ref.batch_norm(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), 1e-5)
    tol = 8 * np.finfo(dtype).eps
    np.testing.assert_allclose(y, y64, rtol=tol, atol=tol * np.abs(y64).max())
    np.testing.assert_allclose(saved.mean, mean64, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_far_channels_keep_the_plain_form_s_accuracy(dtype):
    """Channels 10-1000 running σ from 0: y within a few ulps of the float64 normalization of the
    same values (torch's fold: up to |mean| rstd / 2 ulps off); the near ones still torch's bits."""
    rng = np.random.default_rng(555)
    x, w, b, rm, rv = _inputs(rng, (9, 41, 13), dtype, True, far=0.5)
    x = (x + rm.reshape(1, -1, 1)).astype(dtype)  # (data around the running mean: y of order 1)
    y, saved = N.batch_norm(x, w, b, rm, rv, training=False, eps=1e-5)
    near = np.abs(rm.astype(np.float64)) * saved.rstd <= 8
    assert 5 < near.sum() < 36
    want = _torch_eval(x, w, b, rm, rv, 1e-5)
    np.testing.assert_array_equal(y[:, near], want[:, near])
    r = saved.rstd.astype(np.float64).reshape(1, -1, 1)
    y64 = (x - rm.reshape(1, -1, 1).astype(np.float64)) * r * w.reshape(1, -1, 1) + b.reshape(1, -1, 1)
    err = np.abs(y - y64)[:, ~near] / (np.abs(w).reshape(1, -1, 1)[:, ~near] + np.abs(y64[:, ~near]))
    assert err.max() <= 4 * np.finfo(dtype).eps
    torch_err = np.abs(want - y64)[:, ~near] / (np.abs(w).reshape(1, -1, 1)[:, ~near] + np.abs(y64[:, ~near]))
    assert torch_err.max() > 4 * np.finfo(dtype).eps  # (the fold there: what the plain form avoids)


@pytest.mark.parametrize("shape", [(4, 3), (4, 3, 5)], ids=str)
def test_a_channel_whose_fold_overflows_keeps_the_plain_form(shape):
    """float32 mean 1e38 with rstd ~316: mean alpha overflows (torch's y: inf or NaN), while
    (x - mean) rstd γ + β of x near the mean is finite; the other channels keep torch's bits."""
    rng = np.random.default_rng(554)
    x, w, b, rm, rv = _inputs(rng, shape, np.float32, True)
    rm[1], rv[1] = 1e38, 0.0
    x[:, 1] = np.float32(1e38) + np.float32(2.0**103) * np.arange(shape[0]).reshape((-1,) + (1,) * (len(shape) - 2))
    y, saved = N.batch_norm(x, w, b, rm, rv, training=False, eps=1e-5)
    want = _torch_eval(x, w, b, rm, rv, 1e-5)
    assert not np.isfinite(want[:, 1]).all()
    assert np.isfinite(y).all()
    r = np.float64(saved.rstd[1])
    plain = (x[:, 1].astype(np.float64) - np.float64(rm[1])) * r * np.float64(w[1]) + np.float64(b[1])
    np.testing.assert_allclose(y[:, 1], plain, rtol=1e-6, atol=1e-6 * np.abs(plain).max())
    np.testing.assert_array_equal(np.delete(y, 1, axis=1), np.delete(want, 1, axis=1))
