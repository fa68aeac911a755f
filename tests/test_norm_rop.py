"""The fused R-operator kernels of batch / layer norm (``norm_rop_fwd``, ``norm_rop_bwd``).

Checked against central finite differences, in float64, of the independent
references in ``reference_norm.py``: R{f}(h; v) = (f(h + e v) - f(h - e v)) / 2e
for the forward output, x̂, the input gradient and the parameter gradients.
"""

import numpy as np
import pytest

import reference_norm as ref
from optkern import _cpu

EPS = 1e-5
SHAPES = [(1, 7), (7, 1), (5, 7), (33, 1023), (130, 67)]


def _ref(h, gamma, beta, dy, axis):
    """y, x̂, dh, dγ, dβ of batch norm (axis 0) or layer norm (axis 1) in float64."""
    if axis == 0:
        y, _, _ = ref.batch_norm(h, gamma, beta, EPS)
        xhat, _, _, _ = ref._norm_axes(h, (0,), EPS)
        dh, dg, db = ref.batch_norm_backward(dy, h, gamma, EPS)
    else:
        y, _, _ = ref.layer_norm(h, 1, gamma, beta, EPS)
        xhat, _, _, _ = ref._norm_axes(h, (1,), EPS)
        dh, dg, db = ref.layer_norm_backward(dy, h, 1, gamma, EPS)
    return y, xhat, dh, dg, db


def _problem(shape, seed):
    rng = np.random.default_rng(seed)
    N, D = shape
    h = 3.0 + rng.standard_normal(shape)
    gamma, beta = 1 + 0.3 * rng.standard_normal(D), 0.2 * rng.standard_normal(D)
    dy, rh, rdy = (rng.standard_normal(shape) for _ in range(3))
    vg, vb = rng.standard_normal(D), rng.standard_normal(D)
    return h, gamma, beta, dy, rh, rdy, vg, vb


def _fd(h, gamma, beta, dy, rh, rdy, vg, vb, axis, e=1e-6):
    plus = _ref(h + e * rh, gamma + e * vg, beta + e * vb, dy + e * rdy, axis)
    minus = _ref(h - e * rh, gamma - e * vg, beta - e * vb, dy - e * rdy, axis)
    return [(p - m) / (2 * e) for p, m in zip(plus, minus)]


def _native(h, gamma, beta, dy, rh, rdy, vg, vb, axis, dtype):
    """Run both kernels in ``dtype`` from the exact float64 statistics."""
    c = lambda a: np.ascontiguousarray(a, dtype)
    _, mean, _, rstd = ref._norm_axes(h, (axis,), EPS)
    mean, rstd = c(mean.reshape(-1)), c(rstd.reshape(-1))
    G = mean.size
    ry, rxhat = np.full(h.shape, np.nan, dtype), np.full(h.shape, np.nan, dtype)
    m_xr = np.full(G, np.nan, dtype)
    _cpu.norm_rop_fwd(c(h), mean, rstd, c(rh), c(gamma), c(vg), c(vb), ry, rxhat, m_xr, axis)
    dh, rdh = np.full(h.shape, np.nan, dtype), np.full(h.shape, np.nan, dtype)
    rdg, rdb = np.full(h.shape[1], np.nan, dtype), np.full(h.shape[1], np.nan, dtype)
    _cpu.norm_rop_bwd(c(h), mean, rstd, c(dy), c(rdy), c(gamma), c(vg), rxhat, m_xr, dh, rdh, rdg, rdb, axis)
    return ry, rxhat, dh, rdh, rdg, rdb, m_xr


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("shape", SHAPES)
def test_rop_matches_finite_differences_float64(shape, axis):
    p = _problem(shape, seed=shape[0] * 1000 + shape[1] + axis)
    ry_fd, rxhat_fd, rdh_fd, rdg_fd, rdb_fd = _fd(*p, axis)
    _, _, dh_ref, _, _ = _ref(p[0], p[1], p[2], p[3], axis)
    ry, rxhat, dh, rdh, rdg, rdb, m_xr = _native(*p, axis, np.float64)
    tol = dict(rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ry, ry_fd, **tol)
    np.testing.assert_allclose(rxhat, rxhat_fd, **tol)
    np.testing.assert_allclose(dh, dh_ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(rdh, rdh_fd, **tol)
    np.testing.assert_allclose(rdg, rdg_fd, **tol)
    np.testing.assert_allclose(rdb, rdb_fd, **tol)
    xhat = _ref(p[0], p[1], p[2], p[3], axis)[1]
    np.testing.assert_allclose(m_xr, (xhat * p[4]).mean(axis=axis), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("shape", [(0, 5), (4, 0)])
def test_rop_empty(shape, axis):
    z = np.empty(shape)
    G = shape[1 - axis]
    st, g = np.ones(G), np.ones(shape[1])
    m_xr = np.zeros(G)
    _cpu.norm_rop_fwd(z, st, st, z.copy(), g, g, g, z.copy(), z.copy(), m_xr, axis)
    assert np.isnan(m_xr).all()
    rdg, rdb = np.full(shape[1], np.nan), np.full(shape[1], np.nan)
    _cpu.norm_rop_bwd(z, st, st, z.copy(), z.copy(), g, g, z.copy(), m_xr, z.copy(), z.copy(), rdg, rdb, axis)
    assert (rdg == 0).all() and (rdb == 0).all()


@pytest.mark.parametrize("axis", [0, 1])
def test_rop_float32_tracks_float64(axis):
    p = _problem((64, 300), seed=11 + axis)
    want = _native(*p, axis, np.float64)
    got = _native(*p, axis, np.float32)
    for g, w in zip(got, want):
        scale = np.abs(w).max()
        assert np.abs(g - w).max() <= 2e-5 * scale


def test_rop_bitwise_for_any_thread_count():
    import optkern

    p = _problem((300, 129), seed=5)
    before = optkern.get_num_threads()
    try:
        for axis in (0, 1):
            optkern.set_num_threads(1)
            one = _native(*p, axis, np.float32)
            optkern.set_num_threads(2)
            two = _native(*p, axis, np.float32)
            for a, b in zip(one, two):
                assert np.array_equal(a, b)
    finally:
        optkern.set_num_threads(before)


def test_rop_rejects_bad_input():
    h = np.random.default_rng(0).standard_normal((4, 3))
    st, g = np.ones(3), np.ones(3)
    out = lambda: np.empty((4, 3))
    args = lambda **kw: {
        **dict(
            h=h,
            mean=st,
            rstd=st,
            rh=h.copy(),
            weight=g,
            vweight=g,
            vbias=g,
            ry=out(),
            rxhat=out(),
            m_xrh=np.empty(3),
            axis=0,
        ),
        **kw,
    }
    with pytest.raises(ValueError, match="axis"):
        _cpu.norm_rop_fwd(**args(axis=2))
    with pytest.raises(ValueError, match="h: expected a 2-D"):
        _cpu.norm_rop_fwd(**args(h=h.reshape(-1), rh=h.reshape(-1)))
    with pytest.raises(ValueError, match="mean"):
        _cpu.norm_rop_fwd(**args(mean=np.ones(4)))
    with pytest.raises(TypeError, match="rh"):
        _cpu.norm_rop_fwd(**args(rh=h.astype(np.float32)))
    a = args()
    a["ry"] = a["rh"]
    with pytest.raises(ValueError, match="shares memory"):
        _cpu.norm_rop_fwd(**a)
    ro = out()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="rxhat"):
        _cpu.norm_rop_fwd(**args(rxhat=ro))


def test_rop_bwd_rejects_bad_input():
    rng = np.random.default_rng(21)
    h = rng.standard_normal((4, 3))
    mean, rstd, g = rng.standard_normal(3), 1 + rng.random(3), rng.standard_normal(3)
    outs = {}

    def args(**kw):
        outs.update(
            dh=np.full((4, 3), np.nan),
            rdh=np.full((4, 3), np.nan),
            rdweight=np.full(3, np.nan),
            rdbias=np.full(3, np.nan),
        )
        a = dict(
            h=h,
            mean=mean,
            rstd=rstd,
            dy=rng.standard_normal((4, 3)),
            rdy=rng.standard_normal((4, 3)),
            weight=g,
            vweight=rng.standard_normal(3),
            rxhat=rng.standard_normal((4, 3)),
            m_xrh=rng.standard_normal(3),
            axis=0,
            **outs,
        )
        a.update(kw)
        return a

    def rejected(exc, match, a):
        with pytest.raises(exc, match=match):
            _cpu.norm_rop_bwd(**a)
        for name, o in outs.items():  # checked before the first write
            if a[name] is o:
                assert np.isnan(o).all(), name

    _cpu.norm_rop_bwd(**args())  # the good call works
    assert np.isfinite(outs["dh"]).all() and np.isfinite(outs["rdweight"]).all()
    ro = np.full((4, 3), np.nan)
    ro.flags.writeable = False
    rejected(ValueError, "^dh: array is read-only", args(dh=ro))
    a = args()
    a["dy"] = a["dh"]
    rejected(ValueError, r"^dh shares memory with dy \(aliasing arrays cannot be updated in place\)", a)
    a = args()
    a["rdy"] = a["rdh"]
    rejected(ValueError, "^rdh shares memory with rdy", a)
    rejected(TypeError, "^dy: expected float64, got float32", args(dy=rng.standard_normal((4, 3)).astype(np.float32)))
    rejected(ValueError, "^dy: array must be C-contiguous", args(dy=np.asfortranarray(rng.standard_normal((4, 3)))))
    rejected(ValueError, r"^m_xrh: expected shape \(3,\), got \(4,\)", args(m_xrh=rng.standard_normal(4)))
    rejected(ValueError, r"^m_xrh: expected shape \(3,\), got \(2,\)", args(m_xrh=rng.standard_normal(2)))
    rejected(ValueError, r"^axis: must be 0 \(batch norm\) or 1 \(layer norm\), got 2", args(axis=2))
    rejected(ValueError, r"^axis: must be 0 \(batch norm\) or 1 \(layer norm\), got -1", args(axis=-1))
    # axis 1 (layer norm) keeps one statistic per row: the per-column mean of axis 0 is the wrong length
    rejected(ValueError, r"^mean: expected shape \(4,\), got \(3,\)", args(axis=1))
