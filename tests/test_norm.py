"""optkern.norm on the CPU: forward and backward against float64 references
(tests/reference_norm.py), backward against central finite differences,
robust statistics, running statistics and eval mode."""

import zlib

import numpy as np
import pytest

import reference_norm as ref
from optkern import norm

TOL = {np.float32: dict(rtol=2e-4, atol=2e-5), np.float64: dict(rtol=1e-10, atol=1e-11)}
DTYPES = [np.float32, np.float64]


def rnd(rng, shape, dtype, scale=1.0, loc=0.0):
    return (loc + scale * rng.standard_normal(shape)).astype(dtype)


def close(got, want, dtype, scale=1.0):
    tol = TOL[dtype]
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=tol["rtol"], atol=tol["atol"] * scale)


# ---- batch norm --------------------------------------------------------------------

BN_SHAPES = [(2, 3), (7, 5), (300, 17), (2, 3, 5), (4, 3, 7, 9), (1, 2, 1023), (3, 70, 130), (40, 8, 3)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BN_SHAPES)
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_training(shape, dtype, affine):
    rng = np.random.default_rng(zlib.crc32(repr((shape, affine)).encode()))
    C = shape[1]
    x = rnd(rng, shape, dtype, 2.0, 0.5)
    w = rnd(rng, C, dtype) if affine else None
    b = rnd(rng, C, dtype) if affine else None
    rm = rnd(rng, C, dtype)
    rv = (1 + rng.random(C)).astype(dtype)
    rm0, rv0 = rm.astype(np.float64), rv.astype(np.float64)
    y, saved = norm.batch_norm(x, w, b, rm, rv, training=True, momentum=0.3, eps=1e-3)
    y_ref, mean, var = ref.batch_norm(x, w, b, 1e-3)
    close(y, y_ref, dtype)
    close(saved.mean, mean, dtype)
    close(saved.rstd, 1 / np.sqrt(var + 1e-3), dtype)
    n = x.size // C
    close(rm, 0.7 * rm0 + 0.3 * mean, dtype)
    close(rv, 0.7 * rv0 + 0.3 * var * n / (n - 1), dtype)
    dy = rnd(rng, shape, dtype)
    dx, dw, db = norm.batch_norm_backward(dy, x, w, saved)
    dx_ref, dw_ref, db_ref = ref.batch_norm_backward(dy, x, w, 1e-3)
    close(dx, dx_ref, dtype, 10)
    close(dw, dw_ref, dtype, 10)
    close(db, db_ref, dtype, 10)


# eval mode: N = 1 with one element per channel and N = 0 are valid (no batch statistics needed)
BN_EVAL_SHAPES = [(5, 4), (3, 4, 11), (1, 1, 1), (0, 3, 4), (2, 3, 1023), (7, 5)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BN_EVAL_SHAPES)
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_eval(shape, dtype, affine):
    rng = np.random.default_rng(zlib.crc32(repr((shape, affine, "eval")).encode()))
    C = shape[1]
    x = rnd(rng, shape, dtype, 2.0, 0.5)
    w = rnd(rng, C, dtype) if affine else None
    b = rnd(rng, C, dtype) if affine else None
    rm, rv = rnd(rng, C, dtype), (0.5 + rng.random(C)).astype(dtype)
    rm_before, rv_before = rm.copy(), rv.copy()
    y, saved = norm.batch_norm(x, w, b, rm, rv, training=False, eps=1e-5)
    assert y.shape == x.shape and y.dtype == x.dtype and saved.training is False
    close(y, ref.batch_norm_eval(x, w, b, rm.astype(np.float64), rv.astype(np.float64), 1e-5), dtype)
    np.testing.assert_array_equal(rm, rm_before)
    np.testing.assert_array_equal(rv, rv_before)
    dy = rnd(rng, shape, dtype)
    dx, dw, db = norm.batch_norm_backward(dy, x, w, saved)
    assert dx.shape == x.shape and dw.shape == (C,) and db.shape == (C,)
    shp = (1, -1) + (1,) * (len(shape) - 2)
    rstd = 1 / np.sqrt(rv.astype(np.float64) + 1e-5)
    wr = np.ones(C) if w is None else w.astype(np.float64)
    close(dx, dy * (wr * rstd).reshape(shp), dtype)
    xhat = (x - rm.astype(np.float64).reshape(shp)) * rstd.reshape(shp)
    red = (0,) + tuple(range(2, len(shape)))
    close(dw, (dy * xhat).sum(axis=red), dtype, 10)
    close(db, dy.astype(np.float64).sum(axis=red), dtype, 10)
    # the running statistics are used, not the batch's: still untouched after backward
    np.testing.assert_array_equal(rm, rm_before)
    np.testing.assert_array_equal(rv, rv_before)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_empty_batch(dtype):
    """N = 0: an empty y and zero parameter gradients; training leaves the running buffers alone (torch's
    batch norm too: it raises only for one value per channel; tests/test_norm_empty.py)."""
    rng = np.random.default_rng(zlib.crc32(repr((dtype.__name__, "bn-empty")).encode()))
    x = np.empty((0, 3, 4), dtype)
    w, b = rnd(rng, 3, dtype), rnd(rng, 3, dtype)
    rm, rv = rnd(rng, 3, dtype), (0.5 + rng.random(3)).astype(dtype)
    rm_before, rv_before = rm.copy(), rv.copy()
    y, saved = norm.batch_norm(x, w, b, rm, rv, training=False)
    assert y.shape == (0, 3, 4) and y.dtype == dtype
    close(saved.mean, rm_before.astype(np.float64), dtype)
    close(saved.rstd, 1 / np.sqrt(rv_before.astype(np.float64) + 1e-5), dtype)
    dx, dw, db = norm.batch_norm_backward(np.empty_like(x), x, w, saved)
    assert dx.shape == (0, 3, 4)
    np.testing.assert_array_equal(dw, np.zeros(3))
    np.testing.assert_array_equal(db, np.zeros(3))
    y, saved = norm.batch_norm(x, w, b, rm, rv, training=True)
    assert y.shape == (0, 3, 4) and saved.training is True
    np.testing.assert_array_equal(rm, rm_before)
    np.testing.assert_array_equal(rv, rv_before)


# ---- layer / RMS norm --------------------------------------------------------------

LN_CASES = [
    ((1, 7), 1),
    ((5, 1), 1),
    ((3, 1023), 1),
    ((2, 3, 17), 2),
    ((64, 257), 1),
    ((1, 4, 5, 6), 3),
    ((9, 3000), 1),
    ((4, 0, 8), 1),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,k", LN_CASES)
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm(shape, k, dtype, affine):
    rng = np.random.default_rng(zlib.crc32(repr((shape, k, affine)).encode()))
    ns = shape[len(shape) - k :]
    x = rnd(rng, shape, dtype, 3.0, -1.0)
    w = rnd(rng, ns, dtype) if affine else None
    b = rnd(rng, ns, dtype) if affine else None
    y, saved = norm.layer_norm(x, ns, w, b, eps=1e-5)
    y_ref, mean, rstd = ref.layer_norm(x, k, w, b, 1e-5)
    close(y, y_ref, dtype)
    close(saved.mean, mean, dtype)
    close(saved.rstd, rstd, dtype)
    dy = rnd(rng, shape, dtype)
    dx, dw, db = norm.layer_norm_backward(dy, x, w, saved)
    dx_ref, dw_ref, db_ref = ref.layer_norm_backward(dy, x, k, w, 1e-5)
    close(dx, dx_ref, dtype, 10)
    close(dw, dw_ref, dtype, 10)
    close(db, db_ref, dtype, 10)
    dx2, dw2, db2 = norm.layer_norm_backward(dy, x, w, saved, param_grads=False)
    np.testing.assert_array_equal(dx2, dx)
    assert dw2 is None and db2 is None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,k", LN_CASES)
@pytest.mark.parametrize("affine", [True, False])
def test_rms_norm(shape, k, dtype, affine):
    rng = np.random.default_rng(zlib.crc32(repr((shape, k, affine, "rms")).encode()))
    ns = shape[len(shape) - k :]
    x = rnd(rng, shape, dtype, 2.0, 0.3)
    w = rnd(rng, ns, dtype) if affine else None
    y, saved = norm.rms_norm(x, ns, w)  # eps = finfo(dtype).eps
    eps = float(np.finfo(dtype).eps)
    y_ref, r = ref.rms_norm(x, k, w, eps)
    close(y, y_ref, dtype)
    close(saved.inv_rms, r, dtype)
    dy = rnd(rng, shape, dtype)
    dx, dw = norm.rms_norm_backward(dy, x, w, saved)
    dx_ref, dw_ref = ref.rms_norm_backward(dy, x, k, w, eps)
    close(dx, dx_ref, dtype, 10)
    close(dw, dw_ref, dtype, 10)


# ---- group / instance norm ---------------------------------------------------------

GN_CASES = [
    ((1, 4, 5), 2),
    ((2, 6, 7), 3),
    ((3, 8, 9, 11), 4),
    ((1, 32, 33), 32),
    ((2, 5, 1), 1),
    ((4, 12, 1029), 6),
    ((2, 6), 3),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,G", GN_CASES)
@pytest.mark.parametrize("affine", [True, False])
def test_group_norm(shape, G, dtype, affine):
    rng = np.random.default_rng(zlib.crc32(repr((shape, G, affine)).encode()))
    C = shape[1]
    x = rnd(rng, shape, dtype, 1.5, 2.0)
    w = rnd(rng, C, dtype) if affine else None
    b = rnd(rng, C, dtype) if affine else None
    y, saved = norm.group_norm(x, G, w, b, eps=1e-4)
    y_ref, mean, rstd = ref.group_norm(x, G, w, b, 1e-4)
    close(y, y_ref, dtype)
    close(saved.mean, mean, dtype)
    close(saved.rstd, rstd, dtype)
    dy = rnd(rng, shape, dtype)
    dx, dw, db = norm.group_norm_backward(dy, x, w, saved)
    dx_ref, dw_ref, db_ref = ref.group_norm_backward(dy, x, G, w, 1e-4)
    close(dx, dx_ref, dtype, 10)
    close(dw, dw_ref, dtype, 10)
    close(db, db_ref, dtype, 10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 3, 5), (2, 4, 6, 7), (3, 2, 1025)])
def test_instance_norm(shape, dtype):
    rng = np.random.default_rng(7)
    N, C = shape[:2]
    S = int(np.prod(shape[2:]))
    x = rnd(rng, shape, dtype, 2.0, 1.0)
    w, b = rnd(rng, C, dtype), rnd(rng, C, dtype)
    rm, rv = rnd(rng, C, dtype), (1 + rng.random(C)).astype(dtype)
    rm0, rv0 = rm.astype(np.float64), rv.astype(np.float64)
    y, saved = norm.instance_norm(x, w, b, rm, rv, momentum=0.2, eps=1e-5)
    y_ref, mean, rstd = ref.group_norm(x, C, w, b, 1e-5)  # instance norm = group norm with G = C
    close(y, y_ref, dtype)
    xr = x.astype(np.float64).reshape(N, C, -1)
    close(rm, 0.8 * rm0 + 0.2 * xr.mean(axis=(0, 2)), dtype)
    close(rv, 0.8 * rv0 + 0.2 * xr.var(axis=2, ddof=1).mean(axis=0), dtype)
    dy = rnd(rng, shape, dtype)
    dx, dw, db = norm.instance_norm_backward(dy, x, w, saved)
    dx_ref, dw_ref, db_ref = ref.group_norm_backward(dy, x, C, w, 1e-5)
    close(dx, dx_ref, dtype, 10)
    close(dw, dw_ref, dtype, 10)
    close(db, db_ref, dtype, 10)
    # running statistics: every instance normalized like batch norm in eval mode
    y2, saved2 = norm.instance_norm(x, w, b, rm, rv, use_input_stats=False, eps=1e-5)
    close(y2, ref.batch_norm_eval(x, w, b, rm.astype(np.float64), rv.astype(np.float64), 1e-5), dtype)
    dx2, dw2, db2 = norm.instance_norm_backward(dy, x, w, saved2)
    shp = (1, -1) + (1,) * (len(shape) - 2)
    rstd_run = 1 / np.sqrt(rv.astype(np.float64) + 1e-5)
    close(dx2, dy * (w.astype(np.float64) * rstd_run).reshape(shp), dtype)
    # parameter gradients with x̂ from the running statistics, summed over N and the spatial dims
    xhat_run = (x - rm.astype(np.float64).reshape(shp)) * rstd_run.reshape(shp)
    red = (0,) + tuple(range(2, len(shape)))
    assert dw2.shape == (C,) and db2.shape == (C,)
    close(dw2, (dy * xhat_run).sum(axis=red), dtype, 10)
    close(db2, dy.astype(np.float64).sum(axis=red), dtype, 10)
    assert S > 1


@pytest.mark.parametrize("use_input_stats", [True, False])
def test_instance_norm_backward_without_param_grads(use_input_stats):
    rng = np.random.default_rng(zlib.crc32(repr((use_input_stats, "in-noparam")).encode()))
    x, dy = rnd(rng, (2, 3, 5), np.float64), rnd(rng, (2, 3, 5), np.float64)
    w, b = rnd(rng, 3, np.float64), rnd(rng, 3, np.float64)
    rm, rv = rnd(rng, 3, np.float64), 1 + rng.random(3)
    _, saved = norm.instance_norm(x, w, b, rm, rv, use_input_stats=use_input_stats)
    dx, dw, db = norm.instance_norm_backward(dy, x, w, saved)
    dx2, dw2, db2 = norm.instance_norm_backward(dy, x, w, saved, param_grads=False)
    np.testing.assert_array_equal(dx2, dx)
    assert dw2 is None and db2 is None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("use_input_stats", [True, False])
def test_instance_norm_empty_batch(dtype, use_input_stats):
    """N = 0: empty output, zero parameter gradients, running buffers left as they were."""
    rng = np.random.default_rng(zlib.crc32(repr((dtype.__name__, use_input_stats, "in-empty")).encode()))
    x = np.empty((0, 4, 5), dtype)
    w, b = rnd(rng, 4, dtype), rnd(rng, 4, dtype)
    rm, rv = rnd(rng, 4, dtype), (1 + rng.random(4)).astype(dtype)
    rm_before, rv_before = rm.copy(), rv.copy()
    y, saved = norm.instance_norm(x, w, b, rm, rv, use_input_stats=use_input_stats, momentum=0.5)
    assert y.shape == (0, 4, 5) and y.dtype == dtype
    np.testing.assert_array_equal(rm, rm_before)
    np.testing.assert_array_equal(rv, rv_before)
    dx, dw, db = norm.instance_norm_backward(np.empty_like(x), x, w, saved)
    assert dx.shape == (0, 4, 5)
    np.testing.assert_array_equal(dw, np.zeros(4))
    np.testing.assert_array_equal(db, np.zeros(4))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", [True, False])
def test_group_norm_empty_batch(dtype, affine):
    rng = np.random.default_rng(zlib.crc32(repr((dtype.__name__, affine, "gn-empty")).encode()))
    x = np.empty((0, 6, 5), dtype)
    w = rnd(rng, 6, dtype) if affine else None
    b = rnd(rng, 6, dtype) if affine else None
    y, saved = norm.group_norm(x, 3, w, b)
    assert y.shape == (0, 6, 5) and y.dtype == dtype
    assert saved.mean.shape == (0, 3) and saved.rstd.shape == (0, 3) and saved.groups == 3
    dx, dw, db = norm.group_norm_backward(np.empty_like(x), x, w, saved)
    assert dx.shape == (0, 6, 5)
    np.testing.assert_array_equal(dw, np.zeros(6))
    np.testing.assert_array_equal(db, np.zeros(6))


# ---- weight norm ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape,dim",
    [
        ((5, 7), 0),
        ((1, 3), 0),
        ((4, 3, 3, 2), 0),
        ((6, 9), 1),
        ((3, 4, 5), -1),
        ((3, 4), None),
        ((8, 1023), 0),
        ((0, 5), 0),
        ((7, 1), 0),
    ],
)
def test_weight_norm(shape, dim, dtype):
    rng = np.random.default_rng(zlib.crc32(repr((shape, dim, "wn")).encode()))
    v = rnd(rng, shape, dtype)
    rows = 1 if dim is None else shape[dim]
    gshape = (rows,) if dim is None else tuple(s if i == dim % len(shape) else 1 for i, s in enumerate(shape))
    g = rnd(rng, gshape, dtype)
    w, saved = norm.weight_norm(v, g, dim=dim)
    close(w, ref.weight_norm(v, g, dim), dtype)
    dw = rnd(rng, shape, dtype)
    dg, dv = norm.weight_norm_backward(dw, v, g, saved)
    dg_ref, dv_ref = ref.weight_norm_backward(dw, v, g, dim)
    assert dg.shape == g.shape and dv.shape == v.shape
    close(dg, dg_ref, dtype, 10)
    close(dv, dv_ref, dtype, 10)
    if shape == (7, 1):  # rows of length 1: w = g sign(v), and v only sets the sign (dv = 0)
        close(w, g * np.sign(v.astype(np.float64)), dtype)
        close(dv, np.zeros(shape), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_weight_norm_zero_row(dtype):
    rng = np.random.default_rng(zlib.crc32(repr((dtype.__name__, "wn-zero")).encode()))
    v, g = rnd(rng, (4, 5), dtype), rnd(rng, (4, 1), dtype)
    v[2] = 0
    dw = rnd(rng, v.shape, dtype)
    # A clear error naming v and the slice, never a silent NaN (PyTorch returns NaN here).
    with pytest.raises(ValueError, match=r"^v: slice 2 along dim has norm 0\.0"):
        norm.weight_norm(v, g)
    v[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"^v: slice 2 along dim has norm nan"):
        norm.weight_norm(v, g)
    v[2] = 1
    w, saved = norm.weight_norm(v, g)
    dg, dv = norm.weight_norm_backward(dw, v, g, saved)
    assert np.isfinite(w).all() and np.isfinite(dg).all() and np.isfinite(dv).all()


# ---- finite differences (float64) -----------------------------------------------------


def fd_check(f, args, grads, dy, h=1e-6, n_probe=6, rng=None):
    """Central differences of <f(args), dy> at random entries of every array in args."""
    rng = rng or np.random.default_rng(0)
    for name, a in args.items():
        if a is None or grads.get(name) is None:
            continue
        flat = a.reshape(-1)
        for idx in rng.choice(flat.size, size=min(n_probe, flat.size), replace=False):
            old = flat[idx]
            flat[idx] = old + h
            lp = float((f(**args) * dy).sum())
            flat[idx] = old - h
            lm = float((f(**args) * dy).sum())
            flat[idx] = old
            num = (lp - lm) / (2 * h)
            got = grads[name].reshape(-1)[idx]
            assert abs(got - num) <= 1e-6 * (1 + abs(num)), (name, idx, got, num)


def test_finite_differences():
    rng = np.random.default_rng(123)
    f64 = np.float64
    # batch norm (training: gradient flows through the batch statistics)
    x, w, b = rnd(rng, (4, 3, 5), f64), rnd(rng, 3, f64), rnd(rng, 3, f64)
    dy = rnd(rng, x.shape, f64)
    y, s = norm.batch_norm(x, w, b)
    dx, dw, db = norm.batch_norm_backward(dy, x, w, s)
    fd_check(lambda x, w, b: norm.batch_norm(x, w, b)[0], dict(x=x, w=w, b=b), dict(x=dx, w=dw, b=db), dy)
    # batch norm, eval (running statistics: y is affine in x, w and b)
    x, w, b = rnd(rng, (3, 4, 6), f64), rnd(rng, 4, f64), rnd(rng, 4, f64)
    rm, rv = rnd(rng, 4, f64), 0.5 + rng.random(4)
    dy = rnd(rng, x.shape, f64)
    y, s = norm.batch_norm(x, w, b, rm, rv, training=False)
    dx, dw, db = norm.batch_norm_backward(dy, x, w, s)
    fd_check(
        lambda x, w, b: norm.batch_norm(x, w, b, rm, rv, training=False)[0],
        dict(x=x, w=w, b=b),
        dict(x=dx, w=dw, b=db),
        dy,
    )
    # layer norm, N = 1
    x, w, b = rnd(rng, (1, 3, 7), f64), rnd(rng, (3, 7), f64), rnd(rng, (3, 7), f64)
    dy = rnd(rng, x.shape, f64)
    y, s = norm.layer_norm(x, (3, 7), w, b)
    dx, dw, db = norm.layer_norm_backward(dy, x, w, s)
    fd_check(lambda x, w, b: norm.layer_norm(x, (3, 7), w, b)[0], dict(x=x, w=w, b=b), dict(x=dx, w=dw, b=db), dy)
    # RMS norm
    x, w = rnd(rng, (3, 9), f64), rnd(rng, 9, f64)
    dy = rnd(rng, x.shape, f64)
    y, s = norm.rms_norm(x, 9, w, eps=1e-3)
    dx, dw = norm.rms_norm_backward(dy, x, w, s)
    fd_check(lambda x, w: norm.rms_norm(x, 9, w, eps=1e-3)[0], dict(x=x, w=w), dict(x=dx, w=dw), dy)
    # group norm, N = 1, spatial 13 (not a multiple of the vector width)
    x, w, b = rnd(rng, (1, 6, 13), f64), rnd(rng, 6, f64), rnd(rng, 6, f64)
    dy = rnd(rng, x.shape, f64)
    y, s = norm.group_norm(x, 3, w, b)
    dx, dw, db = norm.group_norm_backward(dy, x, w, s)
    fd_check(lambda x, w, b: norm.group_norm(x, 3, w, b)[0], dict(x=x, w=w, b=b), dict(x=dx, w=dw, b=db), dy)
    # instance norm
    x, w, b = rnd(rng, (2, 3, 10), f64), rnd(rng, 3, f64), rnd(rng, 3, f64)
    dy = rnd(rng, x.shape, f64)
    y, s = norm.instance_norm(x, w, b)
    dx, dw, db = norm.instance_norm_backward(dy, x, w, s)
    fd_check(lambda x, w, b: norm.instance_norm(x, w, b)[0], dict(x=x, w=w, b=b), dict(x=dx, w=dw, b=db), dy)
    # weight norm
    v, g = rnd(rng, (4, 6), f64), rnd(rng, (4, 1), f64)
    dw_ = rnd(rng, v.shape, f64)
    w_, s = norm.weight_norm(v, g)
    dg, dv = norm.weight_norm_backward(dw_, v, g, s)
    fd_check(lambda v, g: norm.weight_norm(v, g)[0], dict(v=v, g=g), dict(v=dv, g=dg), dw_)


# ---- robust statistics ----------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_offset_tiny_variance(dtype):
    rng = np.random.default_rng(5)
    # float32: 1e4 + N(0, 1) (variance is 1e-8 of the mean square); float64: even 1e8 + 1e-3 N(0, 1)
    loc, scale = (1e4, 1.0) if dtype == np.float32 else (1e8, 1e-3)
    # x itself is only known to loc * eps; normalized, that is loc * eps / scale
    # (E[x²] - E[x]² would lose everything: O(1) errors).
    tol = 4 * loc * np.finfo(dtype).eps / scale
    x = rnd(rng, (6, 4, 3000), dtype, scale, loc)
    for y, want in [
        (
            norm.layer_norm(x, (4, 3000), eps=1e-12 if dtype == np.float64 else 1e-5)[0],
            ref.layer_norm(x, 2, None, None, 1e-12 if dtype == np.float64 else 1e-5)[0],
        ),
        (
            norm.batch_norm(x, eps=1e-12 if dtype == np.float64 else 1e-5)[0],
            ref.batch_norm(x, None, None, 1e-12 if dtype == np.float64 else 1e-5)[0],
        ),
        (
            norm.group_norm(x, 2, eps=1e-12 if dtype == np.float64 else 1e-5)[0],
            ref.group_norm(x, 2, None, None, 1e-12 if dtype == np.float64 else 1e-5)[0],
        ),
        (
            norm.batch_norm(np.ascontiguousarray(x.reshape(-1, 8)), eps=1e-12 if dtype == np.float64 else 1e-5)[0],
            ref.batch_norm(x.reshape(-1, 8), None, None, 1e-12 if dtype == np.float64 else 1e-5)[0],
        ),
    ]:
        assert np.abs(np.asarray(y, np.float64) - want).max() < tol
        assert abs(np.asarray(y, np.float64).std() - 1) < 1e-2


# ---- modules ----------------------------------------------------------------------------


def test_modules():
    rng = np.random.default_rng(3)
    x = rnd(rng, (8, 6, 5), np.float32)
    dy = rnd(rng, x.shape, np.float32)
    bn = norm.BatchNorm(6, momentum=0.5)
    y = bn.forward(x)
    np.testing.assert_allclose(y, norm.batch_norm(x)[0], rtol=1e-6, atol=1e-6)
    dx = bn.backward(dy)
    assert bn.num_batches_tracked == 1 and dx.shape == x.shape
    assert [g.shape for g in bn.grads()] == [(6,), (6,)] and len(bn.parameters()) == 2
    assert abs(bn.running_mean - 0.5 * x.mean(axis=(0, 2))).max() < 1e-5
    y_eval = bn.forward(x, training=False)
    np.testing.assert_allclose(
        y_eval,
        ref.batch_norm_eval(x, None, None, bn.running_mean.astype(np.float64), bn.running_var.astype(np.float64), 1e-5),
        rtol=1e-4,
        atol=1e-5,
    )
    for mod, want in [
        (norm.LayerNorm((6, 5)), ref.layer_norm_backward(dy, x, 2, None, 1e-5)),
        (norm.GroupNorm(3, 6), ref.group_norm_backward(dy, x, 3, None, 1e-5)),
        (norm.RMSNorm(5, eps=1e-6), ref.rms_norm_backward(dy, x, 1, None, 1e-6) + (None,)),
    ]:
        mod.forward(x)
        dx = mod.backward(dy)
        np.testing.assert_allclose(dx, want[0], rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(mod.grad_weight, want[1], rtol=1e-3, atol=1e-3)
        if want[2] is not None:
            np.testing.assert_allclose(mod.grad_bias, want[2], rtol=1e-3, atol=1e-3)
        assert len(mod.parameters()) == len(mod.grads())
    with pytest.raises(RuntimeError, match="forward"):
        norm.LayerNorm(3).backward(dy)


@pytest.mark.parametrize(
    "make",
    [
        lambda: norm.BatchNorm(6, affine=False, track_running_stats=False),
        lambda: norm.BatchNorm(6),
        lambda: norm.GroupNorm(2, 6),
    ],
)
def test_modules_check_the_channel_count(make):
    mod = make()
    for bad in (np.ones((4, 5), np.float32), np.ones((4, 4, 3), np.float32), np.ones(6, np.float32)):
        with pytest.raises(ValueError, match=r"x: expected shape \(N, 6, \.\.\.\)"):
            mod.forward(bad)
    assert mod.forward(np.random.default_rng(0).standard_normal((4, 6, 3)).astype(np.float32)).shape == (4, 6, 3)
