"""The norm R-operator of groups far from 0 with the mean's low part (47th hunt, a).

The fused R-operator kernels (norm_rop_fwd / norm_rop_bwd: the MLP's hvp and ggn_vp through layer and
batch norm) formed x̂ = (h - mean) r around the saved mean rounded to h's dtype, while layer_norm's
forward and backward subtract its low part too (rules::mean_lo, hunt 46a). Rows of float32 1e7 + 0.5 +
N(0, 1) (mean ulp 1, σ 1) had R{y}, R{x̂}, dh, R{dh}, R{dγ} 3e5-3e6 ulps off (0.03-0.7 absolute) the
float64 R-operator of the same inputs; float64 rows near 2^51 likewise. Now every group with |mean| r
> 1 takes its low part from its moments computed again: a few ulps. The reference is the module's
own array-generic formulation (the tests' independent one) in float64 on h shifted by one of its
values (exact: all lie within a factor 2 of it), whose sums are then of values near 0. The CUDA twin
is tests/test_cuda_hunt47a_rop_mean_lo.py.
"""

import numpy as np
import pytest

from optkern.nn import normalization as NZ

EPS = 1e-5


def far_case(dtype, axis, xp=np, seed=0):
    """(outputs of the native R-operator as NumPy float64, the float64 reference's) for groups far
    from 0: layer norm rows (axis 1) or batch norm columns (axis 0) of offset + N(0, 1)."""
    rng = np.random.default_rng(seed)
    base = 1e7 + 0.5 if dtype == np.float32 else 2.0**51 + 0.25
    N, D = (16, 257) if axis == 1 else (257, 5)
    h = (base + rng.standard_normal((N, D))).astype(dtype)

    def r(*s):
        return rng.standard_normal(s).astype(dtype)

    g, b = (1 + 0.1 * rng.standard_normal(D)).astype(dtype), r(D)
    rh, vg, vb, dy, rdy = r(N, D), r(D), r(D), r(N, D), r(N, D)
    dev = [xp.asarray(a) for a in (h, g, b, rh, vg, vb, dy, rdy)]
    _, sv = NZ.norm_forward(dev[0], dev[1], dev[2], EPS, axis)
    ry, rs = NZ.norm_rop_forward(dev[3], dev[1], dev[4], dev[5], sv, axis)
    dh, rdh, rdg, rdb = NZ.norm_rop_backward(dev[6], dev[7], dev[1], dev[4], sv, rs, axis)
    as_np = getattr(xp, "asnumpy", np.asarray)
    got = [as_np(a).astype(np.float64) for a in (ry, rs[0], rs[1], dh, rdh, rdg)]

    h64, g64, b64, rh64, vg64, vb64, dy64, rdy64 = (a.astype(np.float64) for a in (h, g, b, rh, vg, vb, dy, rdy))
    h64 = h64 - h64.flat[0]
    _, (xh, rstd) = NZ._generic_forward(h64, g64, b64, EPS, axis)
    s64 = NZ.Saved(h64, None, xh, rstd, axis)
    ry6, rs6 = NZ.norm_rop_forward(rh64, g64, vg64, vb64, s64, axis)
    dh6, rdh6, rdg6, _ = NZ.norm_rop_backward(dy64, rdy64, g64, vg64, s64, rs6, axis)
    want = [ry6, rs6[0], rs6[1], dh6, rdh6, rdg6]
    M = D if axis == 1 else N
    # (typical magnitudes: R{y} up to ~4 x a few terms; m(x̂ R{h}) ~ 1 / sqrt(M); R{dγ} sums N terms)
    scales = [8.0, 4.0, 1.0, 4.0, 8.0, 8.0 * np.sqrt(N)]
    return got, want, scales, np.finfo(dtype).eps, M


@pytest.mark.parametrize("axis", [1, 0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rop_far_from_zero(dtype, axis):
    got, want, scales, eps, _ = far_case(dtype, axis)
    names = ["ry", "rxhat", "m_xrh", "dh", "rdh", "rdgamma"]
    for name, a, b, s in zip(names, got, want, scales):
        err = np.max(np.abs(a - b))
        assert err <= 16 * eps * s, (name, err / (eps * s))  # (were 3e5-3e6 ulps)
