"""CUDA L-BFGS, SAM and CG passes (cuda/lbfgs.cu, cuda/sam.cu, cuda/cg.cu) against float64 references,
and optim.LBFGS, optim.SAM, hessian.cg and optim.NewtonCG on CuPy arrays against the same on NumPy.

The element passes round where rules/second_order.hpp says (an explicit fma, or a product and a sum
each rounded, whatever nvcc would contract), so the vectors they write are the CPU's and NumPy's bits:
the move, the SAM step, the CG updates and the L-BFGS direction are compared bit for bit. Sums are in
float64 in the GPU's block order, so they (and whatever follows from them) are compared with float64
references or the CPU within rounding.
"""

import numpy as np
import pytest

from gpu import require_gpu

cp, K = require_gpu()

from optkern import _backend, hessian, optim  # noqa: E402

EPS64 = np.finfo(np.float64).eps
CPU = _backend.cpu


def _dev(a):
    return cp.array(a)  # a copy: the host array stays the reference


def _host(a):
    return cp.asnumpy(a)


def _f(a):
    return np.asarray(a, dtype=np.float64)


# ---- L-BFGS kernels --------------------------------------------------------------------------------

# (n, k): one block, odd sizes, several column blocks; 9M: the push's 512-block cap (8192-column
# segments grow past it from 4.2M); 17M: the direction's 1024-block cap (4096-column segments
# grow past it from 4.2M).
# k = 120, 121, 241: one full table of rows per launch, one more row, two tables and one row
SMALL_SIZES = [(1, 0), (7, 3), (1023, 5), (70001, 4), (70001, 9), (7, 120), (1023, 121), (257, 241)]
LBFGS_SIZES = SMALL_SIZES + [(9_000_001, 2), (17_000_003, 1)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("save", [True, False])
def test_lbfgs_move_over_many_params_is_one_launch_of_the_right_slices(dtype, save):
    """lbfgs_move_ over params of odd sizes (slices of the flat x and d at unaligned offsets, an
    empty param, more params than one launch table holds): the CPU's bits (one fma, as torch's
    add_(d, alpha=t); tests/test_lbfgs.py checks those against the exact rounding)."""
    rng = np.random.default_rng(701)
    sizes = [0, 1, 7, 1023, 3, 70_001] + [5] * 300
    hp = [rng.standard_normal(n).astype(dtype) for n in sizes]
    n = sum(sizes)
    hx, hd = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    ps, x, d = [_dev(a) for a in hp], _dev(hx), _dev(hd)
    K.lbfgs_move_(ps, x, d, 0.375, save)
    start = np.concatenate([a for a in hp]) if save else hx
    if save:
        np.testing.assert_array_equal(_host(x), start)  # x = p first
    cpu = [a.copy() for a in hp]
    CPU.lbfgs_move_(cpu, hx.copy(), hd, 0.375, save)
    np.testing.assert_array_equal(np.concatenate([_host(a) for a in ps]), np.concatenate(cpu))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,k", LBFGS_SIZES)
def test_lbfgs_push_direction_move_stats_against_float64(n, k, dtype):
    if n > 1_000_000 and dtype == np.float64:
        pytest.skip("the block caps are covered in float32")
    rng = np.random.default_rng(n + k)
    S = [rng.standard_normal(n).astype(dtype) for _ in range(k)]
    Y = [rng.standard_normal(n).astype(dtype) for _ in range(k)]
    g, pg, d = (rng.standard_normal(n).astype(dtype) for _ in range(3))
    Sd, Yd = [_dev(s) for s in S], [_dev(y) for y in Y]
    gd, pgd, dd = _dev(g), _dev(pg), _dev(d)
    sn, yn = cp.empty(n, dtype), cp.empty(n, dtype)
    out = cp.full(5 * k + 4, np.nan)
    t = 0.37
    K.lbfgs_push_(Sd, Yd, sn, yn, gd, pgd, dd, t, out)
    sn_h, yn_h = _host(sn), _host(yn)
    np.testing.assert_array_equal(yn_h, g - pg)  # one rounding each: the same bits as NumPy
    np.testing.assert_array_equal(sn_h, (dtype(t) * d).astype(dtype))
    np.testing.assert_array_equal(_host(pgd), g)
    pairs = []
    for j in range(k):
        pairs += [(sn_h, Y[j]), (yn_h, S[j]), (yn_h, Y[j]), (g, S[j]), (g, Y[j])]
    pairs += [(yn_h, sn_h), (yn_h, yn_h), (g, sn_h), (g, yn_h)]
    want = np.array([_f(a) @ _f(b) for a, b in pairs])
    size = np.array([np.abs(_f(a)) @ np.abs(_f(b)) for a, b in pairs])
    # products of float32 values are exact in float64 (float64: one rounding), then float64 sums
    assert np.all(np.abs(_host(out) - want) <= (n + 1) * EPS64 * size + 1e-300)

    cs, cy = rng.standard_normal(k), rng.standard_normal(k)
    dir_d, o2 = cp.empty(n, dtype), cp.full(2, np.nan)
    K.lbfgs_direction_(Sd, Yd, list(cs), list(cy), gd, -0.8, dir_d, o2)
    dh = _host(dir_d)
    ref = -0.8 * _f(g) + sum(cy[j] * _f(Y[j]) + cs[j] * _f(S[j]) for j in range(k))
    scale = 0.8 * np.abs(_f(g)) + sum(abs(cy[j]) * np.abs(_f(Y[j])) + abs(cs[j]) * np.abs(_f(S[j])) for j in range(k))
    # accumulated in the array type, row by row, two fmas per row: each term sees at most 2 k + 1
    # roundings -- and the CPU's order, so its bits
    assert np.all(np.abs(dh - ref) <= (2 * k + 2) * np.finfo(dtype).eps * scale)
    dc = np.empty(n, dtype)
    CPU.lbfgs_direction_(S, Y, list(cs), list(cy), g, -0.8, dc, np.empty(2))
    np.testing.assert_array_equal(dh, dc)
    got = _host(o2)
    np.testing.assert_allclose(got[0], _f(g) @ _f(dh), rtol=1e-10)
    assert got[1] == np.max(np.abs(dh))  # a max is exact

    x = cp.empty(n, dtype)
    p = _dev(pg)  # any start
    K.lbfgs_move_([p], x, dir_d, 0.25, True)  # x = p, p = p + t d
    np.testing.assert_array_equal(_host(x), pg)
    pc, xc = pg.copy(), np.empty(n, dtype)
    CPU.lbfgs_move_([pc], xc, dh, 0.25, True)
    np.testing.assert_array_equal(_host(p), pc)
    K.lbfgs_move_([p], x, dir_d, -0.5, False)  # p = x - 0.5 d
    CPU.lbfgs_move_([pc], xc, dh, -0.5, False)
    np.testing.assert_array_equal(_host(p), pc)

    st = cp.full(2, np.nan)
    K.lbfgs_stats(gd, st)
    st = _host(st)
    assert st[0] == (np.max(np.abs(g)) if n else 0.0)
    np.testing.assert_allclose(st[1], np.sum(np.abs(_f(g))), rtol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lbfgs_kernels_are_deterministic_and_match_the_cpu(dtype):
    rng = np.random.default_rng(5)
    n, k = 300001, 6
    S = [rng.standard_normal(n).astype(dtype) for _ in range(k)]
    Y = [rng.standard_normal(n).astype(dtype) for _ in range(k)]
    g, d = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    runs = []
    for _ in range(2):
        out, o2, dir_d = cp.empty(5 * k + 4), cp.empty(2), cp.empty(n, dtype)
        Sd, Yd, gd = [_dev(s) for s in S], [_dev(y) for y in Y], _dev(g)
        K.lbfgs_push_(Sd, Yd, cp.empty(n, dtype), cp.empty(n, dtype), gd, cp.zeros(n, dtype), _dev(d), 0.5, out)
        K.lbfgs_direction_(Sd, Yd, [0.1] * k, [-0.2] * k, gd, -1.0, dir_d, o2)
        runs.append((_host(out).tobytes(), _host(o2).tobytes(), _host(dir_d).tobytes()))
    assert runs[0] == runs[1]
    out_c, o2_c, dir_c = np.empty(5 * k + 4), np.empty(2), np.empty(n, dtype)
    CPU.lbfgs_push_(S, Y, np.empty(n, dtype), np.empty(n, dtype), g, np.zeros(n, dtype), d, 0.5, out_c)
    CPU.lbfgs_direction_(S, Y, [0.1] * k, [-0.2] * k, g, -1.0, dir_c, o2_c)
    # the CPU sums float32 in float32 lanes within 32768-column sub-blocks: its own error dominates
    rtol = 1e-4 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(np.frombuffer(runs[0][0]), out_c, rtol=rtol, atol=rtol * np.sqrt(n))
    np.testing.assert_array_equal(np.frombuffer(runs[0][2], dtype), dir_c)  # the rule's order on both
    np.testing.assert_allclose(np.frombuffer(runs[0][1]), o2_c, rtol=1e-6 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lbfgs_adjacent_buffers_are_not_overlaps(dtype):
    """Regression: lbfgs_stats counted g's bytes as 8-byte items (g's span 8x too long), so a stats
    buffer allocated right after g was refused; push rounded float32 vectors up to 8 bytes."""
    m = 1001
    buf = cp.zeros(m + 2)
    g = buf[:m] if dtype == np.float64 else buf[:m].view(np.float32)  # 2m float32
    g[...] = cp.arange(g.size, dtype=dtype) - 7
    out = buf[m:]
    K.lbfgs_stats(g, out)
    np.testing.assert_allclose(_host(out), [g.size - 8, float(np.sum(np.abs(np.arange(g.size) - 7.0)))])
    with pytest.raises(ValueError, match="shares memory"):
        K.lbfgs_stats(g, buf[m - 1 : m + 1])  # a real overlap is still refused
    n = 7  # odd: float32 rows of 28 bytes
    rows = cp.zeros((2, n), dtype)
    S, Y = [cp.ones(n, dtype)], [cp.ones(n, dtype)]
    gd, pg, dd = cp.ones(n, dtype), cp.zeros(n, dtype), cp.ones(n, dtype)
    K.lbfgs_push_(S, Y, rows[0], rows[1], gd, pg, dd, 0.5, cp.empty(9))
    np.testing.assert_array_equal(_host(rows), [[0.5] * n, [1.0] * n])


# ---- SAM kernels ----------------------------------------------------------------------------------


@pytest.mark.parametrize("adaptive", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sizes", [[0], [1], [7, 1023], [70001, 3], [5_000_003, 33, 0, 65537]])
def test_sam_perturb_and_restore_kernels(dtype, sizes, adaptive):
    rng = np.random.default_rng(sum(sizes))
    w = [rng.standard_normal(n).astype(dtype) for n in sizes]
    gs = [rng.standard_normal(n).astype(dtype) for n in sizes]
    ps, gd = [_dev(a) for a in w], [_dev(a) for a in gs]
    bk = [cp.full(n, 7, dtype) for n in sizes]
    out = cp.zeros(1)
    K.sam_perturb_(ps, gd, bk, 0.2, 1e-12, out, adaptive)  # the norm stays on the device
    nrm = float(_host(out)[0])
    want = np.sqrt(sum(np.sum(((_f(wi) if adaptive else 1.0) * _f(g)) ** 2) for wi, g in zip(w, gs)))
    assert abs(nrm - want) <= 1e-12 * max(want, 1.0)
    scale = dtype(0.2 / (nrm + 1e-12))
    for p, wi, g, b in zip(ps, w, gs, bk):
        np.testing.assert_array_equal(_host(b), wi)
        # NumPy's rounding: product, then sum (ASAM: the reference's ((w * w) * g) * scale, then sum)
        np.testing.assert_array_equal(_host(p), wi + ((wi * wi) * g) * scale if adaptive else wi + scale * g)
    K.sam_restore_(ps, bk)
    for p, wi in zip(ps, w):
        assert _host(p).tobytes() == wi.tobytes()


def test_sam_rho_zero_keeps_the_params_bitwise():
    w = np.array([-0.0, 1.5, -2.25, 0.0], np.float32)
    p, b = _dev(w), cp.full(4, 9, np.float32)
    K.sam_perturb_([p], [_dev(np.array([np.nan, 1, 2, 3], np.float32))], [b], 0.0, 1e-12, cp.zeros(1))
    assert _host(p).tobytes() == w.tobytes() and _host(b).tobytes() == w.tobytes()


# ---- CG kernels -----------------------------------------------------------------------------------

CG_SIZES = [0, 1, 7, 1023, 32768 + 129, 3 * 32768 + 5, 4_000_037]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", CG_SIZES)
def test_cg_kernels_against_numpy(dtype, n):
    rng = np.random.default_rng(n)
    x, r, p, y, z = (rng.standard_normal(n).astype(dtype) for _ in range(5))
    damping, alpha = 0.37, -1.25
    ad = _f(y + damping * p)  # the damped product in the dtype, as NumPy rounds it; float64 sums
    xd, rd, pd, yd = _dev(x), _dev(r), _dev(p), _dev(y)
    assert K.cg_curvature(pd, yd, damping) == pytest.approx(float(_f(p) @ ad), rel=1e-12, abs=1e-13 * n)
    assert K.cg_curvature(pd, yd, 0.0) == pytest.approx(float(_f(p) @ _f(y)), rel=1e-12, abs=1e-13 * n)
    rr = K.cg_update_(xd, rd, pd, yd, alpha, damping)
    # NumPy's loop, each product and each sum rounded in the dtype: bit for bit
    np.testing.assert_array_equal(_host(xd), x + alpha * p)
    np.testing.assert_array_equal(_host(rd), r - alpha * (y + damping * p))
    rh = _f(_host(rd))
    assert rr == pytest.approx(float(rh @ rh), rel=1e-10, abs=1e-300)
    zd = _dev(z)
    K.cg_direction_(pd, zd, 0.75)
    np.testing.assert_array_equal(_host(pd), z + 0.75 * p)


def test_cg_kernels_refuse_what_the_cpu_refuses():
    v = [cp.ones(8) for _ in range(4)]
    with pytest.raises(ValueError, match="x"):
        K.cg_update_(v[0].reshape(2, 4), v[1], v[2], v[3], 1.0, 0.0)
    with pytest.raises(ValueError, match="shares memory"):
        K.cg_update_(v[0], v[0], v[2], v[3], 1.0, 0.0)
    with pytest.raises(ValueError, match="beta"):
        K.cg_direction_(v[0], v[1], float("inf"))
    with pytest.raises(TypeError, match="y"):
        K.cg_curvature(v[0], cp.ones(8, np.float32), 0.0)


@pytest.mark.parametrize("which", ["x", "d"])
def test_lbfgs_move_refuses_what_the_cpu_refuses(which):
    """A 2-D x or d of the right size: refused by name on both, nothing written."""
    for mod, xp in ((CPU, np), (K, cp)):
        p = [xp.zeros(8)]
        x, d = xp.ones(8), xp.ones(8)
        bad = {"x": x, "d": d}
        bad[which] = bad[which].reshape(2, 4)
        with pytest.raises(ValueError, match=rf"^{which}: expected shape"):
            mod.lbfgs_move_(p, bad["x"], bad["d"], 0.5, True)
        assert float(abs(p[0]).max()) == 0.0


# ---- the Python classes on CuPy -------------------------------------------------------------------


def _quadratic(xp, sizes, dtype, seed=0, cond=10.0):
    """fg(params) -> (loss, grads) of sum_i a_i p_i^2 / 2 - c_i p_i, a_i in [1, cond]."""
    rng = np.random.default_rng(seed)
    a = [xp.asarray(rng.uniform(1.0, cond, s).astype(dtype)) for s in sizes]
    c = [xp.asarray(rng.standard_normal(s).astype(dtype)) for s in sizes]

    def fg(ps):
        loss = sum(float(0.5 * (ai * p * p).sum() - (ci * p).sum()) for ai, ci, p in zip(a, c, ps))
        return loss, [ai * p - ci for ai, ci, p in zip(a, c, ps)]

    return fg


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lbfgs_on_cupy_follows_numpy(line_search_fn, dtype):
    sizes = [(3, 7), (5000,)]
    runs = []
    for xp in (np, cp):
        # ill-conditioned and few iterations: far from converged, so no stopping test is borderline
        fg = _quadratic(xp, sizes, dtype, cond=100.0)
        ps = [xp.zeros(s, dtype) for s in sizes]
        lr = 1.0 if line_search_fn else 0.02
        opt = optim.LBFGS(ps, lr=lr, max_iter=4, history_size=3, line_search_fn=line_search_fn)
        losses = [opt.step(lambda ps=ps, fg=fg: fg(ps)) for _ in range(3)]
        runs.append(([_host(p) if xp is cp else p for p in ps], losses, opt.state["func_evals"]))
    (pc, lc, ec), (pg, lg, eg) = runs
    assert ec > 3 and lc[-1] < lc[0]  # it moved
    assert ec == eg or dtype == np.float32  # float32: a line-search test may fall the other way
    rtol = 1e-9 if dtype == np.float64 else 1e-3
    np.testing.assert_allclose(lg, lc, rtol=rtol)
    for a, b in zip(pg, pc):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)


def test_sam_on_cupy_follows_numpy():
    sizes = [(5,), (3, 4), (70001,)]
    res = []
    for xp in (np, cp):
        fg = _quadratic(xp, sizes, np.float64, seed=1)
        ps = [xp.ones(s) for s in sizes]
        opt = optim.SAM(optim.SGD(ps, lr=0.05, momentum=0.9), rho=0.1)
        for _ in range(3):
            opt.step(lambda ps=ps, fg=fg: fg(ps))
        res.append(([_host(p) if xp is cp else p for p in ps], opt.grad_norm))
    (pc, nc), (pg, ng) = res
    assert ng == pytest.approx(nc, rel=1e-12) and nc > 0
    for a, b in zip(pg, pc):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_sam_rho_zero_on_cupy_is_the_wrapped_optimizer_bit_for_bit():
    sizes = [(5,), (1001,)]
    fg = _quadratic(cp, sizes, np.float32, seed=2)
    a = [cp.linspace(-1, 1, int(np.prod(s)), dtype=np.float32).reshape(s) for s in sizes]
    b = [x.copy() for x in a]
    plain = optim.Adam(a, lr=1e-2)
    sam = optim.SAM(optim.Adam(b, lr=1e-2), rho=0.0)
    for _ in range(3):
        plain.step(fg(a)[1])
        sam.step(lambda: fg(b))
    for x, y in zip(a, b):
        assert _host(x).tobytes() == _host(y).tobytes()


def _spd(n, seed, lo=1.0, hi=10.0):
    rng = np.random.default_rng(seed)
    Q = np.linalg.qr(rng.standard_normal((n, n)))[0]
    return (Q * rng.uniform(lo, hi, n)) @ Q.T


def test_hessian_cg_on_cupy():
    n = 40
    A = _spd(n, 3)
    b = np.random.default_rng(3).standard_normal(n)
    lam = 0.3
    want = np.linalg.solve(A + lam * np.eye(n), b)
    Ad, bd = cp.asarray(A), cp.asarray(b)
    for kw in ({}, {"precond_diag": cp.asarray(np.diag(A) + lam)}):
        res = hessian.cg(Ad, bd, rtol=1e-10, damping=lam, maxiter=500, **kw)
        assert res.info == 0 and isinstance(res.x, cp.ndarray)
        np.testing.assert_allclose(_host(res.x), want, rtol=1e-7, atol=1e-9)
        host = hessian.cg(A, b, rtol=1e-10, damping=lam, maxiter=500, **{k: _host(v) for k, v in kw.items()})
        assert abs(res.iterations - host.iterations) <= 1
    warm = hessian.cg(Ad, bd, cp.asarray(want), rtol=1e-6, damping=lam)
    assert warm.iterations == 0
    rng = np.random.default_rng(4)
    Q = np.linalg.qr(rng.standard_normal((10, 10)))[0]
    indefinite = (Q * np.r_[-2.0, -0.5, np.linspace(1, 5, 8)]) @ Q.T
    res = hessian.cg(cp.asarray(indefinite), cp.asarray(rng.standard_normal(10)), rtol=1e-12)
    assert res.info == -1 and res.negative_curvature
    d = _host(res.direction)
    assert d @ indefinite @ d <= 0


def test_newton_cg_on_cupy_solves_a_quadratic_in_one_step():
    n = 20
    A, c = _spd(n, 7), np.random.default_rng(7).standard_normal(n)
    Ad, cd = cp.asarray(A), cp.asarray(c)
    x = cp.zeros(n)
    opt = optim.NewtonCG(
        [x],
        hessian.from_hvp(lambda v: Ad @ v, n, xp=cp),
        damping=1e-10,
        min_damping=1e-14,
        max_cg_iter=n,
        cg_tol=1e-13,
    )
    opt.step(lambda: (float(0.5 * x @ Ad @ x - cd @ x), Ad @ x - cd))
    np.testing.assert_allclose(_host(x), np.linalg.solve(A, c), rtol=1e-9, atol=1e-11)
    assert opt.last["accepted"]
