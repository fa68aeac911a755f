"""clip_grad_norm_ / get_total_norm for p not in {1, 2, inf} (the native kernel's p <= 6): the norm
was pow(sum |g|^p, 1 / p) unscaled. Summed in float64 (no float32 step), but 1 / p rounded to
float64 moves the root by ln(sum) / p of its relative rounding: gradients of 1e+-30 gave norms
20-35 ulps off the exact one (NumPy's float64 reference the same: its formula), and float64 ones
past ~1e51 (p = 6) or 1e102 (p = 3) an inf norm -- clipping zeroed every gradient. Now the terms
are |g| 2^-e (2^e <= max |g| < 2^(e+1), exact) and the root is scaled back by 2^e: the sum lies in
[1, n 2^p], the norm within an ulp or so of the exact one at every scale (the per-term pow and the
sum's rounding), and a float32 gradient's norm rounds to float32's correctly rounded value.
Reference: Python's decimal at 60 digits on the exact values (Decimal(float) is exact)."""

import decimal

import numpy as np
import pytest

from optkern import _backend, clip

CPU = _backend.cpu


def exact_norm(grads, p: float) -> decimal.Decimal:
    with decimal.localcontext() as ctx:
        ctx.prec = 60
        dp = decimal.Decimal(p)
        s = sum(
            (abs(decimal.Decimal(float(x))) ** dp for g in grads for x in np.asarray(g, np.float64).ravel()),
            decimal.Decimal(0),
        )
        return s ** (decimal.Decimal(1) / dp)


def ulps(got: float, ref: decimal.Decimal) -> float:
    r = float(ref)
    return float((decimal.Decimal(got) - ref) / decimal.Decimal(float(np.spacing(r))))


def _grads(scale, dtype, seed):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(n) * scale).astype(dtype) for n in (601, 37, 1)]


P = [1.5, 3.0, 4.5, 6.0]


@pytest.mark.parametrize("p", P)
@pytest.mark.parametrize("scale", [1.0, 1e30, 1e-30, 1e120, 1e-120, 1e300, 1e-300])
def test_float64_p_norm_within_two_ulps_of_the_exact_norm(p, scale):
    for seed in range(3):
        gs = _grads(scale, np.float64, seed)
        ref = exact_norm(gs, p)
        got = clip.get_total_norm(gs, p)
        assert abs(ulps(got, ref)) <= 2.0, (got, float(ref), ulps(got, ref))
        out = np.zeros(1)
        assert CPU.grad_norm(gs, p, out) == got and out[0] == got


@pytest.mark.parametrize("p", P)
@pytest.mark.parametrize("scale", [1.0, 1e30, 1e-30, 1e-40])
def test_float32_p_norm_rounds_to_the_correctly_rounded_float32(p, scale):
    for seed in range(3):
        gs = _grads(scale, np.float32, seed)
        ref = exact_norm(gs, p)
        got = clip.get_total_norm(gs, p)
        assert abs(ulps(got, ref)) <= 2.0, (got, float(ref), ulps(got, ref))
        assert np.float32(got) == np.float32(float(ref))


def test_clip_grad_norm_at_p3_of_huge_float64_gradients_clips_them():
    """1e120^3 overflowed the plain sum: norm inf, and the gradients were scaled by 1 / inf = 0."""
    gs = _grads(1e120, np.float64, 7)
    g0 = [g.copy() for g in gs]
    total = clip.clip_grad_norm_(gs, 1.0, norm_type=3.0)
    ref = exact_norm(g0, 3.0)
    assert abs(ulps(total, ref)) <= 2.0
    assert abs(float(exact_norm(gs, 3.0)) - 1.0) < 1e-5
    coef = 1.0 / (total + 1e-6)
    for g, h in zip(gs, g0):
        np.testing.assert_allclose(g, h * coef, rtol=1e-15)


@pytest.mark.parametrize("p", [3.0, 5.0])
def test_zero_nan_inf_gradients_keep_their_norms(p):
    z = [np.zeros(5), np.zeros(3)]
    assert clip.get_total_norm(z, p) == 0.0
    assert clip.get_total_norm([np.array([1.0, np.inf]), np.zeros(2)], p) == np.inf
    assert np.isnan(clip.get_total_norm([np.array([1.0, np.nan, np.inf])], p))
    assert clip.get_total_norm([np.array([5e-324, -5e-324])], p) > 0.0


def test_bad_norm_type_still_refused_before_writing():
    out = np.full(1, 7.0)
    with pytest.raises(ValueError, match="norm_type"):
        CPU.grad_norm([np.ones(3)], 0.5, out)
    assert out[0] == 7.0
