"""hessian.cg's fused iteration (cpp/cg.cpp ``cg_iteration_``: curvature, update and direction in one
call, one parallel region) against the three separate passes it replaces, bit for bit and for any
thread count; what it skips (negative curvature, a non-finite step, convergence, a non-finite beta)
left unwritten; bad input refused before anything is written; and ``hessian.cg`` making one native
call and no fresh pages per iteration (issue 17: a CG iteration's overhead over one product)."""

import math
import resource

import numpy as np
import pytest

import optkern
from optkern import _backend, hessian

K = _backend.cpu
SIZES = [0, 1, 7, 1023, 65536 + 129, 3 * 65536 + 5]


def _state(n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x, r, p, y = (rng.standard_normal(n).astype(dtype) for _ in range(4))
    return x, r, p, y


def _three_passes(x, r, p, y, rz, damping, tol, stop, K=K):
    """The loop of hessian.cg before the fusion (no preconditioner): the reference (``K``: the
    native module whose three passes it runs; the CUDA tests pass theirs)."""
    pAp = K.cg_curvature(p, y, damping)
    if not math.isfinite(pAp) or (not pAp > 0.0 and stop):
        return pAp, math.nan
    alpha = rz / pAp if pAp != 0.0 else math.inf
    if not math.isfinite(alpha):
        return pAp, math.nan
    rr = K.cg_update_(x, r, p, y, alpha, damping)
    if not math.sqrt(rr) <= tol and math.isfinite(rr / rz):
        K.cg_direction_(p, r, rr / rz)
    return pAp, rr


def _same(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        if isinstance(u, np.ndarray):
            np.testing.assert_array_equal(u, v)
        else:
            assert u == v or (math.isnan(u) and math.isnan(v)), (u, v)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("damping", [0.0, 0.37])
def test_fused_iteration_is_the_three_passes(dtype, n, damping):
    for tol in (0.0, 1e300):  # a direction taken / convergence: p left as it was
        ref = _state(n, dtype)
        got = [v.copy() for v in ref]
        want = _three_passes(*ref, 2.5, damping, tol, True)
        have = K.cg_iteration_(*got, 2.5, damping, tol, True)
        _same(list(want) + list(ref), list(have) + got)


@pytest.mark.parametrize("case", ["negative", "negative-go-on", "zero", "nan", "inf-beta"])
def test_what_the_fused_iteration_skips(case):
    n = 2 * 65536 + 3
    x, r, p, y = _state(n, np.float32, seed=3)
    stop, rz = True, 2.0
    if case.startswith("negative"):
        y = -np.abs(p) * 1.5
        stop = case == "negative"
    elif case == "zero":
        y = np.zeros_like(p)
        stop = False
    elif case == "nan":
        y[17] = np.nan
    else:  # beta = rr / rz overflows: cg refuses it through cg_direction_, so p must be untouched
        rz = 1e-320
    ref = [v.copy() for v in (x, r, p, y)]
    got = [v.copy() for v in (x, r, p, y)]
    want = _three_passes(*ref, rz, 0.0, 0.0, stop)
    have = K.cg_iteration_(*got, rz, 0.0, 0.0, stop)
    _same(list(want) + ref, list(have) + got)
    if case == "inf-beta":
        assert math.isinf(have[1] / rz)
    if case != "negative-go-on":
        np.testing.assert_array_equal(got[2], p)  # no direction
    if case in ("negative", "zero", "nan"):
        for a, b in zip(got, (x, r, p, y)):
            np.testing.assert_array_equal(a, b)  # nothing written
        assert math.isnan(have[1])


def test_fused_iteration_does_not_depend_on_the_thread_count():
    x, r, p, y = _state(5 * 65536 + 17, np.float32, seed=4)
    base = (x, r, p, (1.3 * p + 0.1 * y).astype(np.float32))  # positive curvature: all three steps run
    results = []
    for threads in (1, 2, 3):
        vs = [v.copy() for v in base]
        with optkern.limit_threads(threads):
            out = K.cg_iteration_(*vs, 3.0, 1e-3, 0.0, True)
        assert out[0] > 0 and out[1] > 0
        results.append((out, *(v.tobytes() for v in vs)))
    assert results[0] == results[1] == results[2]
    assert results[0][3] != p.tobytes()  # (p moved: the direction step ran)


@pytest.mark.parametrize(
    "index, value, err, words",
    [
        (1, "float64", TypeError, "r"),
        (1, "short", ValueError, "r"),
        (3, "is p", ValueError, "p"),  # y is p: p is written
        (4, math.inf, ValueError, "rz"),
        (5, math.nan, ValueError, "damping"),
        (6, math.nan, ValueError, "tol"),
    ],
)
def test_bad_input_refused_before_anything_is_written(index, value, err, words):
    x, r, p, y = _state(1000, np.float32, seed=5)
    args = [x, r, p, y, 2.0, 0.1, 0.0, True]
    keep = [a.copy() for a in args[:4]]
    args[index] = {"float64": r.astype(np.float64), "short": r[:-1].copy(), "is p": p}.get(value, value)
    with pytest.raises(err, match=words):
        K.cg_iteration_(*args)
    for a, b in zip((x, r, p, y), keep):
        np.testing.assert_array_equal(a, b)


def _spd(n, seed):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n, n))
    return (q @ q.T / n + np.diag(rng.uniform(0.5, 2.0, n))).astype(np.float32)


def _old_cg(A, b, iters, damping):
    """hessian.cg's loop before the fusion, with b scaled to [1, 2) as cg scales it: the same bits."""
    big = float(np.abs(b).max())
    s = math.ldexp(1.0, math.frexp(big)[1] - 1)
    bv = b / s
    x, r = np.zeros_like(bv), bv.copy()
    rz = K.cg_curvature(r, r, 0.0)
    p = r.copy()
    for _ in range(iters):
        y = np.ascontiguousarray(A @ p)
        pAp = K.cg_curvature(p, y, damping)
        rr = K.cg_update_(x, r, p, y, rz / pAp, damping)
        K.cg_direction_(p, r, rr / rz)
        rz = rr
    return x * s, r * s, p * s, math.sqrt(rz) * s


def _counted(fn, name, calls):
    def call(*args):
        calls[name] = calls.get(name, 0) + 1
        return fn(*args)

    return call


def test_cg_is_the_old_loop_bit_for_bit_and_one_native_call_per_iteration(monkeypatch):
    A = _spd(300, 6)
    b = np.random.default_rng(7).standard_normal(300).astype(np.float32) * 40.0
    calls = {}
    for name in ("cg_curvature", "cg_update_", "cg_direction_", "cg_iteration_", "cg_start_"):
        fn = getattr(K, name)
        monkeypatch.setattr(
            K, name, lambda *a, _f=fn, _n=name: (calls.__setitem__(_n, calls.get(_n, 0) + 1), _f(*a))[1]
        )
    res = hessian.cg(A, b, rtol=0.0, maxiter=12, damping=1e-2)
    monkeypatch.undo()
    x, r, p, rnorm = _old_cg(A, b, 12, 1e-2)
    np.testing.assert_array_equal(res.x, x)
    np.testing.assert_array_equal(res.residual, r)
    np.testing.assert_array_equal(res.direction, p)
    assert res.residual_norm == rnorm and res.iterations == 12 and res.num_matvecs == 12
    # the start (r = b / s, b.b, x = 0, p = r) in one call, then one call per iteration (it was 2 + 3
    # x 12 calls)
    assert calls == {"cg_start_": 1, "cg_iteration_": 12}


def test_cg_solve_touches_no_fresh_pages():
    """A solve's vectors (x, r, p, b scaled, the results) come from optkern's pool: after a first
    solve, a second of 300K unknowns faulted in 1100+ fresh pages (each a zeroed 4 KiB page)."""
    n = 300_000
    d = np.random.default_rng(8).uniform(1.0, 2.0, n).astype(np.float32)
    op = hessian.from_hvp(lambda v: d * v, n, np.float32)
    b = np.random.default_rng(9).standard_normal(n).astype(np.float32) * 3.0
    with optkern.limit_threads(1):  # (every page touched by this thread: counted here)
        hessian.cg(op, b, rtol=0.0, maxiter=4)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        res = hessian.cg(op, b, rtol=0.0, maxiter=4)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert res.iterations == 4
    assert faults < 100, f"{faults} page faults in one solve ({n * 4 // 4096} a vector)"
