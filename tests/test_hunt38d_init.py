"""optkern.init's normal fills of float16 arrays (38th hunt): ``mean + std * z`` was computed in
float16, ``std`` and ``mean`` rounded to it first, so a std below float16's normal range (6.1e-5)
stepped to its subnormal grid (2**-24 apart): N(0, 1e-6^2) came out with a spread 1.3% too wide,
N(0, 1e-7^2) 20% too wide (torch: within the rounding of the values themselves). torch computes
in float32, its accumulate type for half, and rounds once; so does optkern now: the float16 fill
is the float32 one rounded, for normal_, the fan-based normal fills and sparse_. The uniform fills
had the same float16 arithmetic (U(-1e-6, 1e-6) 1.4% too wide, U(-1e-7, 1e-7) 26%): they are
computed in float32 too, a draw rounded up to b taken as a (torch's half uniform_ rule)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import optkern.init as okinit

_N = 2_000_000
_STEP = 2.0**-24  # float16's subnormal spacing


def _rounded_std_ratio(std: float) -> float:
    """E[round(std * Z)^2]^0.5 / std for Z ~ N(0, 1) rounded once to float16's subnormal grid (the
    values here stay below 2**-14, where the grid is uniform): the spread a single rounding gives."""
    k = np.arange(1, 1100, dtype=np.float64)
    cdf = np.array([0.5 * math.erfc(-((j + 0.5) * _STEP / std) / math.sqrt(2.0)) for j in range(1100)])
    mass = cdf[1:] - cdf[:-1]  # P(round = k) for k >= 1 (the negative side mirrors it)
    return math.sqrt(2.0 * float(np.sum(mass * (k * _STEP) ** 2))) / std


@pytest.mark.parametrize("std", [1e-6, 1e-7])
def test_float16_normal_spread_at_subnormal_std_is_the_rounded_one(std):
    w = okinit.normal_(np.empty(_N, np.float16), std=std, rng=11)
    ratio = float(w.astype(np.float64).std()) / std
    expected = _rounded_std_ratio(std)  # 1.00015 at 1e-6, 1.0147 at 1e-7 (torch: 0.99996, 1.0146)
    sigma = expected / math.sqrt(2.0 * _N)  # the sample std's standard error, relative
    assert abs(ratio - expected) < 5 * sigma, (ratio, expected)
    assert abs(float(w.astype(np.float64).mean())) < 5 * std / math.sqrt(_N)


@pytest.mark.parametrize(("mean", "std"), [(0.0, 1e-6), (0.0, 1e-7), (1.5, 0.3), (3e-7, 2e-7), (-2.0, 1e-3)])
def test_float16_normal_is_float32_mean_plus_std_times_z_rounded_once(mean, std):
    w = okinit.normal_(np.empty((63, 65), np.float16), mean=mean, std=std, rng=7)
    z = np.random.default_rng(7).standard_normal((63, 65), dtype=np.float32)
    np.testing.assert_array_equal(w, (np.float32(mean) + np.float32(std) * z).astype(np.float16))


def test_float16_normal_into_a_strided_view():
    base = np.full((8, 40), 9, np.float16)
    view = base[::2, ::-3]
    okinit.normal_(view, mean=0.25, std=1e-6, rng=3)
    z = np.random.default_rng(3).standard_normal(view.shape, dtype=np.float32)
    np.testing.assert_array_equal(view, (np.float32(0.25) + np.float32(1e-6) * z).astype(np.float16))
    untouched = np.ones(base.shape, bool)
    untouched[::2, ::-3] = False
    assert (base[untouched] == 9).all()


_FAN_FILLS = [
    lambda w, rng: okinit.kaiming_normal_(w, rng=rng),
    lambda w, rng: okinit.xavier_normal_(w, gain=1e-3, rng=rng),
    lambda w, rng: okinit.lecun_normal_(w, rng=rng),
    lambda w, rng: okinit.geometric_normal_(w, c=1e-9, rng=rng),
    lambda w, rng: okinit.sparse_(w, 0.3, std=1e-6, rng=rng),
]


@pytest.mark.parametrize("fill", _FAN_FILLS)
def test_float16_fan_fills_are_the_float32_fill_rounded(fill):
    w16 = fill(np.empty((300, 200), np.float16), 5)
    w32 = fill(np.empty((300, 200), np.float32), 5)
    np.testing.assert_array_equal(w16, w32.astype(np.float16))


def test_float16_overflow_still_refused_before_writing():
    w = np.full((60, 50), 7, np.float16)
    with pytest.raises(ValueError, match="^std: draws of N"):
        okinit.normal_(w, std=30000.0, rng=0)  # finite in float32, past 65504 once rounded
    assert (w == 7).all()


# ---- the uniform fills: the same float16 arithmetic, the same fix ------------------------------


def _torch_half_uniform_spread(b: float) -> float:
    """torch's half uniform_(-b, b) sample std over 2M draws, relative to b / sqrt(3): computed in
    float32 and rounded once, a draw rounded up to b taken as a (its DistributionTemplates.h)."""
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    t = torch.empty(_N, dtype=torch.float16).uniform_(-b, b, generator=g)
    return float(t.double().std()) / (b / math.sqrt(3.0))


@pytest.mark.parametrize("b", [1e-6, 1e-7, 3e-7])
def test_float16_uniform_spread_at_subnormal_bounds_is_torchs(b):
    w = okinit.uniform_(np.empty(_N, np.float16), -b, b, rng=11).astype(np.float64)
    ratio = float(w.std()) / (b / math.sqrt(3.0))
    # the sample std's standard error (relative): sqrt(kurtosis - 1) / (2 sqrt(n)), 0.8 for U(-1, 1)
    sigma = math.sqrt(0.8) / (2 * math.sqrt(_N)) * math.sqrt(2.0)  # (two samples compared)
    want = _torch_half_uniform_spread(b)  # 1.0002, 1.0195, 0.9933 (optkern was 1.0143, 1.265, 1.0034)
    assert abs(ratio - want) < 5 * sigma, (ratio, want)
    assert w.max() < b


@pytest.mark.parametrize(("a", "b"), [(-1e-6, 1e-6), (0.0, 1.0), (-0.5, 2.0), (3e-7, 5e-7)])
def test_float16_uniform_is_the_float32_draw_rounded_once(a, b):
    w = okinit.uniform_(np.empty((63, 65), np.float16), a, b, rng=4)
    u = np.random.default_rng(4).random((63, 65), dtype=np.float32)
    f = np.float32
    r = ((u * f(2) - f(1)) * f((b - a) / 2) + f((a + b) / 2)).astype(np.float16)
    np.testing.assert_array_equal(w, np.where(r == np.float16(b), np.float16(a), r))


_UNIFORM_FAN_FILLS = [  # (fill, its bound for a (300, 200) weight: fan_in 200, fan_out 300)
    (
        lambda w, rng: okinit.kaiming_uniform_(w, rng=rng),
        math.sqrt(3.0) * math.sqrt(2.0 / (1 + 0.01**2)) / math.sqrt(200),
    ),
    (lambda w, rng: okinit.xavier_uniform_(w, gain=1e-3, rng=rng), 1e-3 * math.sqrt(6.0 / 500)),
    (lambda w, rng: okinit.lecun_uniform_(w, rng=rng), math.sqrt(3.0 / 200)),
    (lambda w, rng: okinit.geometric_uniform_(w, c=1e-9, rng=rng), math.sqrt(3.0 * (1e-9 / math.sqrt(200 * 300)))),
]


@pytest.mark.parametrize(("fill", "bound"), _UNIFORM_FAN_FILLS)
def test_float16_uniform_fan_fills_are_the_float32_fill_rounded(fill, bound):
    w16 = fill(np.empty((300, 200), np.float16), 5)
    r = fill(np.empty((300, 200), np.float32), 5).astype(np.float16)
    np.testing.assert_array_equal(w16, np.where(r == np.float16(bound), np.float16(-bound), r))
