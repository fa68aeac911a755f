"""Defects found in optkern.norm by the 31st hunt, each with a test that failed before its fix.

Weight norm with small magnitudes: the backward formed s = Σ dw v in the dtype, which underflows
where dg = s / ‖v‖ and dv = (g / ‖v‖)(dw - s v / ‖v‖²) are in range (float64 v ~ 1e-200, dw ~
1e-200: s = 0, dg = 0 and dv of the wrong sign), and the forward divided by a subnormal ‖v‖ that
kept few digits (float64 v = [5e-324, 5e-324]: w = [g, g] where g [0.71, 0.71]). References: the
formulas in 60-digit decimal arithmetic on the (exact) input values.
"""

import decimal
import warnings

import numpy as np
import pytest

from optkern import norm

_D = decimal.Decimal


def _wn_ref(v, g, dw):
    """(w, dg, dv) of one row in 60-digit decimal arithmetic, rounded to float64."""
    with decimal.localcontext() as ctx:
        ctx.prec = 60
        vv = [_D(float(a)) for a in v]
        dd = [_D(float(a)) for a in dw]
        gg = _D(float(g))
        n = sum(a * a for a in vv).sqrt()
        s = sum(a * b for a, b in zip(dd, vv))
        w = np.array([float(gg * a / n) for a in vv])
        dv = np.array([float(gg / n * (d - s / (n * n) * a)) for d, a in zip(dd, vv)])
        return w, float(s / n), dv


@pytest.mark.parametrize(
    "dtype, v, dw",
    [
        (np.float64, [3e-200, 4e-200], [1e-200, 2e-200]),  # s = 1.1e-399: 0 (was dg = 0, dv = [0.2, 0.4])
        (np.float32, [3e-20, 4e-20], [1e-25, 2e-25]),  # s subnormal: ~2 digits (was dv 8-15 % off)
        (np.float64, [1.5e-323, 2e-323, 0.0], [1e-300, 1e-300, 1e-300]),  # g / ‖v‖ = inf (was dv = inf)
    ],
)
def test_weight_norm_backward_where_sum_dw_v_underflows(dtype, v, dw):
    v, dw, g = np.array([v], dtype), np.array([dw], dtype), np.array([1.0], dtype)
    _, saved = norm.weight_norm(v, g, dim=0)
    dg, dv = norm.weight_norm_backward(dw, v, g, saved)
    _, dg_ref, dv_ref = _wn_ref(v[0], g[0], dw[0])
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(dg[0], dg_ref, rtol=rtol)
    np.testing.assert_allclose(dv[0], dv_ref, rtol=rtol, atol=rtol * np.abs(dv_ref).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weight_norm_of_subnormal_rows(dtype):
    """Rows of subnormal v (norm subnormal): w and the gradients to the dtype's precision."""
    sub = np.finfo(dtype).smallest_subnormal
    v = np.array([[1, 1, 0], [2, -3, 1], [5, 7, -11]], dtype) * sub
    g = np.array([1.0, 0.5, 2.0], dtype)
    dw = np.array([[1, -2, 3], [4, 5, -6], [-7, 8, 9]], dtype) * dtype(1e-3)
    w, saved = norm.weight_norm(v, g, dim=0)
    dg, dv = norm.weight_norm_backward(dw, v, g, saved)
    rtol = 1e-12 if dtype == np.float64 else 2e-6
    for r in range(3):
        w_ref, dg_ref, dv_ref = _wn_ref(v[r], g[r], dw[r])
        np.testing.assert_allclose(w[r], w_ref, rtol=rtol, atol=0)
        np.testing.assert_allclose(dg[r], dg_ref, rtol=rtol)
        if np.abs(dv_ref).max() < np.finfo(dtype).max:  # (else dv overflows, as it must)
            np.testing.assert_allclose(dv[r], dv_ref, rtol=rtol, atol=rtol * np.abs(dv_ref).max())


@pytest.mark.parametrize(
    "dtype, v, dw, g",
    [
        # dv overflows (as it must: ~1e314) and the redo of that row took ‖v‖ 2^-b from an unscaled
        # subnormal v: ‖v‖ 2^-b = 0, dg = inf (exact -1.2e5)
        (np.float64, [1e-309, -2e-309, 3e-309], [1e5, 2e5, -1e5], 1.0),
        (np.float32, [1e-39, -2e-39, 3e-39], [1e3, 2e3, -1e3], 1.0),
        # g / ‖v‖ finite, s / ‖v‖² not: dv in range, from the subnormal ‖v‖
        (np.float64, [1e-309, -2e-309, 3e-309], [1e3, 2e3, -1e3], 1e-10),
    ],
)
def test_weight_norm_backward_of_a_subnormal_norm_with_large_dw(dtype, v, dw, g):
    v, dw, g = np.array([v], dtype), np.array([dw], dtype), np.array([g], dtype)
    _, saved = norm.weight_norm(v, g, dim=0)
    with np.errstate(over="ignore"):
        dg, dv = norm.weight_norm_backward(dw, v, g, saved)
    _, dg_ref, dv_ref = _wn_ref(v[0], g[0], dw[0])
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(dg[0], dg_ref, rtol=rtol)
    big = np.abs(dv_ref) > np.finfo(dtype).max
    assert np.all(np.isinf(dv[0][big]))
    np.testing.assert_allclose(dv[0][~big], dv_ref[~big], rtol=rtol, atol=rtol * np.abs(dv_ref[~big]).max(initial=0))


def test_weight_norm_backward_of_zero_gradient_rows_is_zero():
    """A row of dw = 0 (s = 0, now the rescaled path) still gives dg = 0 and dv = 0 exactly."""
    rng = np.random.default_rng(0)
    v = rng.standard_normal((4, 5)) * 1e3
    g = rng.random(4) + 0.5
    dw = rng.standard_normal((4, 5))
    dw[1] = 0
    dw[3] = 0
    _, saved = norm.weight_norm(v, g, dim=0)
    dg, dv = norm.weight_norm_backward(dw, v, g, saved)
    assert np.all(dg[[1, 3]] == 0) and np.all(dv[[1, 3]] == 0)
    for r in (0, 2):
        _, dg_ref, dv_ref = _wn_ref(v[r], g[r], dw[r])
        np.testing.assert_allclose(dg[r], dg_ref, rtol=1e-12)
        np.testing.assert_allclose(dv[r], dv_ref, rtol=1e-10, atol=1e-13)


# ---- eps past float32's max ---------------------------------------------------------------------
#
# float32 input keeps float32 statistics: an eps past float32's max became inf in the row kernels
# (layer / RMS / group / instance norm: y = bias, rstd 0, and numpy's overflow warning in eval
# batch norm) but stayed finite in the channel kernels (batch norm, instance norm with running
# buffers: y ~ 1e-20 x), so one call gave two answers. Refused naming eps, before any write, as an
# eps that rounds to 0 there is (and as the optimizers refuse a hyper-parameter not finite in their
# dtype); float64 input takes it.


def _eps_calls(x, out, rm, rv):
    return {
        "layer_norm": lambda eps: norm.layer_norm(x, 5, eps=eps, out=out),
        "rms_norm": lambda eps: norm.rms_norm(x, 5, eps=eps, out=out),
        "group_norm": lambda eps: norm.group_norm(x, 3, eps=eps, out=out),
        "instance_norm": lambda eps: norm.instance_norm(x, eps=eps, out=out),
        "instance_norm_running": lambda eps: norm.instance_norm(x, None, None, rm, rv, eps=eps, out=out),
        "batch_norm": lambda eps: norm.batch_norm(x, None, None, rm, rv, eps=eps, out=out),
        "batch_norm_eval": lambda eps: norm.batch_norm(x, None, None, rm, rv, training=False, eps=eps, out=out),
    }


_FNS = list(_eps_calls(None, None, None, None))
_F32_MAX = float(np.finfo(np.float32).max)


@pytest.mark.parametrize("fn", _FNS)
@pytest.mark.parametrize("eps", [1e39, 1e300, _F32_MAX + 2.0**103])  # (the last: the first double rounding to inf)
def test_float32_eps_past_the_max_is_refused_before_any_write(fn, eps):
    x = np.random.default_rng(0).standard_normal((4, 3, 5)).astype(np.float32)
    out = np.full(x.shape, 7.0, np.float32)
    rm, rv = np.full(3, 0.5, np.float32), np.full(3, 2.0, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (numpy's "overflow encountered in cast" was one)
        with pytest.raises(ValueError, match=r"^eps: .* overflows float32"):
            _eps_calls(x, out, rm, rv)[fn](eps)
    assert np.all(out == 7.0) and np.all(rm == 0.5) and np.all(rv == 2.0)


@pytest.mark.parametrize("fn", _FNS)
@pytest.mark.parametrize("eps", [_F32_MAX, float(np.nextafter(_F32_MAX + 2.0**103, 0.0))])  # (both round to max)
def test_float32_takes_an_eps_that_rounds_to_its_max(fn, eps):
    x = np.random.default_rng(0).standard_normal((4, 3, 5)).astype(np.float32)
    out = np.full(x.shape, 7.0, np.float32)
    _eps_calls(x, out, np.zeros(3, np.float32), np.ones(3, np.float32))[fn](eps)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("fn", _FNS)
def test_float64_takes_an_eps_past_float32s_max(fn):
    x = np.random.default_rng(0).standard_normal((4, 3, 5))
    out = np.empty_like(x)
    y, _ = _eps_calls(x, out, np.zeros(3), np.ones(3))[fn](1e39)
    assert y is out and np.isfinite(out).all() and np.abs(out).max() > 0  # (x̂ ~ 1e-20, not 0)


# ---- modules given a torch tensor ------------------------------------------------------------------
#
# The functional forms take a CPU torch tensor (its NumPy view); the modules compared str(x.dtype)
# with their dtype first and refused it with "x: expected float32 (this BatchNorm's dtype), got
# torch.float32". Now they view it as the functional forms do.


def _modules():
    return {
        "BatchNorm": (lambda: norm.BatchNorm(4), (3, 4, 5)),
        "LayerNorm": (lambda: norm.LayerNorm(5), (3, 4, 5)),
        "GroupNorm": (lambda: norm.GroupNorm(2, 4), (3, 4, 5)),
        "RMSNorm": (lambda: norm.RMSNorm(5), (3, 4, 5)),
    }


@pytest.mark.parametrize("name", list(_modules()))
def test_modules_take_a_torch_tensor_as_the_functional_forms_do(name):
    torch = pytest.importorskip("torch")
    make, shape = _modules()[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    ours, theirs = make(), make()
    y_ref, dx_ref = ours(x), ours.backward(dy)
    y = theirs(torch.from_numpy(x.copy()).requires_grad_(True))
    dx = theirs.backward(torch.from_numpy(dy))
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(dx, dx_ref)
    for a, b in zip(theirs.grads(), ours.grads()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match=r"^x: expected float32 .*, got float64$"):
        make()(torch.from_numpy(x.astype(np.float64)))
