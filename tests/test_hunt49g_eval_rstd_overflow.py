"""Eval-mode batch norm and instance norm (fixed running statistics) where ``running_var + eps``
passes the dtype's max (eps, or a running variance, near it; both valid): rstd = 1 / sqrt(var + eps)
is formed from a quarter of each (exact scalings), the value the training kernels' rsqrt_scaled
gives such sums. The sum overflowed in the statistics' dtype: NumPy's "overflow encountered in add"
RuntimeWarning escaped (an error under -W error, nothing computed) and otherwise rstd was 0, y = bias
(4e-20 x in float32 for var = eps = 3e38)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from optkern import norm


def _ulps(got, want, dtype):
    return float(abs(got - want) / np.spacing(dtype(abs(want))))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["batch", "instance", "module"])
def test_var_plus_eps_past_the_max(dtype, kind):
    big = float(np.finfo(dtype).max) * 0.9
    x = np.linspace(-2, 2, 24).astype(dtype).reshape(4, 3, 2)
    rm = np.zeros(3, dtype)
    rv = np.array([big, 1.0, big], dtype)
    eps = big
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if kind == "batch":
            y, saved = norm.batch_norm(x, None, None, rm, rv, training=False, eps=eps)
            rstd = saved.rstd
        elif kind == "instance":
            y, saved = norm.instance_norm(x, None, None, rm, rv, use_input_stats=False, eps=eps)
            rstd = saved.rstd
        else:
            m = norm.BatchNorm(3, eps=eps, dtype=dtype)
            m.running_var[...] = rv
            y = m.forward(x, training=False)
            rstd = m._saved.rstd
    for c in range(3):  # the float64 (or scaled) value of 1 / sqrt(var + eps)
        want = 0.5 / np.sqrt(np.float64(rv[c]) * 0.25 + np.float64(dtype(eps)) * 0.25)
        assert _ulps(rstd[c], want, dtype) <= 1.0
        assert rstd[c] > 0
    assert np.all(y[:, 0] != 0) and np.all(y[:, 2] != 0)  # (was exactly 0: rstd 0)


def test_ordinary_running_statistics_keep_their_bits():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    rm = rng.standard_normal(3).astype(np.float32)
    rv = (rng.random(3) + 0.5).astype(np.float32)
    _, saved = norm.batch_norm(x, None, None, rm, rv, training=False, eps=1e-5)
    assert np.array_equal(saved.rstd, (1.0 / np.sqrt(rv + np.float32(1e-5))).astype(np.float32))


def test_a_negative_or_infinite_running_variance_as_before():
    x = np.ones((2, 3, 2), np.float32)
    rv = np.array([-1.0, np.inf, np.nan], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, saved = norm.batch_norm(x, None, None, np.zeros(3, np.float32), rv, training=False)
    assert np.isnan(saved.rstd[0]) and saved.rstd[1] == 0 and np.isnan(saved.rstd[2])
