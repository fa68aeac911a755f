"""The plain normalization backward passes (batch, layer, group, instance, RMS norm) with dy near the
dtype's max.

dx = r (g - mean(g) - x̂ mean(g x̂)), g = γ dy, is a projection of g: |dx| stays within a modest
multiple of max|dy| r |γ|, in range here (rstd near 1/3). The kernels' group sums Σ g and Σ g x̂
overflowed first (float32 Σ of [1.9e38, 1.9e38, 1.9e38, -1.9e38, ...] = inf): dx came out -inf / NaN
(torch's own float32 and float64 autograd too), and dγ = Σ dy x̂, dβ = Σ dy inf where the exact sums
are finite (batch norm's Σ dy of those columns is exactly 0). Such groups (and parameter entries) are
now computed again with dy and γ scaled by powers of two (rules/norm.hpp: dy near the max).

Reference: torch's float64 autograd of F.batch_norm / layer_norm / group_norm / instance_norm /
rms_norm on dy divided by 2^k (exact), the gradients multiplied back (so float64 data near 1.7e308
stay in range in the reference too; entries past the max there come back ±inf, as they must here).
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import optkern
import optkern.norm as on

torch.set_num_threads(1)

BIG = {np.float32: 0.55 * 3.4028235e38, np.float64: 0.55 * 1.7976931348623157e308}
KBIG = {np.float32: 127, np.float64: 1023}  # the exponent of BIG: the reference scales dy by 2^-k
RTOL = {np.float32: 2e-5, np.float64: 1e-12}


def _big_dy(rng, dtype, shape, lead_axis):
    """dy in [-B/5, B/5] whose every group starts ±[B, B, B, -B, -B, -B] along `lead_axis`: the running
    sum passes the max (times γ >= 0.7 too) though the group's sum is small."""
    a = rng.uniform(-0.2, 0.2, shape)
    lead = np.array([1.0, 1.0, 1.0, -1.0, -1.0, -1.0])
    idx = [slice(None)] * len(shape)
    idx[lead_axis] = slice(0, 6)
    view = [1] * len(shape)
    view[lead_axis] = 6
    a[tuple(idx)] = lead.reshape(view)
    return (a * BIG[dtype]).astype(dtype)


def _torch_grads(kind, x, w, b, dy, k, groups=2):
    """float64 autograd with dy 2^-k, gradients times 2^k."""
    f = lambda a: torch.tensor(np.asarray(a, np.float64), requires_grad=True)
    tx, tw, tb = f(x), f(w), f(b)
    C = x.shape[1] if kind in ("batch", "group", "instance") else x.shape[-1]
    if kind == "batch":
        y = F.batch_norm(tx, None, None, tw, tb, training=True, eps=1e-5)
    elif kind == "layer":
        y = F.layer_norm(tx, (C,), tw, tb, eps=1e-5)
    elif kind == "group":
        y = F.group_norm(tx, groups, tw, tb, eps=1e-5)
    elif kind == "instance":
        y = F.instance_norm(tx, weight=tw, bias=tb, eps=1e-5)
    else:
        y = F.rms_norm(tx, (C,), tw, eps=1e-5)
    y.backward(torch.tensor(np.ldexp(np.asarray(dy, np.float64), -k)))
    with np.errstate(over="ignore"):  # (a parameter sum may be past the max: _close checks it is ±inf)
        return [None if t.grad is None else np.ldexp(t.grad.numpy(), k) for t in (tx, tw, tb)]


def _optkern_grads(kind, x, w, b, dy, groups=2):
    C = x.shape[1] if kind in ("batch", "group", "instance") else x.shape[-1]
    if kind == "batch":
        _, s = on.batch_norm(x, w, b)
        return on.batch_norm_backward(dy, x, w, s)
    if kind == "layer":
        _, s = on.layer_norm(x, (C,), w, b)
        return on.layer_norm_backward(dy, x, w, s)
    if kind == "group":
        _, s = on.group_norm(x, groups, w, b)
        return on.group_norm_backward(dy, x, w, s)
    if kind == "instance":
        _, s = on.instance_norm(x, weight=w, bias=b)
        return on.instance_norm_backward(dy, x, w, s)
    _, s = on.rms_norm(x, (C,), w, eps=1e-5)
    dx, dw = on.rms_norm_backward(dy, x, w, s)
    return dx, dw, None


def _close(got, want, dtype, what, in_range=2):
    """got ≈ want where want is in the dtype's range, relative to the array's scale; ±inf of want's sign
    where want is past the max (a correctly rounded result is)."""
    assert got.dtype == dtype, what
    top = float(np.finfo(dtype).max)
    inside = np.abs(want) <= top * (1 - 4 * RTOL[dtype])
    outside = np.abs(want) >= top * (1 + 4 * RTOL[dtype])
    assert inside.sum() >= in_range, what
    assert np.isfinite(got[inside]).all(), f"{what}: not finite where the exact value is: {got[inside]}"
    np.testing.assert_array_equal(got[outside], np.sign(want[outside]) * np.inf, err_msg=what)
    scale = np.abs(want[inside]).max()
    np.testing.assert_allclose(got[inside], want[inside], rtol=RTOL[dtype], atol=RTOL[dtype] * scale, err_msg=what)


# kind: (x's shape, the axis along which a group's elements lie for _big_dy)
CASES = {
    "batch": ((7, 5), 0),
    "batch_spatial": ((7, 3, 2), 0),
    "layer": ((5, 7), 1),
    "group": ((4, 4, 3), 2),  # (groups of 2 channels x 3: _problem sets the signs)
    "instance": ((2, 3, 7), 2),
    "rms": ((5, 7), 1),
}


def _problem(case, dtype, seed=0):
    rng = np.random.default_rng(seed)
    shape, lead = CASES[case]
    kind = "batch" if case == "batch_spatial" else case
    C = shape[1] if kind in ("batch", "group", "instance") else shape[-1]
    x = (3.0 * rng.standard_normal(shape)).astype(dtype)  # (rstd near 1/3: dx stays in range)
    w = rng.uniform(0.7, 1.0, C).astype(dtype)
    b = rng.uniform(-0.5, 0.5, C).astype(dtype)
    if kind != "group":
        return kind, x, w, b, _big_dy(rng, dtype, shape, lead)
    # a group's 6 elements are channels (2j, 2j+1) x 3: signs +, +, +, -, -, -, alternating over the
    # samples (each channel's Σ dy over them: 0)
    sign = np.where(np.arange(4) % 2 == 0, 1.0, -1.0)[:, None, None] * np.array([1.0, -1.0, 1.0, -1.0])[:, None]
    dy = (sign * rng.uniform(0.8, 1.0, shape) * BIG[dtype]).astype(dtype)
    return kind, x, w, b, dy


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dx_with_dy_near_the_max_matches_float64(case, dtype):
    kind, x, w, b, dy = _problem(case, dtype)
    dx, dw, db = _optkern_grads(kind, x, w, b, dy)
    want = _torch_grads(kind, x, w, b, dy, KBIG[dtype])
    _close(dx, want[0], dtype, "dx", in_range=dx.size)
    _close(dw, want[1], dtype, "dweight", in_range=1)
    if db is not None:
        _close(db, want[2], dtype, "dbias", in_range=1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_norm_dbias_of_cancelling_columns_is_exact(dtype):
    """Σ dy of a column ±[B, B, B, -B, -B, -B, 0] is 0 (the plain sum: inf); dx, dγ as float64's."""
    rng = np.random.default_rng(3)
    x = (10.0 * rng.standard_normal((7, 4))).astype(dtype)
    dy = np.zeros((7, 4), dtype)
    dy[:6] = np.array([1, 1, 1, -1, -1, -1], dtype)[:, None] * dtype(BIG[dtype])
    _, s = on.batch_norm(x)
    dx, dw, db = on.batch_norm_backward(dy, x, None, s)
    assert (np.abs(db) <= 8 * np.finfo(dtype).eps * BIG[dtype]).all()
    ones, zeros = np.ones(4, dtype), np.zeros(4, dtype)
    want = _torch_grads("batch", x, ones, zeros, dy, KBIG[dtype])
    _close(dx, want[0], dtype, "dx", in_range=dx.size)
    _close(dw, want[1], dtype, "dweight", in_range=4)


def eval_dy_gamma_past_the_max(dtype):
    """(x, dy, w, running_mean, running_var) with γ dy past the max and rstd ≈ 1/8 (the CUDA test's too)."""
    top = float(np.finfo(dtype).max)
    x = np.ones((3, 2), dtype)
    dy = np.array([[0.9 * top, 1.0], [-0.8 * top, 2.0], [0.5, -3.0]], dtype)
    w = np.array([4.0, 4.0], dtype)
    return x, dy, w, np.zeros(2, dtype), np.full(2, 63.99999, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_eval_batch_norm_dx_past_dy_gamma(dtype):
    """Eval mode: dx = r γ dy with γ dy past the max but r γ dy in range (plain: r · inf)."""
    x, dy, w, rm, rv = eval_dy_gamma_past_the_max(dtype)
    _, s = on.batch_norm(x, w, None, rm, rv, training=False, eps=1e-5)
    dx, dw, db = on.batch_norm_backward(dy, x, w, s)
    r = 1.0 / np.sqrt(np.float64(rv) + 1e-5)
    want = np.asarray(dy, np.float64) * (4.0 * r)
    assert np.isfinite(dx).all()
    np.testing.assert_allclose(dx, want, rtol=4 * np.finfo(dtype).eps)
    np.testing.assert_array_equal(dx[:, 1], (np.asarray(r[1], dtype) * (dy[:, 1] * w[1])).astype(dtype))


@pytest.mark.parametrize("case", ["batch", "batch_spatial", "layer", "group", "rms"])
def test_ordinary_groups_keep_their_bits_beside_a_large_one(case):
    """Only the groups whose dx (or the parameter entries whose sums) overflowed are computed again."""
    dtype = np.float32
    kind, x, w, b, big = _problem(case, dtype, seed=4)
    rng = np.random.default_rng(5)
    dy = rng.standard_normal(x.shape).astype(dtype)
    plain = _optkern_grads(kind, x, w, b, dy)
    dy2 = dy.copy()
    if kind == "batch":  # channel 0 large
        dy2[:, 0] = big[:, 0]
        keep = (slice(None), slice(1, None))
    else:  # sample / row 0 large
        dy2[0] = big[0]
        keep = (slice(1, None),)
        if kind == "rms":  # (x of dy's sign: Σ g x̂ passes the max, RMS norm having no Σ g)
            x[0] = np.abs(x[0]) * np.sign(dy2[0])
            plain = _optkern_grads(kind, x, w, b, dy)
    got = _optkern_grads(kind, x, w, b, dy2)
    assert np.isfinite(got[0]).all()
    np.testing.assert_array_equal(got[0][keep], plain[0][keep])
    if kind == "batch":  # (the other channels' parameter sums: their plain bits)
        for g, p in zip(got[1:], plain[1:]):
            np.testing.assert_array_equal(g[1:], p[1:])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite_dy_stays_nan_and_true_overflow_stays_inf(dtype):
    """Beside a row redone: a NaN or inf dy keeps the plain result (not finite); a dγ, dβ past the max is
    ±inf of the exact sum's sign, the others finite."""
    top = float(np.finfo(dtype).max)
    x = np.tile(np.array([1.0, -1.0, 0.0, 2.0, -2.0, 0.5], dtype), (6, 1))
    dy = np.tile(np.array([0.3, -0.2, 0.1, 0.0, 0.5, 0.4], dtype), (6, 1))
    dy[0, 0], dy[1, 1] = np.nan, np.inf
    dy[2:, 3] = 0.9 * top  # column 3: x̂ = 1.47 in every row: Σ dy x̂, Σ dy past the max
    dy[2, :3] = 0.9 * top  # row 2's Σ g: past the max, its exact dx in range
    _, s = on.layer_norm(x, (6,))
    dx, dw, db = on.layer_norm_backward(dy, x, None, s)
    assert np.isnan(dx[0]).all() and not np.isfinite(dx[1]).any() and np.isfinite(dx[2:]).all()
    assert dw[3] == np.inf and db[3] == np.inf
    assert np.isnan(dw[0]) and np.isnan(db[0]) and not np.isfinite(dw[1]) and db[1] == np.inf  # (rows 0, 1)
    assert np.isfinite(dw[[2, 4, 5]]).all() and np.isfinite(db[[2, 4, 5]]).all()
    want = _torch_grads("layer", x[2:], np.ones(6), np.zeros(6), dy[2:], KBIG[dtype])
    _close(dx[2:], want[0], dtype, "dx", in_range=dx[2:].size)


@pytest.mark.parametrize("case", ["batch", "batch_spatial", "layer", "group"])
def test_the_redo_is_the_same_for_any_thread_count(case):
    """Many large groups in a problem big enough for the parallel loops (OPTKERN_SERIAL_BELOW, conftest)."""
    dtype = np.float32
    rng = np.random.default_rng(7)
    shape = {"batch": (1024, 48), "batch_spatial": (256, 8, 24), "layer": (512, 96), "group": (64, 8, 96)}[case]
    kind = "batch" if case == "batch_spatial" else case
    x = (3.0 * rng.standard_normal(shape)).astype(dtype)
    C = shape[1] if kind in ("batch", "group") else shape[-1]
    w = rng.uniform(0.7, 1.0, C).astype(dtype)
    b = np.zeros(C, dtype)
    dy = (rng.uniform(-0.3, 0.3, shape) * BIG[dtype]).astype(dtype)
    out = []
    before = optkern.get_num_threads()
    try:
        for t in (1, 2):
            optkern.set_num_threads(t)
            out.append(_optkern_grads(kind, x, w, b, dy, groups=4))
    finally:
        optkern.set_num_threads(before)
    assert np.isfinite(out[0][0]).all()
    for a, c in zip(out[0], out[1]):
        np.testing.assert_array_equal(a, c)
