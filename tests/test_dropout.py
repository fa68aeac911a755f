"""optkern.norm.dropout: inverted scaling, mask regenerated from (seed, offset),
keep-rate statistics, and the documented link to optkern.random."""

import zlib
from fractions import Fraction

import numpy as np
import pytest

from optkern import norm
from optkern import random as okr


def mask_ref(shape, p, seed, offset):
    """The documented mask: the 32-bit word w of stream (seed, offset + i) >= t = round(p 2^32). w's
    top 24 bits are optkern.random's float32 uniform times 2^24, which settle every element but those
    of the one 24-bit bucket holding t: their words come from test_random's pure-Python Philox."""
    from test_random import words_ref

    hi = (okr.uniform(shape, seed=seed, offset=offset).ravel().astype(np.float64) * 2**24).astype(np.int64)
    t = int(Fraction(p) * 2**32 + Fraction(1, 2))
    keep = hi * 256 >= t
    for i in np.flatnonzero(hi == t >> 8):
        keep[i] = int(words_ref(1, seed, offset + int(i))[0]) >= t
    return keep.reshape(shape)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9])
@pytest.mark.parametrize("shape", [(37, 1029), (1,), (7,), (1023,)])
def test_forward_backward(dtype, p, shape):
    rng = np.random.default_rng(zlib.crc32(repr((shape, p)).encode()))
    x = (rng.standard_normal(shape) + 2).astype(dtype)
    y, mask = norm.dropout(x, p, seed=99, offset=5, return_mask=True)
    assert y.shape == x.shape and y.dtype == dtype
    assert mask.shape == x.shape and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
    # the mask is the documented one: the 32-bit word of stream (seed, offset + i) >= round(p 2^32)
    np.testing.assert_array_equal(mask, mask_ref(x.shape, p, 99, 5).astype(np.uint8))
    scale = dtype(1.0 / float(dtype(1.0 - p)))  # torch: 1 - p in the dtype, then 1 / it rounded to it
    np.testing.assert_array_equal(y, np.where(mask, x * scale, 0).astype(dtype))
    np.testing.assert_array_equal(norm.dropout(x, p, seed=99, offset=5), y)
    dy = rng.standard_normal(x.shape).astype(dtype)
    np.testing.assert_array_equal(norm.dropout_backward(dy, p, seed=99, offset=5), np.where(mask, dy * scale, 0))
    # keep rate within binomial error
    n = x.size
    assert abs(mask.mean() - (1 - p)) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-12


def test_offsets_seeds_and_eval():
    x = np.ones(10_000, np.float32)
    a = norm.dropout(x, 0.5, seed=1)
    b = norm.dropout(x, 0.5, seed=1, offset=10_000)
    c = norm.dropout(x, 0.5, seed=2)
    assert not np.array_equal(a, b) and not np.array_equal(a, c)
    # consecutive offsets continue one stream
    full = norm.dropout(np.ones(20_000, np.float32), 0.5, seed=1)
    np.testing.assert_array_equal(np.concatenate([a, b]), full)
    assert abs((a != 0).mean() - 0.5) < 0.03
    assert norm.dropout(x, 0.5, seed=1, training=False) is x
    y, m = norm.dropout(x, 0.5, seed=1, training=False, return_mask=True)
    assert y is x and m.all()
    e = np.empty((0, 3), np.float32)
    assert norm.dropout(e, 0.5, seed=1).shape == (0, 3)


def test_expectation_is_preserved():
    x = np.full(1 << 20, 3.0, np.float64)
    for p in (0.2, 0.7):
        y = norm.dropout(x, p, seed=11)
        sd = 3.0 * np.sqrt(p / (1 - p) / x.size)
        assert abs(y.mean() - 3.0) < 5 * sd


def test_torch_dropout_statistics():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    x = np.ones((512, 512), np.float32)
    p = 0.3
    y = norm.dropout(x, p, seed=3)
    t = torch.nn.functional.dropout(torch.from_numpy(x), p=p, training=True).numpy()
    # same set of values (0 or 1 / (1 - p)), keep rates agree within binomial error
    np.testing.assert_allclose(np.unique(y), np.unique(t), rtol=1e-6)
    sd = np.sqrt(p * (1 - p) / x.size)
    assert abs((y != 0).mean() - (t != 0).mean()) < 7 * sd


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_dropped_nan_or_inf_stays_nan(dtype):
    """y = x · keep / (1 - p), as documented and as torch computes it: a dropped NaN or ±inf gives
    0 · NaN = 0 · inf = NaN, so a NaN activation (or, through backward, gradient) is not hidden.
    A select of 0 for dropped elements turned them into 0."""
    x = np.array([np.nan, np.inf, -np.inf, 1.0, -0.0, 3.0] * 64, dtype)
    y, mask = norm.dropout(x, 0.5, seed=0, offset=3, return_mask=True)
    dropped_bad = (mask == 0) & ~np.isfinite(x)
    assert dropped_bad.sum() > 20 and ((mask == 1) & ~np.isfinite(x)).sum() > 20
    with np.errstate(invalid="ignore"):
        want = x * np.where(mask, dtype(1.0 / (1.0 - 0.5)), dtype(0))  # the formula, in x's dtype
    np.testing.assert_array_equal(y, want)  # (NaN where want is NaN)
    assert np.isnan(y[dropped_bad]).all()
    np.testing.assert_array_equal(norm.dropout_backward(x, 0.5, seed=0, offset=3), want)


def test_torch_dropout_keeps_nan_and_inf_visible_too():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    x = np.array([np.nan, np.inf, -np.inf, 2.0] * 256, np.float32)
    t = torch.nn.functional.dropout(torch.from_numpy(x), p=0.5, training=True).numpy()
    y = norm.dropout(x, 0.5, seed=5)
    for out in (t, y):
        assert np.isnan(out[np.isnan(x)]).all()  # kept or dropped, NaN
        assert not (out[np.isinf(x)] == 0).any()  # ±inf kept (scaled) or dropped (NaN): never 0
        assert np.isnan(out[np.isinf(x)]).any() and np.isinf(out[np.isinf(x)]).any()
        assert set(np.unique(out[x == 2.0])) == {0.0, 4.0}
