"""instance_norm with running buffers, float64 instances whose means are near the dtype's max: the
batch averages of the instance means (and unbiased variances) taken into the running buffers are
finite (the average of values <= max is <= max). NumPy's float64 mean summed them first: the sum
overflowed, "overflow encountered in reduce" escaped as a RuntimeWarning (an error under -W error,
raised after y had been written and with the buffers left as they were), and otherwise the running
mean became inf. Ordinary values keep their bits (the plain mean where it is finite)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from optkern import norm

BIG = float(np.finfo(np.float64).max)


def _x(n=4, c=3, s=5):
    return np.random.default_rng(0).standard_normal((n, c, s))


def test_means_near_the_max_average_to_a_finite_running_mean():
    x = _x()
    x[:, 1, :] = BIG * np.array([1.0, 0.75, 0.5, 1.0])[:, None]  # channel 1: every instance far up
    rm, rv = np.zeros(3), np.ones(3)
    out = np.empty_like(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y, _ = norm.instance_norm(x, None, None, rm, rv, momentum=0.5, out=out)
    assert y is out
    assert rm[1] == 0.5 * (BIG * 0.8125)  # the mean of (1, 0.75, 0.5, 1) max, halved: exact here
    assert rv[1] == 0.5 * 1.0  # (constant instances: unbiased variance 0)
    assert np.isfinite(rm).all() and np.isfinite(rv).all()


def test_ordinary_buffers_keep_their_bits():
    x = _x(7, 3, 9) * 3 + 1
    rm, rv = np.zeros(3), np.ones(3)
    _, saved = norm.instance_norm(x, None, None, rm, rv, momentum=0.25)
    var = x.var(axis=2, ddof=1)
    mean = x.mean(axis=2)
    assert np.allclose(rm, 0.25 * mean.mean(axis=0), rtol=1e-15, atol=0)
    assert np.allclose(rv, 0.75 + 0.25 * var.mean(axis=0), rtol=1e-14, atol=0)
    # the plain float64 average of the kernel's instance means, as before (momentum 0.25 from 0: exact)
    assert np.array_equal(rm, 0.25 * saved.mean.mean(axis=0, dtype=np.float64))


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_a_non_finite_instance_still_gives_a_non_finite_running_mean(bad):
    x = _x()
    x[2, 0, 3] = bad
    rm, rv = np.zeros(3), np.ones(3)
    with np.errstate(all="ignore"):
        norm.instance_norm(x, None, None, rm, rv)
    assert not np.isfinite(rm[0]) and np.isfinite(rm[1:]).all()
