"""float16 / bfloat16 normalizations on the CPU, bit for bit (35th hunt): the half paths load each
element to float32, run the float32 kernels' math and round each result to nearest even. So every
output must be the float32 call's on float32 copies of the inputs, cast by NumPy / ml_dtypes
(independent of the C++ conversions), and every float32 statistic the float32 call's exactly. The
half loops no longer run on staged float32 copies of whole arrays (they convert row by row), so this
pins that nothing in the math moved: odd sizes (0, 1, 7, 1023 elements a row), rows of inf / NaN
(the scaled fallbacks), absent weight / bias and streamed stores."""

import numpy as np
import pytest

from optkern import _cpu, norm

ml_dtypes = pytest.importorskip("ml_dtypes", reason="bfloat16 host arrays are ml_dtypes arrays")
HALF = [np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)]
IDS = ["float16", "bfloat16"]
SIZES = [0, 1, 7, 1023]


def _same(name, got, want32, dt):
    """got (dtype dt) is want32 (a float32 result) rounded to dt by NumPy, bit for bit."""
    assert got.dtype == dt, f"{name}: dtype {got.dtype}"
    want = np.asarray(want32, np.float32).astype(dt)
    np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16), err_msg=name)


def _same32(name, got, want):
    assert got.dtype == np.float32, f"{name}: dtype {got.dtype}"
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32), err_msg=name)


def _data(rng, shape, dt, loc=0.0, special=False):
    a = (loc + 2 * rng.standard_normal(shape)).astype(dt)
    if special and a.size > 3:  # a row with inf and one with NaN: the scaled statistics' fallback
        a.reshape(-1)[1] = np.inf
        a.reshape(-1)[-1] = np.nan
    return a


def _f32(*arrays):
    return [None if a is None else a.astype(np.float32) for a in arrays]


@pytest.fixture(params=[False, True], ids=["plain", "streamed"])
def streamed(request):
    old = _cpu._set_stream_bytes(0 if request.param else 16 << 20)
    yield request.param
    _cpu._set_stream_bytes(old)


@pytest.mark.parametrize("dt", HALF, ids=IDS)
@pytest.mark.parametrize("M", SIZES)
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("special", [False, True])
def test_layer_and_rms_norm(dt, M, affine, special, streamed):
    rng = np.random.default_rng(M + dt.itemsize + 2 * affine + 4 * special)
    x, dy = _data(rng, (5, M), dt, 0.5, special), _data(rng, (5, M), dt)
    w, b = (_data(rng, M, dt, 1.0), _data(rng, M, dt)) if affine else (None, None)
    x32, dy32, w32, b32 = _f32(x, dy, w, b)
    y, s = norm.layer_norm(x, M, w, b, eps=1e-5)
    y32, s32 = norm.layer_norm(x32, M, w32, b32, eps=1e-5)
    _same("layer y", y, y32, dt)
    _same32("layer mean", s.mean, s32.mean)
    _same32("layer rstd", s.rstd, s32.rstd)
    g, g32 = norm.layer_norm_backward(dy, x, w, s), norm.layer_norm_backward(dy32, x32, w32, s32)
    for name, a, a32 in zip(["dx", "dweight", "dbias"], g, g32):
        if a32 is not None:
            _same(f"layer {name}", a, a32, dt)
    y, s = norm.rms_norm(x, M, w, eps=1e-5)
    y32, s32 = norm.rms_norm(x32, M, w32, eps=1e-5)
    _same("rms y", y, y32, dt)
    _same32("rms inv_rms", s.inv_rms, s32.inv_rms)
    g, g32 = norm.rms_norm_backward(dy, x, w, s), norm.rms_norm_backward(dy32, x32, w32, s32)
    for name, a, a32 in zip(["dx", "dweight"], g, g32):
        if a32 is not None:
            _same(f"rms {name}", a, a32, dt)


# (instance norm refuses S = 1, as torch; batch norm's S = 1 is an (N, C) batch of 1023 rows)
CHANNEL_CASES = [(k, S) for k in ("group", "instance", "batch") for S in SIZES if k == "group" or S > 1] + [
    ("batch", 1),
]


@pytest.mark.parametrize("dt", HALF, ids=IDS)
@pytest.mark.parametrize("kind, S", CHANNEL_CASES)
@pytest.mark.parametrize("special", [False, True])
def test_channel_norms(dt, S, kind, special, streamed):
    rng = np.random.default_rng(S + dt.itemsize + 8 * special)
    shape = (3, 6, S) if kind != "batch" or S > 1 else (1023, 6)
    x, dy = _data(rng, shape, dt, 0.5, special), _data(rng, shape, dt)
    w, b = _data(rng, 6, dt, 1.0), _data(rng, 6, dt)
    x32, dy32, w32, b32 = _f32(x, dy, w, b)
    if kind == "group":
        fwd = lambda x, w, b: norm.group_norm(x, 3, w, b, eps=1e-5)
        bwd = norm.group_norm_backward
    elif kind == "instance":
        fwd = lambda x, w, b: norm.instance_norm(x, w, b, eps=1e-5)
        bwd = norm.instance_norm_backward
    else:
        fwd = lambda x, w, b: norm.batch_norm(x, w, b, training=True, eps=1e-5)
        bwd = norm.batch_norm_backward
    (y, s), (y32, s32) = fwd(x, w, b), fwd(x32, w32, b32)
    _same(f"{kind} y", y, y32, dt)
    _same32(f"{kind} mean", s.mean, s32.mean)
    _same32(f"{kind} rstd", s.rstd, s32.rstd)
    g, g32 = bwd(dy, x, w, s), bwd(dy32, x32, w32, s32)
    for name, a, a32 in zip(["dx", "dweight", "dbias"], g, g32):
        _same(f"{kind} {name}", a, a32, dt)
    if kind == "batch":  # eval mode: the float32 running statistics normalize half x
        rm, rv = rng.standard_normal(6).astype(np.float32), rng.uniform(0.5, 2, 6).astype(np.float32)
        ye = norm.batch_norm(x, w, b, rm, rv, training=False, eps=1e-5)[0]
        ye32 = norm.batch_norm(x32, w32, b32, rm, rv, training=False, eps=1e-5)[0]
        _same("batch y (eval)", ye, ye32, dt)


@pytest.mark.parametrize("dt", HALF, ids=IDS)
@pytest.mark.parametrize("shape", [(0, 7), (1, 1), (7, 7), (3, 1023)])
def test_weight_norm(dt, shape):
    rng = np.random.default_rng(sum(shape) + dt.itemsize)
    v, dw = _data(rng, shape, dt, 0.25), _data(rng, shape, dt)
    g = _data(rng, (shape[0], 1), dt, 1.0)
    v32, dw32, g32 = _f32(v, dw, g)
    (w, s), (w32, s32) = norm.weight_norm(v, g, dim=0), norm.weight_norm(v32, g32, dim=0)
    _same("w", w, w32, dt)
    _same32("norm", s.norm, s32.norm)
    for name, a, a32 in zip(
        ["dg", "dv"], norm.weight_norm_backward(dw, v, g, s), norm.weight_norm_backward(dw32, v32, g32, s32)
    ):
        _same(name, a, a32, dt)


# ---- no float32 copies of whole arrays -----------------------------------------------------------


@pytest.mark.parametrize("kind", ["layer", "rms", "group", "batch", "weight"])
def test_no_float32_copies(kind):
    """The half paths convert a row / block at a time: the NumPy memory a call takes (tracemalloc
    sees NumPy's allocations) is its half outputs, not float32 copies of x, dy and the outputs (the
    staged path took ~4 bytes an element more and failed this: 5x x.nbytes or more)."""
    import tracemalloc

    rng = np.random.default_rng(1)
    x, dy = _data(rng, (256, 1024), np.float16, 0.5), _data(rng, (256, 1024), np.float16)
    w, b = _data(rng, 1024, np.float16, 1.0), _data(rng, 1024, np.float16)
    xc, dyc = x.reshape(16, 16, 1024), dy.reshape(16, 16, 1024)
    wc, bc = w[:16].copy(), b[:16].copy()
    calls = {
        "layer": (lambda: norm.layer_norm(x, 1024, w, b), lambda s: norm.layer_norm_backward(dy, x, w, s)),
        "rms": (lambda: norm.rms_norm(x, 1024, w), lambda s: norm.rms_norm_backward(dy, x, w, s)),
        "group": (lambda: norm.group_norm(xc, 4, wc, bc), lambda s: norm.group_norm_backward(dyc, xc, wc, s)),
        "batch": (
            lambda: norm.batch_norm(xc, wc, bc, training=True),
            lambda s: norm.batch_norm_backward(dyc, xc, wc, s),
        ),
        "weight": (lambda: norm.weight_norm(x, w[:256, None].copy(), dim=0), None),
    }
    fwd, bwd = calls[kind]
    if kind == "weight":
        g = w[:256, None].copy()
        bwd = lambda s: norm.weight_norm_backward(dy, x, g, s)
    saved = fwd()[1]
    for f in (fwd, lambda: bwd(saved)):
        f()  # (warm: first-call allocations)
        tracemalloc.start()
        try:
            f()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 2.5 * x.nbytes, f"{kind}: {peak / x.nbytes:.2f} x.nbytes of NumPy memory"
