"""float64 ASAM's ascent step where the norm's terms w g fall below the normal range. Each term was
the product rounded to a subnormal (or to 0) before the rescan scaled it (rules::sam_norm_term), and
the split step's w^2 rounded there too: the step was up to 1e-3 off (w g all below 2^-1075: no
ascent at all). Now the rescan scales w and g apart (rules::sam_norm_term_scaled, the max pass
2^kSamUp larger: rules::sam_norm_term_max) and the split step takes w (w g 2^k) where w^2 is not
normal (rules::sam_perturb_split). Reference: NumPy on w 2^a and g 2^b, exact powers of two that
bring every product into double's normal range: the step is rho w (w g) / ||w g||, scaled back."""

import numpy as np
import pytest

from optkern import _backend, optim

CPU = _backend.cpu
EPS = np.finfo(np.float64).eps
RHO = 0.05


def _case(wscale, gscale, n, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(n) * wscale
    g = rng.standard_normal(n) * gscale
    w[w == 0] = wscale
    g[g == 0] = gscale if gscale >= 5e-324 else 5e-324
    return w, g


def _ref_delta(w, g, eps=0.0):
    a = -int(np.floor(np.log2(np.max(np.abs(w)))))  # w 2^a in [1, 2): exact
    b = -int(np.floor(np.log2(np.max(np.abs(g)))))
    ws, gs = np.ldexp(w, a), np.ldexp(g, b)
    t = ws * gs
    d = np.linalg.norm(t) + np.ldexp(eps, a + b)
    return np.ldexp(RHO * ws * t / d, -a)  # rho w (w g) / ||w g|| = rho ws (ws gs) / ||ws gs|| 2^-a


def _step(w, g, eps=0.0):
    p, b, out = w.copy(), np.empty(w.size), np.zeros(1)
    CPU.sam_perturb_([p], [g], [b], RHO, eps, out, True)
    np.testing.assert_array_equal(b, w)
    return p


def _check(w, g, p, eps=0.0):
    delta = _ref_delta(w, g, eps)
    want = w + delta
    allow = 4 * EPS * np.abs(w) + 16 * EPS * np.abs(delta)
    err = np.abs(p - want)
    assert np.all(err <= allow), float(np.max(err / np.maximum(allow, 1e-300)))


# (w scale, g scale): w g subnormal (w normal, then w^2 subnormal too), all of w g below 2^-1075,
# w^2 underflowing beside a gradient in range.
CASES = [(1.5, 1e-318), (1.0, 3.5e-323), (1e-160, 1e-160), (1e-200, 1e-200), (1e-300, 1e-20), (1e-170, 1e-152)]


@pytest.mark.parametrize(("wscale", "gscale"), CASES)
@pytest.mark.parametrize("n", [1, 3, 7, 1000, 70001])
def test_float64_asam_ascent_with_subnormal_terms_has_the_reference_step(wscale, gscale, n):
    w, g = _case(wscale, gscale, n, n)
    _check(w, g, _step(w, g))


# (w ~1e-160 beside an eps >= 2^-1022 is not covered: the scale is then in range and the step is
# rules::sam_perturb_adaptive's, whose w^2 rounds below the normal range: see the report.)
@pytest.mark.parametrize(
    ("wscale", "gscale", "eps"),
    [(1e-160, 1e-160, 1e-320), (1e-160, 1e-160, 1e-315), (1.5, 1e-318, 2.0**-1022), (1.5, 1e-318, 1e-300)],
)
def test_eps_beside_subnormal_terms(wscale, gscale, eps):
    w, g = _case(wscale, gscale, 100, 1)
    _check(w, g, _step(w, g, eps), eps)


def test_terms_in_range_keep_their_bits():
    """A norm in range takes the direct path: the step rounded as rules::sam_perturb_adaptive
    rounds it, (w^2 g) scale then the add, scale = rho / (||w g|| + eps)."""
    w, g = _case(1.0, 1.0, 4099, 5)
    p = _step(w, g, 1e-12)
    s = RHO / (np.sqrt(np.sum((w * g) * (w * g))) + 1e-12)
    np.testing.assert_allclose(p, w + ((w * w) * g) * s, rtol=2 * EPS, atol=0)


def test_asam_optimizer_float64_subnormal_terms():
    w0, g = _case(1e-160, 1e-160, 257, 4)
    w = [w0.copy()]
    opt = optim.SAM(optim.SGD(w, lr=0.1), rho=RHO, eps=0.0, adaptive=True)
    opt.first_step([g])
    _check(w0, g, w[0])
