"""CUDA twin of test_hunt34_sam_study's norm cases: ``sam_perturb_`` (cuda/sam.cu) of a float64
gradient scaled by 2**+-600 -- whose plain sum of squares overflows / underflows -- moves w exactly
as the unscaled gradient does (the rescan by rules::sam_norm_term_scaled, as on the CPU), its norm
is the float64 reference's, and an in-range gradient keeps the one-pass norm (the rescan's two
reductions return at once).

Skipped without CuPy / the CUDA module / a device; tools/cuda_emu runs it on the CPU.
"""

import math

import numpy as np
import pytest

from gpu import require_gpu

cp, K = require_gpu()

RHO = 0.05


def _perturb(ws, gs, adaptive, eps=0.0):
    ps = [cp.array(w) for w in ws]
    bk = [cp.full(w.shape, 7, w.dtype) for w in ws]
    out = cp.zeros(1)
    K.sam_perturb_(ps, [cp.array(g) for g in gs], bk, RHO, eps, out, adaptive)
    for b, w in zip(bk, ws):
        assert cp.asnumpy(b).tobytes() == w.tobytes()
    return [cp.asnumpy(p) for p in ps], float(cp.asnumpy(out)[0])


def _hypot_norm(ws, gs, adaptive):
    """Independent float64 reference (math.hypot scales internally)."""
    terms = [float(w) * float(g) if adaptive else float(g) for wl, gl in zip(ws, gs) for w, g in zip(wl, gl)]
    return math.hypot(*terms)


@pytest.mark.parametrize("adaptive", [False, True])
@pytest.mark.parametrize(("dtype", "k"), [(np.float64, 600), (np.float64, -600), (np.float32, 60)])
def test_ascent_of_a_power_of_two_scaled_gradient_is_the_unscaled_ascent(dtype, k, adaptive):
    rng = np.random.default_rng(3 + adaptive)
    sizes = (5, 1031, 17)
    ws = [rng.standard_normal(n).astype(dtype) for n in sizes]
    gs = [rng.standard_normal(n).astype(dtype) for n in sizes]
    want, nrm0 = _perturb(ws, gs, adaptive)
    big = [(g * dtype(2.0**k)).astype(dtype) for g in gs]
    got, nrm = _perturb(ws, big, adaptive)
    assert nrm == math.ldexp(nrm0, k)
    ref = _hypot_norm(ws, big, adaptive)
    assert abs(nrm - ref) <= 1e-12 * ref
    for a, b in zip(got, want):
        assert a.tobytes() == b.tobytes()
    assert any((a != w).any() for a, w in zip(got, ws))  # the ascent step was taken


@pytest.mark.parametrize("adaptive", [False, True])
def test_zero_and_nan_gradients_keep_their_norms(adaptive):
    w = np.linspace(-1.0, 1.0, 9)
    _, nrm = _perturb([w], [np.zeros(9)], adaptive, eps=1e-12)
    assert nrm == 0.0
    g = np.full(9, 1e300)
    g[2] = np.nan
    p, nrm = _perturb([w], [g], adaptive, eps=1e-12)
    assert math.isnan(nrm) and p[0].tobytes() == w.tobytes()
