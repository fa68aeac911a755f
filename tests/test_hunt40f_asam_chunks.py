"""ASAM's ascent step tests a chunk at once on the CPU (rules::sam_adaptive_clean, from the extremes
of |w|, |w^2 g| and the least nonzero |w|, |g| its vector loop keeps) instead of every entry: the
entries whose w^2 or w^2 g leaves T's normal range are still the ones stepped by the scaled rule.
Here every entry, whatever chunk it shares with zeros, NaN, Inf, tiny or huge neighbours (before or
after it), steps exactly as rules::sam_perturb_adaptive_checked steps it alone -- a NumPy
transcription of that rule, bit for bit, float32 and float64, at sizes of one and many chunks."""

import numpy as np
import pytest

from optkern import _backend

CPU = _backend.cpu
RHO = 0.05


def _exp(x):
    """ilogb: x = m 2^e with m in [1, 2)."""
    return np.frexp(x)[1].astype(np.int64) - 1


def _direct(w, g):
    """rules::sam_adaptive_direct: the reference's rounding keeps the step's digits."""
    fi = np.finfo(w.dtype)
    lo, hi = fi.smallest_normal, fi.max
    with np.errstate(all="ignore"):
        pp = w * w
        ax = np.abs(pp * g)
    keep = (pp >= lo) & (pp <= hi) & ((g == 0) | ((ax >= lo) & (ax <= hi)))
    return (w == 0) | ~np.isfinite(w) | ~np.isfinite(g) | keep


def _want(w, g, s):
    """rules::sam_perturb_adaptive_checked at scale s (T), entry by entry."""
    with np.errstate(all="ignore"):
        want = s * ((w * w) * g) + w  # the reference: three roundings in T
        d = ~_direct(w, g)
        wd, gd = w[d].astype(np.float64), g[d].astype(np.float64)
        if w.dtype == np.float32:  # the step in double, the add rounded once
            want[d] = (((wd * wd) * gd) * np.float64(s) + wd).astype(np.float32)
        else:  # w, g and s scaled into [1, 2) apart, the exponents added apart
            ep, eg, es = _exp(wd), _exp(np.where(gd == 0, 1.0, gd)), _exp(np.float64(s))
            pm, gm, sm = np.ldexp(wd, -ep), np.ldexp(gd, -eg), np.ldexp(np.float64(s), -es)
            step = np.ldexp(((pm * pm) * gm) * sm, 2 * ep + eg + es)
            want[d] = np.where(gd == 0, 0.0, step) + wd
    return want


def _step(w, g):
    p, b, out = w.copy(), np.empty_like(w), np.zeros(1)
    CPU.sam_perturb_([p], [g], [b], RHO, 1e-12, out, True)
    np.testing.assert_array_equal(b, w)
    s = w.dtype.type(RHO / (out[0] + 1e-12))
    assert np.isfinite(out[0]) and s != 0  # (the steps below are taken)
    return p, s


def _odd_values(dt):
    """(w, g) magnitudes at and around every edge the rule tests, signed, with zeros; |w g| stays
    finite in double (an Inf or NaN norm gives scale 0: nothing moves, nothing would be tested)."""
    fi = np.finfo(dt)
    lo, hi, sub, eps = fi.smallest_normal, fi.max, fi.smallest_subnormal, fi.eps
    root_lo = np.sqrt(lo, dtype=dt)  # |w| near here: w^2 at the bottom of the normal range
    root_hi = np.sqrt(hi, dtype=dt)  # and at its top

    def around(edges):
        e = np.array(edges, dt)
        with np.errstate(over="ignore"):
            v = np.concatenate([e, np.nextafter(e, dt(0)), np.nextafter(e, dt(np.inf)), [0.0, -0.0]]).astype(dt)
        v = v[np.isfinite(v)]
        return np.concatenate([v, -v])

    return around([root_lo, root_hi, lo, hi, sub, lo / eps, hi * eps, 1e-3, 7]), around([sub, lo, lo / eps, 1e-3])


def _mixed(dt, n, density, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(n).astype(dt)
    g = (rng.standard_normal(n) * 1e-2).astype(dt)
    for a, odd in zip((w, g), _odd_values(dt)):
        at = rng.random(n) < density
        a[at] = rng.choice(odd, int(at.sum()))
    return w, g


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize(("n", "density"), [(1, 1.0), (7, 0.5), (1000, 0.3), (70001, 1e-3), (262147, 2e-5)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_entry_steps_as_the_exact_rule_alone(dt, n, density, seed):
    w, g = _mixed(dt, n, density, seed)
    p, s = _step(w, g)
    np.testing.assert_array_equal(p, _want(w, g, s))


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("where", [0, 1, 5000, 69999])
@pytest.mark.parametrize("kind", ["tiny", "huge_zero_grad", "w2g_under", "w2g_over"])
def test_one_odd_entry_in_a_clean_list_is_found(dt, where, kind):
    # one entry out of range, a zero w and a zero g beside it (zeros are left out of the least |w|, |g|)
    fi = np.finfo(dt)
    w, g = _mixed(dt, 70001, 0.0, 3)
    w[where], g[where] = {
        "tiny": (np.sqrt(fi.smallest_normal, dtype=dt) / 4, 1.0),
        "huge_zero_grad": (np.sqrt(fi.max, dtype=dt) * 4, 0.0),
        "w2g_under": (1e-3, fi.smallest_normal * 16),
        "w2g_over": (1e10, fi.max / 1e12),  # (w g finite: the norm is)
    }[kind]
    if where > 0:
        w[where - 1] = 0.0
    g[where + 1] = 0.0
    assert not _direct(w[where : where + 1], g[where : where + 1])[0]
    p, s = _step(w, g)
    np.testing.assert_array_equal(p, _want(w, g, s))
    assert np.isfinite(p[where])


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_zero_weights_and_zero_grads_keep_the_plain_rounding(dt):
    # chunks with no nonzero w, or no nonzero g, are clean: every entry the reference's rounding
    w, g = _mixed(dt, 40000, 0.0, 4)
    w[:20000] = 0.0
    g[20000:30000] = 0.0
    p, s = _step(w, g)
    np.testing.assert_array_equal(p, s * ((w * w) * g) + w)
