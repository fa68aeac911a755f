"""float16 / bfloat16 storage for the CPU normalizations and dropout (34th hunt): the CUDA module took
them (float32 statistics, cuda/norm_common.cuh) while the CPU refused them, so the GPU's half path ran
code no CPU test exercised. Now the CPU takes the same dtypes with the CUDA contract: x, weight,
bias, out and the gradients in the storage type; mean / rstd / var / running statistics / ‖v‖ in
float32; each element loaded to float32, the float32 kernels' statistics, results rounded to nearest
even. bfloat16 on the CPU is ``ml_dtypes.bfloat16`` (optkern.lowp's convention for typed arrays).

References: float64 (tests/reference_norm.py) on the same half inputs; a result may be off by one
ulp of its storage type (its rounding, and a float32 value near a tie) plus the float32 arithmetic's
error on the magnitudes involved. torch's CPU half kernels where torch has them. Every test here
failed before the fix (the CPU raised "x: expected float32 or float64")."""

import numpy as np
import pytest

import reference_norm as ref
from optkern import norm
from ulps import spacing_lowp

ml_dtypes = pytest.importorskip("ml_dtypes", reason="bfloat16 host arrays are ml_dtypes arrays")
BF16 = np.dtype(ml_dtypes.bfloat16)
HALF = [np.dtype(np.float16), BF16]
IDS = ["float16", "bfloat16"]
EPS = 1e-5
F32_ERR = 64 * 2.0**-24  # float32 arithmetic on a few dozen operations, relative to the terms


def _close(name, got, want, dt, scale):
    """got (dtype dt) within one ulp of dt at want plus F32_ERR * scale (an array or a number)."""
    assert got.dtype == dt, f"{name}: dtype {got.dtype}"
    want = np.asarray(want, np.float64).reshape(got.shape)
    err = np.abs(got.astype(np.float64) - want)
    allow = spacing_lowp(want, dt) + F32_ERR * np.asarray(scale, np.float64)
    bad = err > allow
    assert not bad.any(), f"{name}: {bad.sum()} of {bad.size} off, worst {np.max(err - allow)} past the bound"


def _stat(name, got, want):
    assert got.dtype == np.float32, f"{name}: dtype {got.dtype}"
    np.testing.assert_allclose(got, np.asarray(want).reshape(got.shape), rtol=1e-5, atol=1e-6, err_msg=name)


def _data(rng, shape, dt, loc=0.0):
    return (loc + rng.standard_normal(shape)).astype(dt)


def _f64(a):
    return np.asarray(a, np.float64)


# ---- layer norm and RMS norm: (R, M), rows of 0, 1, 7, 1023 elements ----------------------------

ROWS = [(0, 7), (3, 1), (5, 7), (3, 1023)]


@pytest.mark.parametrize("dt", HALF, ids=IDS)
@pytest.mark.parametrize("shape", ROWS)
def test_layer_norm(dt, shape):
    rng = np.random.default_rng(sum(shape) + dt.itemsize)
    M = shape[1]
    x, dy = _data(rng, shape, dt, 0.5), _data(rng, shape, dt)
    w, b = _data(rng, M, dt, 1.0), _data(rng, M, dt)
    y, saved = norm.layer_norm(x, M, w, b, eps=EPS)
    y_ref, mean_ref, rstd_ref = ref.layer_norm(_f64(x), 1, _f64(w), _f64(b), EPS)
    _close("y", y, y_ref, dt, np.abs(_f64(w)) * 4 + np.abs(_f64(b)))
    _stat("mean", saved.mean, mean_ref)
    _stat("rstd", saved.rstd, rstd_ref)
    dx, dw, db = norm.layer_norm_backward(dy, x, w, saved)
    dx_ref, dw_ref, db_ref = ref.layer_norm_backward(_f64(dy), _f64(x), 1, _f64(w), EPS)
    gmax = np.max(np.abs(_f64(dy) * _f64(w)), initial=0.0) * np.max(rstd_ref, initial=0.0)
    _close("dx", dx, dx_ref, dt, 8 * gmax)
    R = max(shape[0], 1)
    _close("dweight", dw, dw_ref, dt, 4 * R * np.max(np.abs(_f64(dy)), initial=0.0))
    _close("dbias", db, db_ref, dt, R * np.max(np.abs(_f64(dy)), initial=0.0))


@pytest.mark.parametrize("dt", HALF, ids=IDS)
@pytest.mark.parametrize("shape", ROWS)
def test_rms_norm(dt, shape):
    rng = np.random.default_rng(sum(shape) + 2 * dt.itemsize)
    M = shape[1]
    x, dy, w = _data(rng, shape, dt, 0.5), _data(rng, shape, dt), _data(rng, M, dt, 1.0)
    y, saved = norm.rms_norm(x, M, w, eps=EPS)
    y_ref, r_ref = ref.rms_norm(_f64(x), 1, _f64(w), EPS)
    _close("y", y, y_ref, dt, 8 * np.abs(_f64(w)))
    _stat("inv_rms", saved.inv_rms, r_ref)
    dx, dw = norm.rms_norm_backward(dy, x, w, saved)
    dx_ref, dw_ref = ref.rms_norm_backward(_f64(dy), _f64(x), 1, _f64(w), EPS)
    gmax = np.max(np.abs(_f64(dy) * _f64(w)), initial=0.0) * np.max(r_ref, initial=0.0)
    _close("dx", dx, dx_ref, dt, 8 * gmax)
    _close("dweight", dw, dw_ref, dt, 8 * max(shape[0], 1) * np.max(np.abs(_f64(dy)), initial=0.0))


# ---- group norm, instance norm, batch norm: (N, C, S) --------------------------------------------

CHANNELS = [(0, 6, 7), (1, 6, 1), (3, 6, 7), (2, 6, 1023)]


def _empty_ok(dt, x, y, saved, back):
    """An empty x (N = 0): empty results of the right dtypes (the float64 reference cannot reshape it)."""
    assert y.shape == x.shape and y.dtype == dt and saved.rstd.dtype == np.float32
    dx, dw, db = back()
    assert dx.shape == x.shape and dx.dtype == dw.dtype == db.dtype == dt
    assert not dw.any() and not db.any()  # sums over no elements


def _channel_check(dt, x, dy, w, y, dx, dw, db, y_ref, dx_ref, dw_ref, db_ref, rstd_max):
    red = max(x.shape[0], 1) * max(int(np.prod(x.shape[2:])), 1)
    _close("y", y, y_ref, dt, 8 * np.abs(_f64(w)).reshape(1, -1, 1) + 4)
    gmax = np.max(np.abs(_f64(dy)), initial=0.0) * np.max(np.abs(_f64(w)), initial=0.0) * rstd_max
    _close("dx", dx, dx_ref, dt, 8 * gmax)
    _close("dweight", dw, dw_ref, dt, 8 * red * np.max(np.abs(_f64(dy)), initial=0.0))
    _close("dbias", db, db_ref, dt, red * np.max(np.abs(_f64(dy)), initial=0.0))


@pytest.mark.parametrize("dt", HALF, ids=IDS)
@pytest.mark.parametrize("shape", CHANNELS)
def test_group_norm(dt, shape):
    rng = np.random.default_rng(sum(shape) + 3 * dt.itemsize)
    C, G = shape[1], 3
    x, dy = _data(rng, shape, dt, 0.5), _data(rng, shape, dt)
    w, b = _data(rng, C, dt, 1.0), _data(rng, C, dt)
    y, saved = norm.group_norm(x, G, w, b, eps=EPS)
    if x.size == 0:
        return _empty_ok(dt, x, y, saved, lambda: norm.group_norm_backward(dy, x, w, saved))
    y_ref, mean_ref, rstd_ref = ref.group_norm(_f64(x), G, _f64(w), _f64(b), EPS)
    _stat("mean", saved.mean, mean_ref)
    _stat("rstd", saved.rstd, rstd_ref)
    dx, dw, db = norm.group_norm_backward(dy, x, w, saved)
    dx_ref, dw_ref, db_ref = ref.group_norm_backward(_f64(dy), _f64(x), G, _f64(w), EPS)
    _channel_check(dt, x, dy, w, y, dx, dw, db, y_ref, dx_ref, dw_ref, db_ref, np.max(rstd_ref, initial=0.0))


@pytest.mark.parametrize("dt", HALF, ids=IDS)
@pytest.mark.parametrize("shape", [(0, 6, 7), (1, 1, 7), (3, 7, 7), (2, 3, 1023)])  # (S = 1: refused, as torch)
def test_instance_norm(dt, shape):
    rng = np.random.default_rng(sum(shape) + 4 * dt.itemsize)
    C = shape[1]
    x, dy = _data(rng, shape, dt, 0.5), _data(rng, shape, dt)
    w, b = _data(rng, C, dt, 1.0), _data(rng, C, dt)
    y, saved = norm.instance_norm(x, w, b, eps=EPS)
    if x.size == 0:
        return _empty_ok(dt, x, y, saved, lambda: norm.instance_norm_backward(dy, x, w, saved))
    y_ref, mean_ref, rstd_ref = ref.group_norm(_f64(x), C, _f64(w), _f64(b), EPS)  # G = C
    _stat("mean", saved.mean, mean_ref)
    _stat("rstd", saved.rstd, rstd_ref)
    dx, dw, db = norm.instance_norm_backward(dy, x, w, saved)
    dx_ref, dw_ref, db_ref = ref.group_norm_backward(_f64(dy), _f64(x), C, _f64(w), EPS)
    _channel_check(dt, x, dy, w, y, dx, dw, db, y_ref, dx_ref, dw_ref, db_ref, np.max(rstd_ref, initial=0.0))


@pytest.mark.parametrize("dt", HALF, ids=IDS)
@pytest.mark.parametrize("shape", [(0, 6, 7), (1, 1, 7), (7, 6, 1), (2, 6, 1023), (1023, 5)])  # (N S = 1: refused)
def test_batch_norm(dt, shape):
    rng = np.random.default_rng(sum(shape) + 5 * dt.itemsize)
    C = shape[1]
    x, dy = _data(rng, shape, dt, 0.5), _data(rng, shape, dt)
    w, b = _data(rng, C, dt, 1.0), _data(rng, C, dt)
    rm, rv = rng.standard_normal(C).astype(np.float32), rng.uniform(0.5, 2, C).astype(np.float32)
    rm0, rv0 = rm.copy(), rv.copy()
    y, saved = norm.batch_norm(x, w, b, rm, rv, training=True, momentum=0.25, eps=EPS)
    n = x.size // C
    if n == 0:  # an empty y, the buffers left alone (torch's)
        assert y.shape == x.shape and y.dtype == dt and (rm == rm0).all() and (rv == rv0).all()
        dx = norm.batch_norm_backward(dy, x, w, saved)[0]
        assert dx.shape == x.shape and dx.dtype == dt
        return
    y_ref, mean_ref, var_ref = ref.batch_norm(_f64(x), _f64(w), _f64(b), EPS)
    # running statistics: float32, torch's update with the unbiased variance
    np.testing.assert_allclose(rm, 0.75 * rm0 + 0.25 * mean_ref, rtol=1e-5, atol=1e-6)
    if n > 1:
        np.testing.assert_allclose(rv, 0.75 * rv0 + 0.25 * var_ref * n / (n - 1), rtol=1e-5, atol=1e-6)
    assert rm.dtype == rv.dtype == np.float32
    _stat("mean", saved.mean, mean_ref)
    _stat("rstd", saved.rstd, 1 / np.sqrt(var_ref + EPS))
    rstd_max = np.max(1 / np.sqrt(var_ref + EPS))
    dx, dw, db = norm.batch_norm_backward(dy, x, w, saved)
    dx_ref, dw_ref, db_ref = ref.batch_norm_backward(_f64(dy), _f64(x), _f64(w), EPS)
    xs, dys = x.reshape(shape[0], C, -1), dy.reshape(shape[0], C, -1)
    yr, dxr = np.asarray(y_ref).reshape(xs.shape), np.asarray(dx_ref).reshape(xs.shape)
    _channel_check(dt, xs, dys, w, y.reshape(xs.shape), dx.reshape(xs.shape), dw, db, yr, dxr, dw_ref, db_ref, rstd_max)
    # eval: the float32 running statistics normalize half x
    ye, _ = norm.batch_norm(x, w, b, rm, rv, training=False, eps=EPS)
    ye_ref = ref.batch_norm_eval(_f64(x), _f64(w), _f64(b), _f64(rm), _f64(rv), EPS)
    _close("y (eval)", ye, ye_ref, dt, 8 * np.abs(_f64(w)).reshape((1, -1) + (1,) * (x.ndim - 2)) + 4)


# ---- weight norm ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dt", HALF, ids=IDS)
@pytest.mark.parametrize("shape", [(0, 7), (1, 1), (7, 7), (3, 1023)])
def test_weight_norm(dt, shape):
    rng = np.random.default_rng(sum(shape) + 6 * dt.itemsize)
    v, dw = _data(rng, shape, dt, 0.25), _data(rng, shape, dt)
    g = _data(rng, (shape[0], 1), dt, 1.0)
    w, saved = norm.weight_norm(v, g, dim=0)
    assert saved.norm.dtype == np.float32
    _close("w", w, ref.weight_norm(_f64(v), _f64(g), 0), dt, 4 * np.abs(_f64(g)))
    dg, dv = norm.weight_norm_backward(dw, v, g, saved)
    dg_ref, dv_ref = ref.weight_norm_backward(_f64(dw), _f64(v), _f64(g), 0)
    dwmax = np.max(np.abs(_f64(dw)), initial=0.0)
    _close("dg", dg, dg_ref, dt, 8 * shape[1] * dwmax)
    nrm = np.sqrt((_f64(v) ** 2).sum(axis=1, keepdims=True))
    _close("dv", dv, dv_ref, dt, 8 * np.abs(_f64(g)) / np.where(nrm > 0, nrm, 1) * dwmax)


# ---- against torch's CPU half kernels ------------------------------------------------------------


def _torch_half(a, torch):
    t = torch.from_numpy(a.astype(np.float32))
    return t.to(torch.bfloat16 if a.dtype == BF16 else torch.float16)


@pytest.mark.parametrize("dt", HALF, ids=IDS)
@pytest.mark.parametrize("kind", ["layer", "rms", "group", "batch"])
def test_against_torch(dt, kind):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(7 + dt.itemsize)
    x = _data(rng, (4, 6, 7) if kind in ("group", "batch") else (5, 1023), dt, 0.5)
    C = x.shape[1]
    w, b = _data(rng, C, dt, 1.0), _data(rng, C, dt)
    tx, tw, tb = (_torch_half(a, torch) for a in (x, w, b))
    if kind == "layer":
        ours, theirs = norm.layer_norm(x, C, w, b, eps=EPS)[0], F.layer_norm(tx, (C,), tw, tb, EPS)
    elif kind == "rms":
        if not hasattr(F, "rms_norm"):
            pytest.skip("torch has no rms_norm")
        ours, theirs = norm.rms_norm(x, C, w, eps=EPS)[0], F.rms_norm(tx, (C,), tw, EPS)
    elif kind == "group":
        ours, theirs = norm.group_norm(x, 3, w, b, eps=EPS)[0], F.group_norm(tx, 3, tw, tb, EPS)
    else:
        ours = norm.batch_norm(x, w, b, training=True, eps=EPS)[0]
        theirs = F.batch_norm(tx, None, None, tw, tb, training=True, eps=EPS).float().numpy()
        # torch's CPU half batch_norm rounds an intermediate to the half type (measured: up to ~7 ulps
        # off the float64 result for float16, where ours is within half an ulp): ours must be no
        # farther from float64 than torch's, and within an ulp of it
        want = ref.batch_norm(_f64(x), _f64(w), _f64(b), EPS)[0]
        ulps = spacing_lowp(want, dt)
        err_ours, err_torch = np.abs(_f64(ours) - want) / ulps, np.abs(_f64(theirs) - want) / ulps
        assert err_ours.max() <= 1.0 and err_ours.max() <= max(err_torch.max(), 0.5)
        return
    theirs = theirs.float().numpy()
    # each within half an ulp of the float32 result (and ours within an ulp of float64): at most one
    # ulp apart, where a float32 value near a tie rounds one way here and the other in torch
    scale = 8 * np.abs(_f64(w)).reshape((1, -1, 1) if x.ndim == 3 else (1, -1)) + 4
    _close(f"{kind} vs torch", ours, theirs, dt, scale)


# ---- dropout ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dt", HALF, ids=IDS)
@pytest.mark.parametrize("n", [0, 1, 7, 1023])
def test_dropout_same_mask_and_bits(dt, n):
    """The mask is the float32 call's, bit for bit; y is the float32 product rounded to nearest even
    (NumPy's / ml_dtypes' astype, independent of the kernels' conversion)."""
    rng = np.random.default_rng(n + dt.itemsize)
    x = _data(rng, n, dt)
    if n > 3:
        x[1], x[2] = np.inf, np.nan  # a dropped NaN or inf gives NaN, as in float32
    x32 = x.astype(np.float32)
    for p in (0.0, 0.3, 1.0):
        y, mask = norm.dropout(x, p, seed=123, offset=5, return_mask=True)
        y32, mask32 = norm.dropout(x32, p, seed=123, offset=5, return_mask=True)
        assert y.dtype == dt and np.array_equal(mask, mask32)
        np.testing.assert_array_equal(y.view(np.uint16), y32.astype(dt).view(np.uint16))
        dx = norm.dropout_backward(x, p, seed=123, offset=5)
        np.testing.assert_array_equal(dx.view(np.uint16), y.view(np.uint16))


def test_dropout_rounds_to_nearest_even():
    """1/(1 - p) products that land between two float16 values: the nearest, ties to even."""
    p = 0.25  # scale 4/3: x · 4/3 is never a float16 for these x
    x = np.arange(1, 2049, dtype=np.float16)
    y, mask = norm.dropout(x, p, seed=9, return_mask=True)
    want = (x.astype(np.float64) * mask * np.float64(np.float32(4 / 3))).astype(np.float32).astype(np.float16)
    np.testing.assert_array_equal(y.view(np.uint16), want.view(np.uint16))


# ---- bad input: named, nothing written -------------------------------------------------------------


def test_mixed_dtypes_name_the_argument():
    rng = np.random.default_rng(3)
    x = _data(rng, (4, 7), np.float16)
    out = np.full((4, 7), 7, np.float16)
    with pytest.raises(TypeError, match="^weight: expected float16, got float64"):
        norm.layer_norm(x, 7, np.ones(7), None, out=out)
    with pytest.raises(TypeError, match="^bias: expected float16, got bfloat16"):
        norm.layer_norm(x, 7, None, np.zeros(7, BF16), out=out)
    with pytest.raises(TypeError, match="^out: expected float16, got float32"):
        norm.layer_norm(x, 7, out=np.zeros((4, 7), np.float32))
    assert (out == 7).all()
    y, saved = norm.layer_norm(x, 7)
    with pytest.raises(TypeError, match="^dy: expected float16, got bfloat16"):
        norm.layer_norm_backward(x.astype(BF16), x, None, saved)
    with pytest.raises(TypeError, match="^saved.mean: expected float32, got float16"):
        norm.layer_norm_backward(x, x, None, saved._replace(mean=saved.mean.astype(np.float16)))
    with pytest.raises(TypeError, match="^weight: expected bfloat16, got float32"):
        norm.rms_norm(x.astype(BF16), 7, np.ones(7, np.float32))
    with pytest.raises(TypeError, match="^g: expected float16, got float32"):
        norm.weight_norm(x, np.ones((4, 1), np.float32))
    xc = _data(rng, (3, 2, 5), np.float16)
    with pytest.raises(TypeError, match="^running_mean: expected float32, got float16"):
        norm.batch_norm(xc, None, None, np.zeros(2, np.float16), np.ones(2, np.float32))
    with pytest.raises(TypeError, match="^weight: expected float16, got float64"):
        norm.group_norm(xc, 2, np.ones(2))
    with pytest.raises(TypeError, match="^x: expected float16, bfloat16, float32 or float64, got uint16"):
        norm.dropout(x.view(np.uint16), 0.5, seed=1)


def test_eps_checked_in_float32_for_half():
    """Half types keep float32 statistics: an eps that rounds to 0 there is refused, as for float32."""
    x = np.ones((2, 3), BF16)
    with pytest.raises(ValueError, match="^eps: .* rounds to 0 in float32"):
        norm.rms_norm(x, 3, eps=1e-50)
    with pytest.raises(ValueError, match="^eps: .* overflows float32"):
        norm.layer_norm(x.astype(np.float16), 3, eps=1e39)


@pytest.mark.parametrize("dtype", [np.float16, "bfloat16"])
def test_modules_take_half_dtypes(dtype):
    rng = np.random.default_rng(11)
    dt = np.dtype(dtype) if dtype != "bfloat16" else BF16
    bn, ln = norm.BatchNorm(3, dtype=dtype), norm.LayerNorm(7, dtype=dtype)
    assert bn.weight.dtype == dt and bn.running_mean.dtype == np.float32
    x = _data(rng, (5, 3, 4), dt)
    y = bn(x)
    assert y.dtype == dt
    bn.backward(_data(rng, x.shape, dt))
    assert bn.grad_weight.dtype == dt
    y_ref, mean_ref, _ = ref.batch_norm(_f64(x), None, None, EPS)
    _close("BatchNorm y", y, y_ref, dt, 4)
    np.testing.assert_allclose(bn.running_mean, 0.1 * mean_ref, rtol=1e-5, atol=1e-7)
    xl = _data(rng, (2, 7), dt)
    assert ln(xl).dtype == dt
