"""Eval-mode batch / instance norm (fixed running statistics) form ``rstd = 1 / sqrt(running_var + eps)``
as torch's CPU eval batch norm does: in the statistics' dtype, eps rounded to it first (float32: the
sum, the square root and the quotient each rounded), so y equals torch.nn.functional.batch_norm /
instance_norm bit for bit in float32 and float64 (running_mean 0 here: see _inputs). (h324's
682e8c09 formed it in double and rounded once: closer to float64 by ~0.1 ulp of y, but a quarter
of the elements off torch's bits.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import optkern.norm as N

ml_dtypes = pytest.importorskip("ml_dtypes")


def _variances(rng, C, dtype=np.float32):
    # running variances over nine decades, some exactly 0 (rstd = 1 / sqrt(eps))
    rv = (rng.random(C) * 10.0 ** rng.uniform(-6, 3, C)).astype(dtype)
    rv[: min(C, 5)] = 0
    return rv


def _torch_rule(rv, eps):
    # torch's batch_norm_cpu_collect_linear_and_constant_terms: 1 / sqrt(var + (opmath_t) eps)
    e = rv.dtype.type(eps)
    return rv.dtype.type(1) / np.sqrt(rv + e)


def _inputs(rng, shape, dtype, affine):
    # running_mean 0 (here; any mean and weight: tests/test_hunt55d_bn_eval_fold.py, since optkern
    # folds them as torch does, a = rstd w, y = fma(x, a, fma(-mean, a, b)))
    C = shape[1]
    x = rng.standard_normal(shape).astype(dtype)
    rm = np.zeros(C, dtype)
    rv = _variances(rng, C, dtype)
    w = rng.standard_normal(C).astype(dtype) if affine else None
    b = rng.standard_normal(C).astype(dtype) if affine else None
    return x, w, b, rm, rv


def _t(a):
    return None if a is None else torch.from_numpy(a.copy())


@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("eps", [1e-5, 1e-3, 0.1, 3.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(4, 1023, 3), (1, 7, 1), (2, 1, 5), (0, 3, 2)])
def test_batch_norm_eval_equals_torch_bitwise(shape, dtype, eps, affine):
    rng = np.random.default_rng(54)
    x, w, b, rm, rv = _inputs(rng, shape, dtype, affine)
    y, saved = N.batch_norm(x, w, b, rm, rv, training=False, eps=eps)
    want = F.batch_norm(_t(x), _t(rm), _t(rv), _t(w), _t(b), training=False, eps=eps).numpy()
    np.testing.assert_array_equal(saved.rstd, _torch_rule(rv, eps))
    np.testing.assert_array_equal(y, want)


@pytest.mark.parametrize("eps", [1e-5, 0.1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_instance_norm_running_stats_equals_torch_bitwise(dtype, eps):
    rng = np.random.default_rng(541)
    x, w, b, rm, rv = _inputs(rng, (3, 257, 7), dtype, False)
    y, saved = N.instance_norm(x, w, b, rm, rv, use_input_stats=False, eps=eps)
    want = F.instance_norm(_t(x), _t(rm), _t(rv), _t(w), _t(b), use_input_stats=False, eps=eps).numpy()
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(saved.rstd, _torch_rule(rv, eps))


@pytest.mark.parametrize("dtype", [np.float16, "bfloat16"])
def test_half_input_eval_rstd_is_torch_float32_rule(dtype):
    """Half / bfloat16 x with float32 running statistics: rstd in float32 as torch's (opmath float)."""
    rng = np.random.default_rng(544)
    dt = ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype
    C = 1023
    rv = _variances(rng, C)
    x = rng.standard_normal((2, C, 3)).astype(dt)
    _, saved = N.batch_norm(x, None, None, np.zeros(C, np.float32), rv, training=False, eps=1e-5)
    np.testing.assert_array_equal(saved.rstd, _torch_rule(rv, 1e-5))


def test_negative_and_huge_running_var_still_nan_and_zero():
    """A variance below -eps gives NaN (torch's), an infinite one rstd 0, one at float32's max a finite
    rstd; no NumPy warning escapes."""
    rv = np.array([-1.0, np.inf, np.finfo(np.float32).max, 0.0], np.float32)
    x = np.ones((2, 4, 3), np.float32)
    with np.errstate(all="raise"):
        _, saved = N.batch_norm(x, None, None, np.zeros(4, np.float32), rv, training=False, eps=1e-5)
    r = saved.rstd
    assert np.isnan(r[0]) and r[1] == 0 and 0 < r[2] < 1e-18
    assert r[3] == np.float32(1) / np.sqrt(np.float32(1e-5))
