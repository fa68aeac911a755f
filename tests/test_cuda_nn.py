"""CUDA nn / Hessian kernels against the CPU module on the same inputs.

Skips (with the reason) without CuPy, without the CUDA module or without a device.
"""

import numpy as np
import pytest

from gpu import require_gpu
from optkern import _backend

cp, _ = require_gpu()

from optkern import hessian  # noqa: E402
from optkern.nn import ACTIVATIONS, MLP, activation  # noqa: E402
from optkern.nn.losses import xent_forward, xent_rop  # noqa: E402

TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 7, 1023, 100003])
@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_activation_cuda_matches_cpu(kind, n, dtype):
    z = (np.random.default_rng(n).standard_normal(n) * 3).astype(dtype)
    want = activation(kind, z, order=2)
    got = activation(kind, cp.asarray(z), order=2)
    for g, w in zip(got, want):
        assert isinstance(g, cp.ndarray)
        np.testing.assert_allclose(cp.asnumpy(g), w, **TOL[dtype])


@pytest.mark.parametrize("dtype, big", [(np.float32, 1e30), (np.float64, 1e200)])
def test_activation_limits_far_out_on_the_gpu(dtype, big):
    """The CPU's limits (test_nn_kernels.py::test_activation_limits_far_out) with CUDA's exp and tanh:
    f, f', f'' exactly 0, +-1 or z where e^z underflows and z^2 overflows."""
    z = np.array([-big, -1000.0, 1000.0, big], dtype)
    for kind in ("tanh", "sigmoid", "softplus", "gelu"):
        want = activation(kind, z, order=2)
        for order, (g, w) in enumerate(zip(activation(kind, cp.asarray(z), order=2), want)):
            np.testing.assert_array_equal(cp.asnumpy(g), w, err_msg=f"{kind} f^({order})")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(0, 3), (1, 1), (7, 5), (257, 1023)])
def test_xent_cuda_matches_cpu(shape, dtype):
    rng = np.random.default_rng(shape[0])
    z = (rng.standard_normal(shape) * 3).astype(dtype)
    y = rng.integers(0, shape[1], shape[0])
    r = rng.standard_normal(shape).astype(dtype)
    kw = dict(label_smoothing=0.1, confidence_penalty=0.2, scale=0.5)
    want = xent_forward(z, y, **kw)
    got = xent_forward(cp.asarray(z), cp.asarray(y), **kw)
    for g, w in zip(got, want):
        np.testing.assert_allclose(cp.asnumpy(g), w, **TOL[dtype])
    np.testing.assert_allclose(
        cp.asnumpy(xent_rop(got[1], cp.asarray(r), confidence_penalty=0.2)),
        xent_rop(want[1], r, confidence_penalty=0.2),
        **TOL[dtype],
    )


@pytest.mark.parametrize("passes", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,k", [(1, 0), (7, 3), (5000, 17), (300001, 40)])
def test_lanczos_orthogonalize_cuda_matches_cpu(n, k, dtype, passes):
    rng = np.random.default_rng(n)
    m = max(k, 1)
    Q = (
        np.ascontiguousarray(np.linalg.qr(rng.standard_normal((n, m)))[0].T).astype(dtype)
        if n >= m
        else np.ones((m, n), dtype)
    )
    w = rng.standard_normal(n).astype(dtype)
    wc, cc = w.copy(), np.zeros(m)
    bc = _backend.cpu.lanczos_orthogonalize_(Q, k, wc, cc, passes)
    wg, cg = cp.asarray(w), cp.zeros(m)
    bg = _backend.cuda_module().lanczos_orthogonalize_(cp.asarray(Q), k, wg, cg, passes)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert abs(bg - bc) <= tol * bc
    np.testing.assert_allclose(cp.asnumpy(wg), wc, rtol=tol, atol=tol)
    np.testing.assert_allclose(cp.asnumpy(cg)[:k], cc[:k], rtol=tol, atol=tol)
    # Deterministic: the same call twice is bitwise equal.
    wg2, cg2 = cp.asarray(w), cp.zeros(m)
    assert _backend.cuda_module().lanczos_orthogonalize_(cp.asarray(Q), k, wg2, cg2, passes) == bg
    assert bool((wg2 == wg).all())


@pytest.mark.parametrize("norm", [None, "batch", "layer"])
def test_mlp_cuda_matches_cpu(norm):
    model = MLP([12, 40, 32, 6], activation="gelu", norm=norm, dtype=np.float64, label_smoothing=0.1)
    rng = np.random.default_rng(0)
    p = model.init_params(0) + 0.1 * rng.standard_normal(model.num_params)
    x, y, v = rng.standard_normal((64, 12)), rng.integers(0, 6, 64), rng.standard_normal(model.num_params)
    P, X, Y, V = (cp.asarray(a) for a in (p, x, y, v))
    lc, gc = model.loss_and_grad(p, x, y)
    lg, gg = model.loss_and_grad(P, X, Y)
    np.testing.assert_allclose(float(lg), float(lc), rtol=1e-12)
    np.testing.assert_allclose(cp.asnumpy(gg), gc, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(cp.asnumpy(model.hvp(P, X, Y, V)), model.hvp(p, x, y, v), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(cp.asnumpy(model.ggn_vp(P, X, Y, V)), model.ggn_vp(p, x, y, v), rtol=1e-10, atol=1e-13)


def test_estimators_cuda_match_cpu():
    model = MLP([12, 40, 32, 6], activation="tanh", dtype=np.float64)
    rng = np.random.default_rng(0)
    p = model.init_params(0) + 0.1 * rng.standard_normal(model.num_params)
    x, y = rng.standard_normal((64, 12)), rng.integers(0, 6, 64)
    op_c = hessian.from_mlp(model, p, x, y)
    op_g = hessian.from_mlp(model, cp.asarray(p), cp.asarray(x), cp.asarray(y))
    assert not hasattr(op_g, "_rmatmat") or isinstance(op_g, hessian.CurvatureOperator)
    np.testing.assert_allclose(
        hessian.top_eigenvalues(op_g, 3).eigenvalues, hessian.top_eigenvalues(op_c, 3).eigenvalues, rtol=1e-8
    )
    tc, tg = hessian.trace(op_c, num_matvecs=20, seed=1), hessian.trace(op_g, num_matvecs=20, seed=1)
    np.testing.assert_allclose(tg.estimate, tc.estimate, rtol=1e-9)  # same probes on CPU and GPU
    dc = hessian.spectral_density(op_c, steps=30, grid=100, seed=2)
    dg = hessian.spectral_density(op_g, steps=30, grid=100, seed=2)
    np.testing.assert_allclose(dg.nodes, dc.nodes, rtol=1e-7, atol=1e-9)
    # fixed=True: each batch's forward pass once, on the device; the same products as the live operator
    pg = cp.asarray(p)
    live = hessian.from_mlp(model, pg, cp.asarray(x), cp.asarray(y), kind="ggn")
    fixed = hessian.from_mlp(model, pg, cp.asarray(x), cp.asarray(y), kind="ggn", fixed=True)
    v = cp.asarray(rng.standard_normal(model.num_params))
    for _ in range(2):
        np.testing.assert_array_equal(cp.asnumpy(fixed.matvec(v)), cp.asnumpy(live.matvec(v)))
    V = cp.asarray(rng.standard_normal((model.num_params, 3)))
    np.testing.assert_array_equal(cp.asnumpy(fixed.matmat(V)), cp.asnumpy(live.matmat(V)))


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("shape", [(0, 5), (1, 7), (7, 1), (33, 1023), (1024, 512)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_norm_rop_cuda_matches_cpu(shape, axis, dtype):
    from optkern import _cpu

    rng = np.random.default_rng(shape[0] + 7 * shape[1] + axis)
    N, D = shape
    G = D if axis == 0 else N
    f = lambda *s: rng.standard_normal(s).astype(dtype)
    h, rh, dy, rdy = f(N, D), f(N, D), f(N, D), f(N, D)
    mean, rstd = f(G), (1 + np.abs(f(G))).astype(dtype)
    w, vw, vb = f(D), f(D), f(D)

    def run(mod, xp, a):
        ins = [xp.asarray(t) for t in (h, mean, rstd, rh, w, vw, vb, dy, rdy)]
        H, M, R, RH, W, VW, VB, DY, RDY = ins
        ry, rx, mx = xp.full((N, D), np.nan, dtype), xp.full((N, D), np.nan, dtype), xp.full(G, np.nan, dtype)
        mod.norm_rop_fwd(H, M, R, RH, W, VW, VB, ry, rx, mx, a)
        dh, rdh = xp.full((N, D), np.nan, dtype), xp.full((N, D), np.nan, dtype)
        pw, pb = xp.full(D, np.nan, dtype), xp.full(D, np.nan, dtype)
        mod.norm_rop_bwd(H, M, R, DY, RDY, W, VW, rx, mx, dh, rdh, pw, pb, a)
        return [np.asarray(t.get() if xp is cp else t) for t in (ry, rx, mx, dh, rdh, pw, pb)]

    want = run(_cpu, np, axis)
    got = run(_backend.cuda_module(), cp, axis)
    rel = 1e-4 if dtype == np.float32 else 1e-11  # summation orders differ
    for g, c in zip(got, want):
        assert np.array_equal(np.isnan(g), np.isnan(c))
        ok = ~np.isnan(c)
        if ok.any():
            assert np.abs(g[ok] - c[ok]).max() <= rel * max(1.0, np.abs(c[ok]).max())
