"""optkern.init: fills whose draws overflow the array's dtype, and LSUV's aliasing weights."""

import numpy as np
import pytest

import optkern.init as init

_OVERFLOWING = [
    (np.float16, dict(std=30000.0)),  # std representable, std * z past 65504 for |z| > 2.2
    (np.float32, dict(std=1e38)),
    (np.float32, dict(mean=3e38, std=1e38)),  # each representable, their sum is not
]


@pytest.mark.parametrize(("dtype", "kw"), _OVERFLOWING)
def test_normal_draws_past_the_dtype_raise_before_writing(dtype, kw):
    w = np.full((60, 50), 7, dtype)
    with pytest.raises(ValueError, match="^std: draws of N"):
        init.normal_(w, rng=0, **kw)
    assert (w == 7).all()
    # the check changes no bit where nothing overflows: z * std + mean in float32, rounded once to
    # float16 (it was each op in float16, std and mean rounded to it first: a subnormal float16 std
    # widened the spread, 1.3% at std=1e-6; hunt38d)
    init.normal_(w, mean=1.5, std=0.3, rng=5)
    z = np.random.default_rng(5).standard_normal(w.shape, dtype=np.float32)
    np.testing.assert_array_equal(w, (z * np.float32(0.3) + np.float32(1.5)).astype(dtype))


def test_normal_fan_fill_past_float16_names_gain():
    w = np.full((100, 100), 7, np.float16)  # fans 100: scale = gain / 10 = 20000
    with pytest.raises(ValueError, match="^gain: draws of N"):
        init.xavier_normal_(w, gain=2e5, rng=0)
    assert (w == 7).all()


@pytest.mark.parametrize("b", [65504.0, 65519.0])  # 65519 rounds to 65504 in float16
def test_uniform_near_float16_max_stays_in_range(b):
    # half and mid, rounded to float16 apart, added up past 65504: infs (or, under -W error,
    # NumPy's overflow warning after the draws were written)
    for a in [59584.08, 61313.26, -65471.37, 0.0, -65504.0]:
        w = np.zeros(5000, np.float16)
        init.uniform_(w, a, b, rng=1)
        assert np.isfinite(w).all()
        assert w.min() >= np.float16(a) and w.max() <= np.float16(b)
        assert abs(w.astype(np.float64).mean() - (a + b) / 2) < 0.05 * (b - a)


def _float16_uniform(seed, shape, a, b):
    """optkern's float16 U(a, b): (2u - 1) * half + mid in float32, rounded once to float16, a draw
    rounded up to b taken as a (torch's half uniform_ rule). It was each op in float16, u, half and
    mid rounded to it first: a subnormal half stepped to float16's grid, U(-1e-6, 1e-6) came out
    1.4% too wide (hunt38d); the float32 sum cannot overflow where float16's did (hunt28)."""
    u = np.random.default_rng(seed).random(shape, dtype=np.float32)
    f = np.float32
    r = ((u * f(2) - f(1)) * f((b - a) / 2) + f((a + b) / 2)).astype(np.float16)
    return np.where(r == np.float16(b), np.float16(a), r)


def test_uniform_values_are_the_float32_draw_rounded_once():
    w = np.empty((7, 1023), np.float16)
    init.uniform_(w, -0.5, 2.0, rng=3)
    np.testing.assert_array_equal(w, _float16_uniform(3, (7, 1023), -0.5, 2.0))
    w = np.zeros(5000, np.float16)
    init.uniform_(w, 59584.08, 65504.0, rng=1)  # (a float16 sum reached inf here; hunt28)
    assert np.isfinite(w).all() and (w >= np.float16(59584.08)).all() and (w < np.float16(65504.0)).all()
    np.testing.assert_array_equal(w, _float16_uniform(1, 5000, 59584.08, 65504.0))


def _forward(ws):
    return lambda x: [x @ ws[0].T, x @ ws[1].T]


@pytest.mark.parametrize("second", [lambda w: w, lambda w: w[:, :], lambda w: w.T.T])
def test_lsuv_refuses_a_weight_listed_twice(second):
    w = np.random.default_rng(0).standard_normal((10, 10))
    w0 = w.copy()
    ws = [w, second(w)]
    with pytest.raises(ValueError, match=r"^weights\[1\]: shares memory with weights\[0\]"):
        init.lsuv_(ws, _forward(ws), np.ones((8, 10)), rng=0)
    np.testing.assert_array_equal(w, w0)


def test_lsuv_accepts_interleaved_views():
    buf = np.random.default_rng(0).standard_normal((20, 10))
    ws = [buf[::2], buf[1::2]]  # one buffer, no shared element
    x = np.random.default_rng(1).standard_normal((64, 10))
    out = init.lsuv_(ws, _forward(ws), x, rng=0, orthogonal_start=False)
    assert all(abs(v - 1) < 0.1 for v in out)
    with pytest.raises(ValueError, match=r"^weights\[1\]: shares memory"):  # but a real overlap is refused
        init.lsuv_([buf[:10], buf[5:15]], lambda x: [x, x], x)
