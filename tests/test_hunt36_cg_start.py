"""hessian.cg's start as one native pass (cpp/cg.cpp: cg_start_): the bits of the NumPy steps it
replaces (r = b / s, r.r by cg_curvature, x = 0, p = r), for any thread count, bad input refused
before anything is written, and cg on the CPU module solving bit for bit as on the NumPy path that a
module without it (the CUDA module) takes."""

import sys
import types

import numpy as np
import pytest

import optkern
from optkern import _backend, hessian

K = _backend.cpu
CG = sys.modules["optkern.hessian.cg"]
SIZES = [0, 1, 7, 1023, 65536 + 129, 3 * 65536 + 5]


def _b(n, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(n).astype(dtype) * 3.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("scale", [1.0, 4.0, 2.0**-10])
def test_start_is_numpys_division_and_cg_curvature(dtype, n, scale):
    b = _b(n, dtype)
    r, p, x = np.full(n, 7, dtype), np.full(n, 7, dtype), np.full(n, -7, dtype)
    rr = K.cg_start_(b, r, p, x, scale)
    want = b / scale
    assert r.tobytes() == want.tobytes() and p.tobytes() == want.tobytes()
    assert x.tobytes() == np.zeros(n, dtype).tobytes()  # (+0.0, as np.zeros)
    assert rr == K.cg_curvature(want, want, 0.0)
    r2 = np.full(n, 7, dtype)
    assert K.cg_start_(b, r2, None, None, scale) == rr and r2.tobytes() == want.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_start_rounds_underflowing_entries_as_numpy(dtype):
    big, tiny = (1e38, 3e-3) if dtype == np.float32 else (1e300, 1e-10)  # (tiny / s: subnormal)
    b = np.array([big, tiny, -tiny, 5 * tiny, tiny / 3, -big / 7], dtype)
    s = float(np.ldexp(1.0, np.frexp(big)[1] - 1))
    r = np.empty_like(b)
    K.cg_start_(b, r, None, None, s)
    assert r.tobytes() == (b / s).tobytes()
    assert (r[1:5] != 0).any() and (np.abs(r[1:5]) < np.finfo(dtype).tiny).all()  # (subnormal: rounded)


def test_start_does_not_depend_on_the_thread_count():
    n = 5 * 65536 + 17
    b = _b(n, np.float32, seed=2)
    out = []
    for threads in (1, 2, 3):
        r, p, x = (np.empty_like(b) for _ in range(3))
        with optkern.limit_threads(threads):
            rr = K.cg_start_(b, r, p, x, 8.0)
        out.append((rr, r.tobytes(), p.tobytes(), x.tobytes()))
    assert out[0] == out[1] == out[2]


def _bad(v):
    ro = np.ones(8)
    ro.flags.writeable = False
    return [
        (lambda: K.cg_start_(v["b"], v["r"], v["p"], None, 4.0), ValueError, "p, x"),
        (lambda: K.cg_start_(v["b"], v["r"], None, v["x"], 4.0), ValueError, "p, x"),
        (lambda: K.cg_start_(v["b"], v["r"], v["p"], v["x"], 3.0), ValueError, "scale"),
        (lambda: K.cg_start_(v["b"], v["r"], v["p"], v["x"], 0.0), ValueError, "scale"),
        (lambda: K.cg_start_(v["b"], v["r"], v["p"], v["x"], -4.0), ValueError, "scale"),
        (lambda: K.cg_start_(v["b"], v["r"], v["p"], v["x"], float("nan")), ValueError, "scale"),
        (lambda: K.cg_start_(v["b32"], v["r32"], None, None, 2.0**200), ValueError, "scale"),
        (lambda: K.cg_start_(v["b"], v["b"], v["p"], v["x"], 4.0), ValueError, "b|r"),
        (lambda: K.cg_start_(v["b"], v["r"], v["r"], v["x"], 4.0), ValueError, "r|p"),
        (lambda: K.cg_start_(v["b"], ro, v["p"], v["x"], 4.0), ValueError, "r"),
        (lambda: K.cg_start_(v["b"], v["r"][:4], v["p"], v["x"], 4.0), ValueError, "r"),
        (lambda: K.cg_start_(v["b"], v["r32"], None, None, 4.0), TypeError, "r"),
    ]


@pytest.mark.parametrize("case", range(12))
def test_bad_input_raises_before_writing(case):
    rng = np.random.default_rng(3)
    v = {k: rng.standard_normal(8) for k in "brpx"}
    v["b32"], v["r32"] = (rng.standard_normal(8).astype(np.float32) for _ in range(2))
    before = {k: a.copy() for k, a in v.items()}
    call, exc, match = _bad(v)[case]
    with pytest.raises(exc, match=match):
        call()
    for k, a in v.items():
        np.testing.assert_array_equal(a, before[k], err_msg=k)


def _spd(n, seed):
    q = np.random.default_rng(seed).standard_normal((n, n))
    return (q @ q.T / n + np.eye(n)).astype(np.float32)


@pytest.mark.parametrize("case", ["cold", "warm", "precond", "zero_b", "maxiter0", "scale1"])
def test_cg_solves_as_on_the_numpy_path(monkeypatch, case):
    n = 300
    A = _spd(n, 5)
    b = _b(n, np.float32, seed=6) * (0.5 if case == "scale1" else 40.0)
    b = np.zeros(n, np.float32) if case == "zero_b" else b
    if case == "scale1":
        b[0] = 1.5  # max |b| in [1, 2): s = 1, r a copy of b
    kw = {"rtol": 0.0, "maxiter": 0 if case == "maxiter0" else 9, "damping": 1e-2}
    x0 = (0.01 * _b(n, np.float32, seed=7)) if case == "warm" else None
    if case == "precond":
        kw["precond_diag"] = np.diag(A).copy()
    new = hessian.cg(A, b, x0, **kw)
    plain = types.SimpleNamespace(**{k: getattr(K, k) for k in dir(K) if k != "cg_start_"})
    monkeypatch.setattr(CG._backend, "backend", lambda *a, **k: plain)
    old = hessian.cg(A, b, x0, **kw)
    for a, c in ((new.x, old.x), (new.residual, old.residual), (new.direction, old.direction)):
        assert (a is None and c is None) or a.tobytes() == c.tobytes()
    assert (new.residual_norm, new.info, new.iterations) == (old.residual_norm, old.info, old.iterations)
    assert not np.shares_memory(new.residual, b) and not np.shares_memory(new.x, b)
