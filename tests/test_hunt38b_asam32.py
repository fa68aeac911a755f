"""float32 ASAM's ascent step where w^2 or w^2 g leaves float32's range while the scale is in it (or
is split: rules::sam_scale_split): |w| < 2^-63 made w^2 subnormal (a few bits) or 0 -- the step lost
its digits or all of it (w ~1e-25: no ascent at all) -- and |w| > 2^64 made w^2 inf, the param inf
(w 1e20 beside g 1e-20). float64 took a scaled rule for these (tests/test_hunt37_asam.py); float32
now steps them in double (rules::sam_perturb_adaptive_checked), CPU and GPU alike. Also: a weight
whose w^2 overflows beside a zero gradient was NaN on the CPU (inf * 0) in float64 too, where the
GPU's exact test kept it (the CPU's vector pre-test skipped g = 0 entries)."""

import numpy as np
import pytest

from optkern import _backend, optim
from test_hunt36_asam import RHO, _case, _ref_delta

CPU = _backend.cpu
EPS32 = 2.0**-24

# (w scale, g scale): w^2 subnormal / zero beside g in range; w^2 g underflowing; w^2 overflowing;
# w^2 g below the range with w^2 normal; a split scale (||w g|| below ~1e-40) with w^2 subnormal.
CASES = [
    (1e-20, 1.0),
    (1e-22, 1.0),
    (1e-25, 1.0),
    (1e-30, 1e10),
    (1e-5, 1e-35),
    (1e20, 1e-20),
    (1e25, 1e-30),
    (1e-35, 1e-5),
    (1e-22, 1e-20),
    (1e-30, 1e-15),
]


def _step32(w, g, eps=0.0):
    p, b, out = w.copy(), np.empty_like(w), np.zeros(1)
    CPU.sam_perturb_([p], [g], [b], RHO, eps, out, True)
    np.testing.assert_array_equal(b, w)
    return p


def check32(w, g, p):
    w64 = w.astype(np.float64)
    delta = _ref_delta(w64, g.astype(np.float64))
    want = w64 + delta
    allow = EPS32 * np.abs(want) + 16 * EPS32 * np.abs(delta) + 2.0**-149
    err = np.abs(p.astype(np.float64) - want)
    assert np.all(np.isfinite(p))
    assert np.all(err <= allow), float(np.max(err / allow))


@pytest.mark.parametrize(("wscale", "gscale"), CASES)
@pytest.mark.parametrize("n", [1, 7, 1000, 70001])
def test_float32_asam_ascent_with_w2g_out_of_range(wscale, gscale, n):
    w, g = (x.astype(np.float32) for x in _case(wscale, gscale, n, n + 11))
    check32(w, g, _step32(w, g))


def test_float32_in_range_keeps_the_reference_rounding():
    w, g = (x.astype(np.float32) for x in _case(1.0, 1.0, 4099, 5))
    p, out = w.copy(), np.zeros(1)
    CPU.sam_perturb_([p], [g], [np.empty_like(w)], RHO, 1e-12, out, True)
    s = np.float32(RHO / (out[0] + 1e-12))
    np.testing.assert_array_equal(p, w + ((w * w) * g) * s)


@pytest.mark.parametrize("dt, big", [(np.float32, 1e20), (np.float64, 1e200)])
def test_huge_weight_beside_a_zero_gradient_stays(dt, big):
    w = np.array([big, 1.0, 2.0, -big], dt)
    g = np.array([0.0, 1.0, 1.0, 0.0], dt)
    p = _step32(w, g)
    assert p[0] == w[0] and p[3] == w[3]
    assert np.all(np.isfinite(p)) and p[1] != w[1]


def test_asam_optimizer_float32_tiny_weights():
    w0, g = (x.astype(np.float32) for x in _case(1e-25, 1.0, 257, 4))
    w = [w0.copy()]
    opt = optim.SAM(optim.SGD(w, lr=0.1), rho=RHO, eps=0.0, adaptive=True)
    opt.first_step([g])
    check32(w0, g, w[0])
    opt.second_step([g])
    np.testing.assert_array_equal(w[0], w0 - np.float32(0.1) * g)
