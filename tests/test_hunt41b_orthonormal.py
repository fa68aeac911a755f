"""The native in-order orthonormalization ``orthonormalize_rows_`` (41st hunt, b).

Hutch++'s sketch basis and ``gradient_concentration``'s Ritz vectors were made orthonormal row by row,
one ``lanczos_orthogonalize_`` call per pass (``_orthonormal.orthonormalize_rows``), each row against
the rows before it: ``lanczos_orthogonalize_rows_`` cannot take them (it projects every row of a
block on the basis only, never on another row of the block). The CPU module now does the whole loop,
taking the first pass's products with the rows already final for several rows in one read of them;
every row must keep the bits of the per-call loop (which the GPU module still runs), its sines and
its count, for any thread count, and the estimators built on it the bits they gave before.
"""

import math

import numpy as np
import pytest

import optkern
from optkern import _cpu, hessian
from optkern.hessian import _orthonormal


class _NoNative:
    """The CPU module seen as the GPU's is by ``_orthonormal``: the per-call loop of before."""

    def __getattr__(self, name):
        return getattr(_cpu, name)


def _loop(Q):
    Q = Q.copy()
    sines: list = []
    kept = _orthonormal.orthonormalize_rows(_NoNative(), Q, np.zeros(max(Q.shape[0], 1)), sines)
    return Q, np.array(sines, dtype=np.float64), kept


def _native(Q, max_passes=_orthonormal._MAX_PASSES):
    Q = Q.copy()
    sines = np.full(Q.shape[0], -7.0)
    kept = _cpu.orthonormalize_rows_(Q, sines, max_passes)
    return Q, sines, kept


def _rows(r, n, dtype, seed, kind):
    rng = np.random.default_rng(seed + 31 * r + n)
    Q = rng.standard_normal((r, n))
    if kind == "close":  # (a shared direction: most rows cancel by more than half, extra passes)
        Q = rng.standard_normal(n) + 1e-3 * Q * (1.0 + np.arange(r))[:, None] ** -2
    elif kind == "special" and r >= 6:
        Q[1] = 0.0  # a zero row
        Q[3] = 2.0 * Q[0] - 0.5 * Q[2]  # in the span of the rows before
        Q[4] = Q[2]  # a repeated row
        Q[5] *= 1e-200 if dtype == np.float64 else 1e-30  # (scaled norms)
        if r > 7:
            Q[7] *= 1e200 if dtype == np.float64 else 1e30
    return Q.astype(dtype)


SHAPES = [(0, 5), (1, 1), (1, 7), (8, 3), (8, 2049), (9, 2049), (17, 5001), (20, 7), (40, 4099)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("r", "n"), SHAPES)
@pytest.mark.parametrize("kind", ["random", "close", "special"])
def test_each_row_gets_the_bits_of_the_per_call_loop(r, n, dtype, kind):
    Q = _rows(r, n, dtype, 0, kind)
    Q1, s1, k1 = _loop(Q)
    Q2, s2, k2 = _native(Q)
    assert k2 == k1
    np.testing.assert_array_equal(Q2, Q1)
    np.testing.assert_array_equal(s2, s1)
    if kind == "special" and r >= 6 and n > 6:
        # (the zero row left zero; rows 3 and 4 cancel to rounding in their first pass -- what the
        # sines tell callers with a threshold of dependence, gradient_concentration's _check_rank)
        assert s2[1] == 0.0 and (Q2[1] == 0.0).all() and s2[3] < 1e-5 and s2[4] < 1e-5
    kept = Q2[np.abs(Q2).max(axis=1, initial=0.0) > 0.0].astype(np.float64)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(kept @ kept.T, np.eye(kept.shape[0]), atol=tol)  # (orthonormal)


@pytest.mark.parametrize("passes", [1, 2, 3, 5])
def test_max_passes_is_the_loops_cap(passes, monkeypatch):
    Q = _rows(12, 3001, np.float64, 4, "close")
    monkeypatch.setattr(_orthonormal, "_MAX_PASSES", passes)
    Q1, s1, k1 = _loop(Q)
    Q2, s2, k2 = _native(Q, passes)
    assert (k2, k1) == (k1, k2)
    np.testing.assert_array_equal(Q2, Q1)
    np.testing.assert_array_equal(s2, s1)


def test_rows_not_finite_stay_and_count():
    Q = _rows(10, 2500, np.float64, 2, "random")
    Q[2, 5] = np.nan
    Q[6, 0] = np.inf
    Q1, s1, k1 = _loop(Q)
    Q2, s2, k2 = _native(Q)
    assert k2 == k1 == 10  # (rows not finite count as kept: the caller's product check names them)
    assert math.isnan(s2[2]) and math.isnan(s2[6])
    np.testing.assert_array_equal(Q2, Q1)
    np.testing.assert_array_equal(s2, s1)


def test_threads_change_no_bits():
    Q0 = _rows(20, 300_007, np.float64, 5, "close")
    before = optkern.get_num_threads()
    out = []
    try:
        for t in (1, 2):
            optkern.set_num_threads(t)
            out.append(_native(Q0))
    finally:
        optkern.set_num_threads(before)
    (Qa, sa, ka), (Qb, sb, kb) = out
    assert ka == kb
    np.testing.assert_array_equal(Qa, Qb)
    np.testing.assert_array_equal(sa, sb)


def _args(**kw):
    a = dict(Q=np.ones((2, 10)), sines=np.zeros(2), max_passes=3)
    a.update(kw)
    return a


@pytest.mark.parametrize(
    ("kw", "exc", "name"),
    [
        (dict(max_passes=0), ValueError, "max_passes"),
        (dict(Q=np.ones(10)), ValueError, "Q"),
        (dict(Q=np.ones((2, 10), np.int64)), TypeError, "Q"),
        (dict(Q=np.ones((10, 2)).T), ValueError, "Q"),
        (dict(Q=[[1.0] * 10] * 2), TypeError, "Q"),
        (dict(sines=np.zeros(3)), ValueError, "sines"),
        (dict(sines=np.zeros(2, np.float32)), TypeError, "sines"),
        (dict(sines=None), TypeError, "sines"),
    ],
)
def test_bad_input_names_the_argument_and_writes_nothing(kw, exc, name):
    a = _args(**kw)
    Q = a["Q"]
    Q0 = np.array(Q, copy=True)
    with pytest.raises(exc, match=name):
        _cpu.orthonormalize_rows_(**a)
    np.testing.assert_array_equal(Q, Q0)


def test_read_only_or_overlapping_arrays_are_refused():
    Q = np.ones((2, 10))
    Q.flags.writeable = False
    with pytest.raises(ValueError, match="Q"):
        _cpu.orthonormalize_rows_(Q, np.zeros(2))
    buf = np.ones(21)
    with pytest.raises(ValueError, match="overlap|share|alias"):
        _cpu.orthonormalize_rows_(buf[:20].reshape(2, 10), buf[19:21])  # (the last entry in both)
    np.testing.assert_array_equal(buf, 1.0)


def _without_native(monkeypatch):
    backend = _orthonormal._backend.backend
    proxy = _NoNative()
    monkeypatch.setattr(_orthonormal._backend, "backend", lambda *a: proxy if backend(*a) is _cpu else backend(*a))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_hutchpp_and_gradient_concentration_keep_their_bits(dtype, monkeypatch):
    n = 4099
    rng = np.random.default_rng(1)
    d = (rng.standard_normal(n) * np.exp(-np.arange(n) / 300.0)).astype(dtype)
    op = hessian.from_hvp(lambda v: d * v, n, dtype, matmat=lambda V: d[:, None] * V)
    g = rng.standard_normal(n).astype(dtype)
    V = rng.standard_normal((n, 12)).astype(dtype)
    V[:, 1] += 1e3 * V[:, 0]  # (a column cancelling by more than half: extra passes)

    def run():
        t = hessian.trace(op, "hutch++", 90, seed=3)
        f = hessian.gradient_concentration(op, g, 3, seed=2)
        fv = hessian.gradient_concentration(op, g, 12, eigenvectors=V)
        return np.array([t.estimate, t.stderr, f, fv]), t.samples

    new = run()
    _without_native(monkeypatch)
    old = run()
    for x, y in zip(new, old):
        np.testing.assert_array_equal(x, y)


def test_a_dependent_ritz_column_is_refused_as_before(monkeypatch):
    n = 3000
    d = np.linspace(2.0, 1.0, n)
    op = hessian.from_hvp(lambda v: d * v, n, np.float64)
    V = np.random.default_rng(3).standard_normal((n, 4))
    V[:, 3] = V[:, 0] - 2.0 * V[:, 1]
    with pytest.raises(ValueError, match="eigenvectors") as new:
        hessian.gradient_concentration(op, np.ones(n), 4, eigenvectors=V)
    _without_native(monkeypatch)
    with pytest.raises(ValueError, match="eigenvectors") as old:
        hessian.gradient_concentration(op, np.ones(n), 4, eigenvectors=V)
    assert str(new.value) == str(old.value)
