"""The CUDA normalization backward passes (cuda/norm_rows.cu, norm_channels.cu, norm_weight.cu) on the
cases of test_hunt29_normbwd_overflow.py and test_hunt29_normbwd_weight.py: dy (dw, v) near the dtype's
max, whose plain group sums overflowed (dx, dγ, dβ, dg, dv inf / NaN where the exact values are in
range). The GPU redoes such rows in the kernel's own block, and such channels (batch norm's dx, every
parameter sum) in channel_redo_kernel, one block a channel.

Skips (with the reason) without CuPy, without the CUDA module or without a device.
"""

import numpy as np
import pytest

from gpu import require_gpu

cp, _ = require_gpu()

import optkern.norm as on  # noqa: E402
import test_hunt29_normbwd_overflow as base  # noqa: E402
import test_hunt29_normbwd_weight as wbase  # noqa: E402


def _dev(*a):
    return [None if t is None else cp.asarray(t) for t in a]


def _host(*a):
    return [None if t is None else cp.asnumpy(t) for t in a]


def _grads(kind, x, w, b, dy):
    return _host(*base._optkern_grads(kind, *_dev(x, w, b, dy)))


@pytest.mark.parametrize("case", sorted(base.CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cuda_dx_with_dy_near_the_max_matches_float64(case, dtype):
    kind, x, w, b, dy = base._problem(case, dtype)
    dx, dw, db = _grads(kind, x, w, b, dy)
    want = base._torch_grads(kind, x, w, b, dy, base.KBIG[dtype])
    base._close(dx, want[0], dtype, "dx", in_range=dx.size)
    base._close(dw, want[1], dtype, "dweight", in_range=1)
    if db is not None:
        base._close(db, want[2], dtype, "dbias", in_range=1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cuda_eval_batch_norm_dx_past_dy_gamma(dtype):
    x, dy, w, rm, rv = base.eval_dy_gamma_past_the_max(dtype)
    X, DY, W, RM, RV = _dev(x, dy, w, rm, rv)
    _, s = on.batch_norm(X, W, None, RM, RV, training=False, eps=1e-5)
    dx = cp.asnumpy(on.batch_norm_backward(DY, X, W, s)[0])
    r = 1.0 / np.sqrt(np.float64(63.99999) + 1e-5)
    assert np.isfinite(dx).all()
    np.testing.assert_allclose(dx, np.asarray(dy, np.float64) * (4.0 * r), rtol=4 * np.finfo(dtype).eps)


@pytest.mark.parametrize("case", ["batch", "batch_spatial", "layer", "group", "rms"])
def test_cuda_ordinary_groups_keep_their_bits_beside_a_large_one(case):
    dtype = np.float32
    kind, x, w, b, big = base._problem(case, dtype, seed=4)
    rng = np.random.default_rng(5)
    dy = rng.standard_normal(x.shape).astype(dtype)
    dy2 = dy.copy()
    if kind == "batch":
        dy2[:, 0] = big[:, 0]
        keep = (slice(None), slice(1, None))
    else:
        dy2[0] = big[0]
        keep = (slice(1, None),)
        if kind == "rms":
            x[0] = np.abs(x[0]) * np.sign(dy2[0])
    plain = _grads(kind, x, w, b, dy)
    got = _grads(kind, x, w, b, dy2)
    assert np.isfinite(got[0]).all()
    np.testing.assert_array_equal(got[0][keep], plain[0][keep])
    if kind == "batch":
        for g, p in zip(got[1:], plain[1:]):
            np.testing.assert_array_equal(g[1:], p[1:])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cuda_non_finite_dy_stays_nan_and_true_overflow_stays_inf(dtype):
    top = float(np.finfo(dtype).max)
    x = np.tile(np.array([1.0, -1.0, 0.0, 2.0, -2.0, 0.5], dtype), (6, 1))
    dy = np.tile(np.array([0.3, -0.2, 0.1, 0.0, 0.5, 0.4], dtype), (6, 1))
    dy[0, 0], dy[1, 1] = np.nan, np.inf
    dy[2:, 3] = 0.9 * top
    dy[2, :3] = 0.9 * top
    X, DY = _dev(x, dy)
    _, s = on.layer_norm(X, (6,))
    dx, dw, db = _host(*on.layer_norm_backward(DY, X, None, s))
    assert np.isnan(dx[0]).all() and not np.isfinite(dx[1]).any() and np.isfinite(dx[2:]).all()
    assert dw[3] == np.inf and db[3] == np.inf
    assert np.isnan(dw[0]) and np.isnan(db[0]) and not np.isfinite(dw[1]) and db[1] == np.inf
    assert np.isfinite(dw[[2, 4, 5]]).all() and np.isfinite(db[[2, 4, 5]]).all()
    want = base._torch_grads("layer", x[2:], np.ones(6), np.zeros(6), dy[2:], base.KBIG[dtype])
    base._close(dx[2:], want[0], dtype, "dx", in_range=dx[2:].size)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cuda_weight_norm_dw_near_the_max(dtype):
    dw, v, g = wbase._big_dw(dtype)
    DW, V, G = _dev(dw, v, g)
    _, saved = on.weight_norm(V, G, dim=0)
    dg, dv = _host(*on.weight_norm_backward(DW, V, G, saved))
    want = wbase._reference(dw, v, g, wbase.KBIG[dtype], 0)
    wbase._close(dg, want[0], dtype, "dg")
    wbase._close(dv, want[1], dtype, "dv")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cuda_weight_norm_v_near_the_max_root(dtype):
    dw, v, g, e = wbase.v_near_the_max_root(dtype)
    DW, V, G = _dev(dw, v, g)
    _, saved = on.weight_norm(V, G, dim=0)
    dg, dv = _host(*on.weight_norm_backward(DW, V, G, saved))
    want = wbase._reference(dw, v, g, e, e)
    wbase._close(dg, want[0], dtype, "dg")
    wbase._close(dv, want[1], dtype, "dv")


def test_cuda_weight_norm_ordinary_rows_keep_their_bits():
    dtype = np.float32
    rng = np.random.default_rng(2)
    v = rng.standard_normal((40, 96)).astype(dtype)
    v[:, :3] = np.abs(v[:, :3]) + 1.0
    g = rng.uniform(0.5, 1.0, 40).astype(dtype)
    dw = rng.standard_normal((40, 96)).astype(dtype)
    dw2 = dw.copy()
    dw2[::7, :3] = wbase.BIG[dtype]
    DW, DW2, V, G = _dev(dw, dw2, v, g)
    _, saved = on.weight_norm(V, G, dim=0)
    plain = _host(*on.weight_norm_backward(DW, V, G, saved))
    dg, dv = _host(*on.weight_norm_backward(DW2, V, G, saved))
    assert np.isfinite(dg).all() and np.isfinite(dv).all()
    keep = np.arange(40) % 7 != 0
    np.testing.assert_array_equal(dg[keep], plain[0][keep])
    np.testing.assert_array_equal(dv[keep], plain[1][keep])
    want = wbase._reference(dw2[::7], v[::7], g[::7], wbase.KBIG[dtype], 0)
    wbase._close(dg[::7], want[0], dtype, "dg")
    wbase._close(dv[::7], want[1], dtype, "dv")
