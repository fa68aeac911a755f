"""float64 SAM's ascent step for a gradient of subnormal entries. Its norm was rescanned scaled
(rules::sam_norm_term_scaled: exact digits in ssq, e) but then rounded to a double below the normal
range -- 1e-321 keeps 8 bits -- and the scale rho / (||g|| + eps) taken from that: the step was off
by up to 1e-3 relative. Now the scale comes from the scaled sum itself (rules::sam_scale_rescanned).
Reference: NumPy on the gradient scaled by an exact power of two (np.linalg.norm in range).
ASAM here too (w = 1.5); its own cases, terms w g below the normal range: tests/test_hunt36_asam.py."""

import numpy as np
import pytest

from optkern import _backend, optim

CPU = _backend.cpu
EPS = np.finfo(np.float64).eps
K = 2.0**1000  # exact: brings every gradient below into double's normal range


def _grad(scale, n, seed):
    return np.random.default_rng(seed).standard_normal(n) * scale


def _ref_delta(p, g, rho, adaptive):
    gs = g * K
    if adaptive:
        return rho * (p * p) * gs / np.linalg.norm(p * gs)
    return rho * gs / np.linalg.norm(gs)


@pytest.mark.parametrize("adaptive", [False, True])
@pytest.mark.parametrize("scale", [1e-310, 1e-318, 1e-320, 3.5e-323])
@pytest.mark.parametrize("n", [1, 3, 1000, 70001])
def test_float64_ascent_of_a_subnormal_gradient_has_the_reference_step(scale, n, adaptive):
    g = _grad(scale, n, n)
    if not np.any(g):
        g[0] = 5e-324
    p0 = np.full(n, 1.5) if adaptive else np.zeros(n)
    p, b, out = p0.copy(), np.empty(n), np.zeros(1)
    CPU.sam_perturb_([p], [g], [b], 0.05, 0.0, out, adaptive)
    np.testing.assert_array_equal(b, p0)
    want = p0 + _ref_delta(p0, g, 0.05, adaptive)
    err = np.abs(p - want)
    allow = 4 * EPS * np.abs(p0) + 16 * EPS * np.abs(want - p0)
    assert np.all(err <= allow), float(np.max(err / np.maximum(allow, 1e-300)))


@pytest.mark.parametrize("eps", [1e-320, 2.0**-1022, 1e-300])
def test_eps_beside_a_subnormal_norm(eps):
    g = _grad(1e-318, 100, 1)
    p, b, out = np.zeros(100), np.empty(100), np.zeros(1)
    CPU.sam_perturb_([p], [g], [b], 0.05, eps, out, False)
    gs = g * K
    want = 0.05 * gs / (np.linalg.norm(gs) + eps * K)
    assert np.all(np.abs(p - want) <= 16 * EPS * np.abs(want))


def test_norm_out_and_normal_gradients_unchanged():
    """The norm written to out is the rounded norm still; a gradient in range takes the direct path
    (its bits: compared with the float64 formula rounded as rules::sam_perturb rounds it)."""
    g = _grad(1e-318, 100, 2)
    p, b, out = np.zeros(100), np.empty(100), np.zeros(1)
    CPU.sam_perturb_([p], [g], [b], 0.05, 0.0, out, False)
    assert out[0] == np.float64(np.linalg.norm(g * K) / K)
    g = _grad(1.0, 100, 3)
    p, out = np.ones(100), np.zeros(1)
    CPU.sam_perturb_([p], [g], [np.empty(100)], 0.05, 1e-12, out, False)
    s = 0.05 / (np.sqrt(np.sum(g * g)) + 1e-12)
    np.testing.assert_allclose(p, 1.0 + s * g, rtol=4 * EPS)


def test_sam_optimizer_float64_subnormal_gradient():
    n = 257
    g = _grad(1e-320, n, 4)
    w = [np.zeros(n)]
    opt = optim.SAM(optim.SGD(w, lr=0.1), rho=0.05, eps=0.0)
    opt.first_step([g])
    want = _ref_delta(np.zeros(n), g, 0.05, False)
    assert np.all(np.abs(w[0] - want) <= 16 * EPS * np.abs(want))
