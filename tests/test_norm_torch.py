"""Cross-checks against torch.nn.functional (skipped without torch)."""

import numpy as np
import pytest

from optkern import norm

torch = pytest.importorskip("torch", reason="torch is not installed")
F = torch.nn.functional


def t(a):
    return torch.from_numpy(np.array(a, copy=True)).requires_grad_(True)


def grads(out, dy, *inputs):
    out.backward(torch.from_numpy(dy))
    return [None if i is None else i.grad.numpy() for i in inputs]


@pytest.mark.parametrize("shape", [(16, 5), (4, 3, 17), (2, 8, 7, 9)])
def test_batch_norm(shape):
    rng = np.random.default_rng(0)
    C = shape[1]
    x = rng.standard_normal(shape)
    w, b = rng.standard_normal(C), rng.standard_normal(C)
    dy = rng.standard_normal(shape)
    rm, rv = np.zeros(C), np.ones(C)
    trm, trv = torch.zeros(C, dtype=torch.float64), torch.ones(C, dtype=torch.float64)
    y, s = norm.batch_norm(x, w, b, rm, rv, training=True, momentum=0.2, eps=1e-4)
    tx, tw, tb = t(x), t(w), t(b)
    ty = F.batch_norm(tx, trm, trv, tw, tb, training=True, momentum=0.2, eps=1e-4)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(rm, trm.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(rv, trv.numpy(), rtol=1e-12)
    gx, gw, gb = grads(ty, dy, tx, tw, tb)
    dx, dw, db = norm.batch_norm_backward(dy, x, w, s)
    np.testing.assert_allclose(dx, gx, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(dw, gw, rtol=1e-10, atol=1e-11)
    np.testing.assert_allclose(db, gb, rtol=1e-10, atol=1e-11)
    # eval with the updated running statistics
    y2, _ = norm.batch_norm(
        x.astype(np.float32),
        w.astype(np.float32),
        b.astype(np.float32),
        rm.astype(np.float32),
        rv.astype(np.float32),
        training=False,
    )
    ty2 = F.batch_norm(
        torch.from_numpy(x.astype(np.float32)),
        trm.float(),
        trv.float(),
        torch.from_numpy(w.astype(np.float32)),
        torch.from_numpy(b.astype(np.float32)),
        training=False,
    )
    np.testing.assert_allclose(y2, ty2.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape,ns", [((7, 33), (33,)), ((2, 3, 4, 5), (4, 5)), ((1, 1023), (1023,))])
def test_layer_norm_and_rms_norm(shape, ns):
    rng = np.random.default_rng(1)
    x, dy = rng.standard_normal(shape) + 1, rng.standard_normal(shape)
    w, b = rng.standard_normal(ns), rng.standard_normal(ns)
    tx, tw, tb = t(x), t(w), t(b)
    ty = F.layer_norm(tx, ns, tw, tb, eps=1e-5)
    y, s = norm.layer_norm(x, ns, w, b, eps=1e-5)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    gx, gw, gb = grads(ty, dy, tx, tw, tb)
    dx, dw, db = norm.layer_norm_backward(dy, x, w, s)
    for a, b_ in ((dx, gx), (dw, gw), (db, gb)):
        np.testing.assert_allclose(a, b_, rtol=1e-9, atol=1e-11)
    tx, tw = t(x), t(w)
    ty = F.rms_norm(tx, ns, tw)  # default eps: finfo(float64).eps
    y, s = norm.rms_norm(x, ns, w)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    gx, gw = grads(ty, dy, tx, tw)
    dx, dw = norm.rms_norm_backward(dy, x, w, s)
    np.testing.assert_allclose(dx, gx, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(dw, gw, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("shape,G", [((2, 6, 5), 3), ((1, 32, 7, 9), 8), ((3, 4, 1), 2)])
def test_group_norm(shape, G):
    rng = np.random.default_rng(2)
    C = shape[1]
    x, dy = rng.standard_normal(shape) * 2, rng.standard_normal(shape)
    w, b = rng.standard_normal(C), rng.standard_normal(C)
    tx, tw, tb = t(x), t(w), t(b)
    ty = F.group_norm(tx, G, tw, tb, eps=1e-5)
    y, s = norm.group_norm(x, G, w, b, eps=1e-5)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    gx, gw, gb = grads(ty, dy, tx, tw, tb)
    dx, dw, db = norm.group_norm_backward(dy, x, w, s)
    for a, b_ in ((dx, gx), (dw, gw), (db, gb)):
        np.testing.assert_allclose(a, b_, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("use_input_stats", [True, False])
def test_instance_norm(use_input_stats):
    rng = np.random.default_rng(3)
    shape = (3, 4, 6, 5)
    x, dy = rng.standard_normal(shape) + 0.5, rng.standard_normal(shape)
    w, b = rng.standard_normal(4), rng.standard_normal(4)
    rm, rv = rng.standard_normal(4), 1 + rng.random(4)
    trm, trv = torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy())
    tx, tw, tb = t(x), t(w), t(b)
    ty = F.instance_norm(tx, trm, trv, tw, tb, use_input_stats=use_input_stats, momentum=0.3, eps=1e-5)
    y, s = norm.instance_norm(x, w, b, rm, rv, use_input_stats=use_input_stats, momentum=0.3, eps=1e-5)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(rm, trm.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(rv, trv.numpy(), rtol=1e-9, atol=1e-12)
    gx, gw, gb = grads(ty, dy, tx, tw, tb)
    dx, dw, db = norm.instance_norm_backward(dy, x, w, s)
    for a, b_ in ((dx, gx), (dw, gw), (db, gb)):
        np.testing.assert_allclose(a, b_, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("shape,dim", [((5, 7), 0), ((4, 3, 3), 0), ((6, 9), 1)])
def test_weight_norm(shape, dim):
    rng = np.random.default_rng(4)
    v = rng.standard_normal(shape)
    g = rng.standard_normal(tuple(s if i == dim else 1 for i, s in enumerate(shape)))
    dw = rng.standard_normal(shape)
    tv, tg = t(v), t(g)
    tw = torch._weight_norm(tv, tg, dim)  # w = g v / ||v|| (torch.nn.utils.weight_norm's formula)
    w, s = norm.weight_norm(v, g, dim=dim)
    np.testing.assert_allclose(w, tw.detach().numpy(), rtol=1e-12, atol=1e-14)
    gv, gg = grads(tw, dw, tv, tg)
    dg, dv = norm.weight_norm_backward(dw, v, g, s)
    np.testing.assert_allclose(dv, gv, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dg, gg, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "dtype,std", [(np.float32, 0.0), (np.float32, 1e-2)] + [(np.float64, s) for s in (0.0, 1e-2, 1e-4, 1e-6)]
)
def test_instance_norm_running_var_of_small_spreads(dtype, std):
    """torch's running_var (the unbiased variance from its moments): exactly 0 for constant instances,
    where 1 / rstd² - eps gave -1.2e-12 in float32; torch's float32 sums are 1e-3 off at std 1e-6, so
    below 1e-2 float64 alone (tests/test_norm_running.py has float32 against float64)."""
    rng = np.random.default_rng(17)
    x = (1.0 + std * rng.standard_normal((3, 2, 64))).astype(dtype)
    rm, rv = np.zeros(2, dtype), np.ones(2, dtype)
    trm, trv = torch.zeros(2, dtype=torch.from_numpy(x).dtype), torch.ones(2, dtype=torch.from_numpy(x).dtype)
    norm.instance_norm(x, running_mean=rm, running_var=rv, momentum=0.5, eps=1e-3)
    F.instance_norm(torch.from_numpy(x), trm, trv, use_input_stats=True, momentum=0.5, eps=1e-3)
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(rm, trm.numpy(), rtol=tol)
    if std == 0.0:
        np.testing.assert_array_equal(rv, trv.numpy())  # 0.5: (1 - momentum) 1 + momentum 0
    else:
        np.testing.assert_allclose(rv, trv.numpy(), rtol=tol)


@pytest.mark.parametrize(
    "v,g,dw", [([1e-40, 2e-40], 1e-30, [1.0, 1.0]), ([1e-9, 2e-9], 1e-5, [1e30, 1e30])], ids=["subnormal", "large-dw"]
)
def test_weight_norm_backward_where_s_over_norm_squared_overflows(v, g, dw):
    """float32 rows where s / ‖v‖² overflows (dv was -inf for both elements): torch's float64 autograd on
    the same values (torch's float32 itself gives NaN / -inf here)."""
    v32, g32, dw32 = np.array([v], np.float32), np.array([g], np.float32), np.array([dw], np.float32)
    _, s = norm.weight_norm(v32, g32)
    dg, dv = norm.weight_norm_backward(dw32, v32, g32, s)
    tv, tg = t(v32.astype(np.float64)), t(g32.astype(np.float64))
    gv, gg = grads(torch._weight_norm(tv, tg, 0), dw32.astype(np.float64), tv, tg)
    assert np.isfinite(gv).all()
    # (a subnormal ‖v‖ = 2.2e-40, saved in float32, keeps about 17 bits: 6e-6 relative, times dv's cancellation)
    rtol = 5e-5 if v[0] < 1e-38 else 2e-6
    np.testing.assert_allclose(dv, gv, rtol=rtol)
    np.testing.assert_allclose(dg, gg, rtol=rtol)
