"""hessian.cg's iteration inside the Gauss-Newton product (issue 17: a CG iteration within 10 % of one
product at batch 128).

``hessian.from_mlp(..., kind="ggn")`` on one batch tells ``p.G p`` after its R-forward pass, before the
backward pass forms ``G p``; the solve then takes ``alpha`` there and the backward pass hands each slice
of ``G p`` to ``_cpu.cg_update_slice_`` (x, r and the slice's r.r while the slice is in cache), ``G p``
never written out as a vector. Checked: which kernels run, the iterates against the unfused solve (the
first iteration's x and r bit for bit, then to rounding) and a float64 NumPy CG, the exits (negative
curvature, convergence, the curvature's overflow named), the slice kernel against NumPy on odd sizes
and its refusals (nothing written), and the operators that keep the unfused path."""

import numpy as np
import pytest

from optkern import _cpu, hessian
from optkern.nn import MLP


def _mlp(loss="cross_entropy", batch=48, dtype=np.float32, norm=None, seed=0, penalty=0.0):
    model = MLP([13, 11, 4], activation="tanh", dtype=dtype, loss=loss, norm=norm, confidence_penalty=penalty)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 13)).astype(dtype)
    y = rng.integers(0, 4, batch) if loss == "cross_entropy" else rng.standard_normal((batch, 4)).astype(dtype)
    return model, model.init_params(seed), x, y


def _counting(monkeypatch, names):
    calls = dict.fromkeys(names, 0)
    for name in names:
        fn = getattr(_cpu, name)
        monkeypatch.setattr(_cpu, name, lambda *a, _f=fn, _n=name: (calls.__setitem__(_n, calls[_n] + 1), _f(*a))[1])
    return calls


def _pair(model, p, x, y, fixed=False):
    """(the operator, one like it that keeps the unfused iteration: cg_iteration_known_)."""
    G = hessian.from_mlp(model, p, x, y, kind="ggn", fixed=fixed)
    U = hessian.from_mlp(model, p, x, y, kind="ggn", fixed=fixed)
    U._quad_then = None
    return G, U


def _dense(G, n):
    return np.stack([G.matvec(e).astype(np.float64) for e in np.eye(n, dtype=G.dtype)], axis=1)


def _cg64(A, b, iters):
    """Plain CG in float64 (the independent reference)."""
    x, r = np.zeros_like(b), b.copy()
    p, rr = r.copy(), float(r @ r)
    for _ in range(iters):
        Ap = A @ p
        alpha = rr / float(p @ Ap)
        x += alpha * p
        r -= alpha * Ap
        rr, rr_old = float(r @ r), rr
        p = r + (rr / rr_old) * p
    return x


@pytest.mark.parametrize("damping", [0.0, 1e-2])
@pytest.mark.parametrize(
    "loss, fixed, norm", [("cross_entropy", False, None), ("mse", False, None), ("cross_entropy", True, None),
                          ("cross_entropy", False, "layer"), ("mse", True, "batch")]
)  # fmt: skip
def test_the_update_runs_inside_the_product(monkeypatch, damping, loss, fixed, norm):
    model, p, x, y = _mlp(loss, norm=norm)
    G, U = _pair(model, p, x, y, fixed)
    b = np.random.default_rng(3).standard_normal(G.shape[0]).astype(np.float32)
    calls = _counting(monkeypatch, ["cg_iteration_", "cg_iteration_known_", "cg_update_slice_"])
    res = hessian.cg(G, b, rtol=0.0, maxiter=12, damping=damping)
    slices = 2 * model.num_layers + (2 if norm else 0)  # W and b of each layer, gamma and beta
    assert calls == {"cg_iteration_": 0, "cg_iteration_known_": 0, "cg_update_slice_": 12 * slices}
    assert res.num_matvecs == 12 and G.num_matvecs == 12 and res.iterations == 12
    ref = hessian.cg(U, b, rtol=0.0, maxiter=12, damping=damping)
    assert calls["cg_iteration_known_"] == 12 and calls["cg_update_slice_"] == 12 * slices
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-3, atol=1e-4 * np.abs(ref.x).max())
    np.testing.assert_allclose(res.residual_norm, ref.residual_norm, rtol=1e-2)
    # against float64 CG on the dense damped matrix (the same float32 products, formed column by column)
    A = _dense(G, G.shape[0]) + damping * np.eye(G.shape[0])
    x64 = _cg64((A + A.T) / 2, b.astype(np.float64), 12)
    assert np.linalg.norm(res.x - x64) <= 1.5 * np.linalg.norm(ref.x - x64) + 1e-4 * np.linalg.norm(x64)


@pytest.mark.parametrize("damping", [0.0, 0.3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_first_iteration_is_the_unfused_ones_bits(damping, dtype):
    # the same y (G p's values), the same alpha from the same p.G p: x and r the same bits; only r.r is
    # summed in other chunks (slices), so the later directions agree to rounding
    model, p, x, y = _mlp(batch=40, dtype=dtype, seed=1)
    G, U = _pair(model, p, x, y)
    b = np.random.default_rng(4).standard_normal(G.shape[0]).astype(dtype)
    res = hessian.cg(G, b, rtol=0.0, maxiter=1, damping=damping)
    ref = hessian.cg(U, b, rtol=0.0, maxiter=1, damping=damping)
    np.testing.assert_array_equal(res.x, ref.x)
    np.testing.assert_array_equal(res.residual, ref.residual)
    assert res.residual_norm == pytest.approx(ref.residual_norm, rel=1e-12 if dtype == np.float64 else 1e-6)


def test_float64_solve_meets_float64_cg():
    model, p, x, y = _mlp(batch=30, dtype=np.float64, seed=2)
    G, _ = _pair(model, p, x, y)
    n = G.shape[0]
    b = np.random.default_rng(5).standard_normal(n)
    A = _dense(G, n) + 0.05 * np.eye(n)
    res = hessian.cg(G, b, rtol=1e-10, maxiter=4 * n, damping=0.05)
    assert res.info == 0
    np.testing.assert_allclose(res.x, np.linalg.solve((A + A.T) / 2, b), rtol=1e-7, atol=1e-8)


def test_converged_exit_and_callback_as_unfused():
    model, p, x, y = _mlp(batch=32, dtype=np.float64, seed=6)
    G, U = _pair(model, p, x, y)
    b = np.random.default_rng(6).standard_normal(G.shape[0])
    seen, seen_ref = [], []
    res = hessian.cg(G, b, rtol=1e-3, damping=0.1, callback=seen.append)
    ref = hessian.cg(U, b, rtol=1e-3, damping=0.1, callback=seen_ref.append)
    assert res.info == ref.info == 0 and res.iterations == ref.iterations == len(seen) == len(seen_ref)
    np.testing.assert_allclose(seen, seen_ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(res.direction, ref.direction, rtol=1e-8, atol=1e-10)


def test_negative_curvature_exit_as_unfused():
    # a confidence penalty makes the "Gauss-Newton" of the penalized loss indefinite
    for seed in range(40):
        model, p, x, y = _mlp(batch=20, dtype=np.float64, seed=seed, penalty=3.0)
        G, U = _pair(model, p, x, y)
        b = np.random.default_rng(seed).standard_normal(G.shape[0])
        ref = hessian.cg(U, b, rtol=0.0, maxiter=60)
        if ref.info == -1:
            break
    else:
        pytest.fail("no seed gave negative curvature")
    res = hessian.cg(G, b, rtol=0.0, maxiter=60)
    assert res.info == -1 and res.negative_curvature and res.iterations == ref.iterations
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(res.direction, ref.direction, rtol=1e-8, atol=1e-10)
    # the stop declined: the solve goes on through it, as the unfused one does
    res = hessian.cg(G, b, rtol=0.0, maxiter=ref.iterations + 2, stop_on_negative_curvature=False)
    ref = hessian.cg(U, b, rtol=0.0, maxiter=ref.iterations + 2, stop_on_negative_curvature=False)
    assert res.info == ref.info and res.iterations == ref.iterations
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-6, atol=1e-8)


def test_damping_overflow_named_as_unfused():
    # p.(G + damping I) p past float64's range: known after the forward pass, the backward pass skipped
    model, p, x, y = _mlp(batch=16, dtype=np.float64, seed=7)
    G, U = _pair(model, p, x, y)
    b = np.ones(G.shape[0])
    msgs = []
    for op in (G, U):
        with pytest.raises(ValueError, match="^damping: 1e\\+308 makes the curvature") as err:
            hessian.cg(op, b, damping=1e308, maxiter=3)
        msgs.append(str(err.value))
    assert msgs[0] == msgs[1]


def test_progress_is_reported_by_the_fused_product():
    model, p, x, y = _mlp(batch=16, seed=8)
    seen = []
    G = hessian.from_mlp(model, p, x, y, kind="ggn", progress=lambda d, t: seen.append((d, t)))
    assert G._quad_then is not None
    hessian.cg(G, np.ones(G.shape[0], np.float32), rtol=0.0, maxiter=3)
    assert seen == [(1, 1)] * 3


def test_operators_that_keep_the_unfused_iteration():
    model, p, x, y = _mlp(batch=40)
    assert hessian.from_mlp(model, p, x, y, kind="ggn")._quad_then is not None
    assert hessian.from_mlp(model, p, x, y, kind="ggn", fixed=True)._quad_then is not None
    assert hessian.from_mlp(model, p, x, y, kind="hessian")._quad_then is None
    assert hessian.from_mlp(model, p, x, y, kind="ggn", block="layer1")._quad_then is None
    two = [(x[:20], y[:20]), (x[20:], y[20:])]  # (G p a weighted sum over batches: not complete by slices)
    assert hessian.from_mlp(model, p, batches=two, kind="ggn")._quad_then is None
    assert hessian.from_hvp(lambda v: 2.0 * v, 4, np.float32)._quad_then is None


def test_the_product_alone_is_unchanged():
    model, p, x, y = _mlp(batch=24, norm="layer", seed=9)
    v = np.random.default_rng(9).standard_normal(model.num_params).astype(np.float32)
    gv, q = model._ggn_vp_quad(p, x, y, v)
    np.testing.assert_array_equal(gv, model.ggn_vp(p, x, y, v))
    got = np.full(model.num_params, np.nan, np.float32)

    def then(form):
        assert form == q
        return lambda lo, values, transposed: got.__setitem__(
            slice(lo, lo + values.size), (values.T if transposed else values).ravel()
        )

    assert model._ggn_vp_quad(p, x, y, v, then=then) == (None, q)
    np.testing.assert_array_equal(got, gv)  # every slice handed over, with G v's values
    assert model._ggn_vp_quad(p, x, y, v, then=lambda form: None) == (None, q)  # (no backward pass)


# ---- the slice kernel ----


def _ref_update(x, r, p, y, alpha, damping):
    t = x.dtype.type
    ap = y + t(damping) * p if damping else y
    xn, rn = x + t(alpha) * p, r - t(alpha) * ap
    return xn, rn, float(np.dot(rn.astype(np.float64), rn.astype(np.float64)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(0, 3), (1, 1), (7, 1), (1, 7), (33, 17), (784, 40)])
@pytest.mark.parametrize("damping", [0.0, 0.125])
def test_update_slice_matches_numpy(dtype, shape, damping):
    rng = np.random.default_rng(10)
    n = shape[0] * shape[1]
    x, r, p = (rng.standard_normal(n).astype(dtype) for _ in range(3))
    t = rng.standard_normal(shape).astype(dtype)  # (cols, rows): the slice is t.T in C order
    xn, rn, rr = _ref_update(x, r, p, np.ascontiguousarray(t.T).ravel(), 0.375, damping)
    for transposed, y in ((True, t), (False, np.ascontiguousarray(t.T).ravel())):
        xa, ra = x.copy(), r.copy()
        got = _cpu.cg_update_slice_(xa, ra, p, y, 0.375, damping, transposed)
        np.testing.assert_array_equal(xa, xn)  # (the rule's fma-free form: NumPy's two roundings)
        np.testing.assert_array_equal(ra, rn)
        assert got == pytest.approx(rr, rel=1e-13, abs=0.0)


def test_update_slice_sum_is_thread_count_free():
    rng = np.random.default_rng(11)
    t = rng.standard_normal((784, 300)).astype(np.float32)
    x, r, p = (rng.standard_normal(t.size).astype(np.float32) for _ in range(3))
    from optkern import limit_threads

    outs = []
    for threads in (1, 2):
        with limit_threads(threads):
            xa, ra = x.copy(), r.copy()
            outs.append((_cpu.cg_update_slice_(xa, ra, p, t, 0.5, 0.01, True), xa, ra))
    assert outs[0][0] == outs[1][0]
    np.testing.assert_array_equal(outs[0][1], outs[1][1])
    np.testing.assert_array_equal(outs[0][2], outs[1][2])


def test_update_slice_refusals_write_nothing():
    rng = np.random.default_rng(12)
    x, r, p = (rng.standard_normal(12).astype(np.float32) for _ in range(3))
    x0, r0 = x.copy(), r.copy()
    cases = [
        ((x, r, p, np.zeros(11, np.float32), 1.0, 0.0, False), ValueError, "^y: expected shape"),
        ((x, r, p, np.zeros((3, 5), np.float32), 1.0, 0.0, True), ValueError, "^y: expected a 2-D array of 12"),
        ((x, r, p, np.zeros(12, np.float32), 1.0, 0.0, True), ValueError, "^y: expected a 2-D array of 12"),
        ((x, r, p, np.zeros(12, np.float64), 1.0, 0.0, False), (TypeError, ValueError), "^y"),
        ((x, r, p, np.zeros((4, 3), np.float32).T, 1.0, 0.0, True), (TypeError, ValueError), "^y"),
        ((x, r, p, np.zeros(12, np.float32), float("nan"), 0.0, False), ValueError, "^alpha"),
        ((x, r, p, np.zeros(12, np.float32), 1.0, float("inf"), False), ValueError, "^damping"),
        ((x, r, p, x, 1.0, 0.0, False), ValueError, "share|overlap"),
        ((x, r, x, np.zeros(12, np.float32), 1.0, 0.0, False), ValueError, "share|overlap"),
    ]
    ro = x.copy()
    ro.flags.writeable = False
    cases.append(((ro, r, p, np.zeros(12, np.float32), 1.0, 0.0, False), ValueError, "^x"))
    for args, err, match in cases:
        with pytest.raises(err, match=match):
            _cpu.cg_update_slice_(*args)
        np.testing.assert_array_equal(x, x0)
        np.testing.assert_array_equal(r, r0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_direction_sum_is_direction_then_its_squares(dtype):
    rng = np.random.default_rng(13)
    n = 70_001
    p, z = (rng.standard_normal(n).astype(dtype) for _ in range(2))
    q, p0 = p.copy(), p.astype(np.float64)
    pp = _cpu.cg_direction_sum_(p, z, 0.7)
    _cpu.cg_direction_(q, z, 0.7)
    np.testing.assert_array_equal(p, q)
    assert pp == _cpu.cg_curvature(q, q, 0.0)
    # Against float64 NumPy (independent of the kernels above): p = z + beta p0, beta rounded to the
    # dtype as the kernel takes it, within half an ulp of |z| + |beta p0| (fused or not); pp = p . p.
    beta = float(dtype(0.7))
    z64 = z.astype(np.float64)
    want = z64 + beta * p0
    eps = np.finfo(dtype).eps
    assert np.all(np.abs(p - want) <= eps * (np.abs(z64) + np.abs(beta * p0)))
    q64 = q.astype(np.float64)
    # (summed in double for both dtypes: measured <= 4 float64 ulps over 20 seeds; 1e-12 leaves room for
    # any order of the 70001 terms, and is 1e5 times under a float32 sum's error)
    assert abs(pp - q64 @ q64) <= 1e-12 * (q64 @ q64)
    with pytest.raises(ValueError, match="^beta"):
        _cpu.cg_direction_sum_(p, z, float("inf"))
    np.testing.assert_array_equal(p, q)
