"""The CUDA norm and dropout kernels on the edge cases fixed on both (the rules of rules/norm.hpp are
shared): a dropped NaN / inf stays NaN, rows whose x - mean overflows, weight_norm_backward where
s / ‖v‖² overflows, instance norm's running variance of constant instances, empty inputs. Against
the CPU module (skipped without CuPy / the CUDA module / a device; tools/cuda_emu runs it on the CPU).
"""

import numpy as np
import pytest

from gpu import require_gpu, same_bits
from optkern import norm

cp, _ = require_gpu()

DTYPES = [np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_keeps_a_dropped_nan_or_inf_visible(dtype):
    x = np.array([np.nan, np.inf, -np.inf, 1.5, -0.0] * 50, dtype)
    y, mask = norm.dropout(x, 0.4, seed=3, offset=7, return_mask=True)
    yg, mg = norm.dropout(cp.asarray(x), 0.4, seed=3, offset=7, return_mask=True)
    same_bits(cp.asnumpy(mg), mask, "mask")
    same_bits(cp.asnumpy(yg), y, "y")
    assert np.isnan(y[(mask == 0) & ~np.isfinite(x)]).all()
    same_bits(cp.asnumpy(norm.dropout_backward(cp.asarray(x), 0.4, seed=3, offset=7)), y, "dx")


def _rows(dtype):
    big = 3e38 if dtype == np.float32 else 1.7e308
    return np.array([[big, big, -big, 0.5 * big], [1e30, -2e30, 3e29, 7e29], [1.0, 2.0, -3.0, 0.25]], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fn", ["layer_norm", "batch_norm", "batch_norm_spatial", "group_norm", "instance_norm"])
def test_rows_whose_deviation_overflows(dtype, fn):
    rows = _rows(dtype)
    dy = np.array([[1.0, 0.0, 0.0, -2.0], [0.5, 1.0, -1.0, 2.0], [1.0, -1.0, 0.5, 0.0]], dtype)
    if fn == "layer_norm":
        x, d = rows, dy
        fwd, bwd = (lambda a: norm.layer_norm(a, 4)), norm.layer_norm_backward
    elif fn == "batch_norm":
        x, d = np.ascontiguousarray(rows.T), np.ascontiguousarray(dy.T)
        fwd, bwd = norm.batch_norm, norm.batch_norm_backward
    elif fn == "batch_norm_spatial":
        x, d = (np.ascontiguousarray(a.reshape(3, 2, 2).transpose(1, 0, 2)) for a in (rows, dy))
        fwd, bwd = norm.batch_norm, norm.batch_norm_backward
    else:
        x, d = rows.reshape(3, 1, 4), dy.reshape(3, 1, 4)
        fwd = (lambda a: norm.group_norm(a, 1)) if fn == "group_norm" else norm.instance_norm
        bwd = norm.group_norm_backward if fn == "group_norm" else norm.instance_norm_backward
    y, s = fwd(x)
    dx = bwd(d, x, None, s)[0]
    yg, sg = fwd(cp.asarray(x))
    dxg = bwd(cp.asarray(d), cp.asarray(x), None, sg)[0]
    assert np.isfinite(y).all() and np.isfinite(dx).all()
    tol = 2e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(cp.asnumpy(yg), y, rtol=tol, atol=tol)
    np.testing.assert_allclose(cp.asnumpy(dxg), dx, rtol=tol, atol=16 * float(np.finfo(dtype).smallest_subnormal))


@pytest.mark.parametrize(
    "dtype,v,g,dw",
    [
        (np.float32, [1e-40, 2e-40], 1e-30, [1.0, 1.0]),
        (np.float32, [1e-9, 2e-9], 1e-5, [1e30, 1e30]),
        (np.float64, [1e-160, 2e-160], 1e-150, [1e160, 1e160]),
    ],
)
def test_weight_norm_backward_where_s_over_norm_squared_overflows(dtype, v, g, dw):
    v2, g1, dw2 = np.array([v], dtype), np.array([g], dtype), np.array([dw], dtype)
    _, s = norm.weight_norm(v2, g1)
    dg, dv = norm.weight_norm_backward(dw2, v2, g1, s)
    _, sg = norm.weight_norm(cp.asarray(v2), cp.asarray(g1))
    dgg, dvg = norm.weight_norm_backward(cp.asarray(dw2), cp.asarray(v2), cp.asarray(g1), sg)
    assert np.isfinite(dv).all() and np.sign(dv[0, 0]) != np.sign(dv[0, 1])
    np.testing.assert_allclose(cp.asnumpy(dvg), dv, rtol=1e-5 if dtype == np.float32 else 1e-13)
    np.testing.assert_allclose(cp.asnumpy(dgg), dg, rtol=1e-5 if dtype == np.float32 else 1e-13)


@pytest.mark.parametrize("dtype", DTYPES)
def test_instance_norm_running_var_of_constant_instances_is_zero(dtype):
    x = cp.full((2, 3, 8), 3.0, dtype=dtype)
    rm, rv = cp.zeros(3, dtype=dtype), cp.ones(3, dtype=dtype)
    norm.instance_norm(x, running_mean=rm, running_var=rv, momentum=1.0, eps=0.1)
    assert (cp.asnumpy(rv) == 0).all() and (cp.asnumpy(rm) == 3).all()


@pytest.mark.parametrize("shape", [(2, 4, 0), (0, 4, 3), (0, 4)])
def test_empty_inputs(shape):
    x = cp.zeros(shape, dtype=cp.float32)
    rm, rv = cp.full(4, 0.5, dtype=cp.float32), cp.full(4, 2.0, dtype=cp.float32)
    for train in (True, False):
        y, s = norm.batch_norm(x, None, None, rm, rv, training=train)
        assert y.shape == shape
        dx, dw, db = norm.batch_norm_backward(x, x, None, s)
        assert dx.shape == shape and not cp.asnumpy(dw).any() and not cp.asnumpy(db).any()
    if len(shape) == 3:
        assert norm.group_norm(x, 2)[0].shape == shape
        assert norm.instance_norm(x, None, None, rm, rv)[0].shape == shape
        assert norm.instance_norm(x, None, None, rm, rv, use_input_stats=False)[0].shape == shape
    assert (cp.asnumpy(rm) == 0.5).all() and (cp.asnumpy(rv) == 2.0).all()
