"""The block Gram-Schmidt pass ``lanczos_orthogonalize_rows_`` (40th hunt, b).

Block Lanczos (``block_size`` > 1) and Hutch++'s probe projections orthogonalized each row of a block
by its own ``lanczos_orthogonalize_`` call, reading the whole basis three times per row. The block
kernel reads it once for the block; each row must keep the bits the single-row call gives it (the GPU
module still goes row by row, so that is also what keeps CPU and GPU results equal), for any thread
count, and the estimators built on it must give the bits they gave before.
"""

import numpy as np
import pytest

import optkern
from optkern import _cpu, hessian

SIZES = [0, 1, 7, 1023, 2048, 2049, 5001]


def _case(n, k, b, qdt, wdt, seed):
    rng = np.random.default_rng(seed + 97 * n + 13 * k + b)
    Q = rng.standard_normal((k, n)).astype(qdt)
    W = (rng.standard_normal((b, n)) + rng.standard_normal(n)).astype(wdt)  # (a shared part: cancellation)
    return Q, W


def _one_by_one(Q, k, W, passes):
    W1 = W.copy()
    C1 = np.zeros((W.shape[0], max(k, 1)))
    betas = [_cpu.lanczos_orthogonalize_(Q, k, W1[v], C1[v], passes) for v in range(W.shape[0])]
    return W1, C1, np.array(betas, dtype=np.float64)


DTYPES = [(np.float64, np.float64), (np.float32, np.float64), (np.float32, np.float32)]


@pytest.mark.parametrize(("qdt", "wdt"), DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize(("k", "b"), [(0, 1), (1, 3), (3, 0), (9, 5), (17, 2)])
@pytest.mark.parametrize("passes", [1, 2])
def test_each_row_gets_the_bits_of_the_single_row_call(n, k, b, passes, qdt, wdt):
    Q, W = _case(n, k, b, qdt, wdt, passes)
    W1, C1, b1 = _one_by_one(Q, k, W, passes)
    C = np.full((b, max(k, 1) + 2), 7.0)  # (wider than k: columns past k untouched)
    betas = np.full(b, -1.0)
    assert _cpu.lanczos_orthogonalize_rows_(Q, k, W, C, betas, passes) is None
    np.testing.assert_array_equal(W, W1)
    np.testing.assert_array_equal(C[:, :k], C1[:, :k])
    np.testing.assert_array_equal(betas, b1)
    assert (C[:, k:] == 7.0).all()


@pytest.mark.parametrize(("qdt", "wdt"), DTYPES)
@pytest.mark.parametrize(("n", "k", "b"), [(7, 3, 2), (1023, 10, 4), (5001, 17, 3)])
def test_rows_match_a_float64_reference(n, k, b, qdt, wdt):
    rng = np.random.default_rng(n + k)
    Q = np.linalg.qr(rng.standard_normal((n, k)))[0].T.copy()  # orthonormal rows
    W = rng.standard_normal((b, n))
    Qd, Wd = Q.astype(qdt), W.astype(wdt)
    Qr, Wr = Qd.astype(np.float64), Wd.astype(np.float64)
    C, betas = np.zeros((b, k)), np.zeros(b)
    _cpu.lanczos_orthogonalize_rows_(Qd, k, Wd, C, betas)
    coef = Wr @ Qr.T
    R = Wr - coef @ Qr
    nrm = np.linalg.norm(R, axis=1)
    tol = 1e-10 if wdt == np.float64 and qdt == np.float64 else 1e-4
    np.testing.assert_allclose(C, coef, atol=tol * np.sqrt(n))
    np.testing.assert_allclose(betas, nrm, rtol=tol)
    np.testing.assert_allclose(Wd, R / nrm[:, None], atol=tol)


def test_rows_near_the_ends_of_the_range_zero_and_nan_rows():
    rng = np.random.default_rng(5)
    n, k = 3001, 4
    Q = np.linalg.qr(rng.standard_normal((n, k)))[0].T.copy()
    W = rng.standard_normal((5, n))
    unit = W[:2] - (W[:2] @ Q.T) @ Q  # (the scale-free residuals of rows 0 and 1)
    W[0] *= 1e200
    W[1] *= 1e-200
    W[2] = 0.0
    W[3, 17] = np.nan
    W1, C1, b1 = _one_by_one(Q, k, W, 2)
    C, betas = np.zeros((5, k)), np.zeros(5)
    _cpu.lanczos_orthogonalize_rows_(Q, k, W, C, betas)
    np.testing.assert_array_equal(W, W1)  # (NaN where NaN)
    np.testing.assert_array_equal(betas, b1)
    np.testing.assert_array_equal(C, C1)
    assert betas[2] == 0.0 and np.isnan(betas[3])
    np.testing.assert_allclose(betas[:2] / [1e200, 1e-200], np.linalg.norm(unit, axis=1), rtol=1e-10)


def test_threads_change_no_bits():
    rng = np.random.default_rng(0)
    n, k, b = 300_007, 12, 4
    Q = rng.standard_normal((k, n))
    W0 = rng.standard_normal((b, n))
    before = optkern.get_num_threads()
    out = []
    try:
        for t in (1, 2):
            optkern.set_num_threads(t)
            W, C, betas = W0.copy(), np.zeros((b, k)), np.zeros(b)
            _cpu.lanczos_orthogonalize_rows_(Q, k, W, C, betas)
            out.append((W, C, betas))
    finally:
        optkern.set_num_threads(before)
    for x, y in zip(out[0], out[1]):
        np.testing.assert_array_equal(x, y)


def _args(**kw):
    a = dict(Q=np.zeros((3, 10)), k=3, W=np.ones((2, 10)), coeffs=np.zeros((2, 3)), betas=np.zeros(2), passes=2)
    a.update(kw)
    return a


@pytest.mark.parametrize(
    ("kw", "exc", "name"),
    [
        (dict(passes=3), ValueError, "passes"),
        (dict(k=4), ValueError, "k"),
        (dict(k=-1), ValueError, "k"),
        (dict(Q=np.zeros(10)), ValueError, "Q"),
        (dict(Q=np.zeros((3, 10), np.int64)), TypeError, "Q"),
        (dict(W=np.ones((2, 9))), ValueError, "W"),
        (dict(W=np.ones(10)), ValueError, "W"),
        (dict(W=np.ones((2, 10), np.float32)), TypeError, "W"),
        (dict(W=np.ones((10, 2)).T), ValueError, "W"),
        (dict(W=[[1.0] * 10] * 2), TypeError, "W"),
        (dict(coeffs=np.zeros((2, 2))), ValueError, "coeffs"),
        (dict(coeffs=np.zeros((3, 3))), ValueError, "coeffs"),
        (dict(coeffs=np.zeros(6)), ValueError, "coeffs"),
        (dict(coeffs=np.zeros((2, 3), np.float32)), TypeError, "coeffs"),
        (dict(betas=np.zeros(3)), ValueError, "betas"),
        (dict(betas=np.zeros(2, np.float32)), TypeError, "betas"),
    ],
)
def test_bad_input_names_the_argument_and_writes_nothing(kw, exc, name):
    a = _args(**kw)
    W = a["W"]
    W0 = np.array(W, copy=True)
    with pytest.raises(exc, match=name):
        _cpu.lanczos_orthogonalize_rows_(**a)
    np.testing.assert_array_equal(W, W0)


def test_read_only_or_overlapping_rows_are_refused():
    W = np.ones((2, 10))
    W.flags.writeable = False
    with pytest.raises(ValueError, match="W"):
        _cpu.lanczos_orthogonalize_rows_(np.zeros((3, 10)), 3, W, np.zeros((2, 3)), np.zeros(2))
    Q = np.ones((5, 10))
    with pytest.raises(ValueError, match="overlap|share|alias"):
        _cpu.lanczos_orthogonalize_rows_(Q[:3], 3, Q[2:4], np.zeros((2, 3)), np.zeros(2))  # (row 2 in both)
    np.testing.assert_array_equal(Q, 1.0)


class _PerRow:
    """The CPU module without the block kernel: ``_orthonormal`` then goes row by row (the GPU's way)."""

    def __getattr__(self, name):
        if name == "lanczos_orthogonalize_rows_":
            raise AttributeError(name)
        return getattr(_cpu, name)


def _with_per_row(monkeypatch):
    backend = hessian.krylov._backend.backend
    proxy = _PerRow()
    monkeypatch.setattr(hessian.krylov._backend, "backend", lambda *a: proxy if backend(*a) is _cpu else backend(*a))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_block_lanczos_and_hutchpp_keep_their_bits(dtype, monkeypatch):
    n = 4099
    rng = np.random.default_rng(1)
    d = (rng.standard_normal(n) * np.exp(-np.arange(n) / 300.0)).astype(dtype)
    op = hessian.from_hvp(lambda v: d * v, n, dtype, matmat=lambda V: d[:, None] * V)

    def run():
        r = hessian.top_eigenvalues(op, 6, "LM", block_size=4, max_basis=24, max_steps=200, return_eigenvectors=True)
        t = hessian.trace(op, "hutch++", 60, seed=3)
        return r.eigenvalues, r.eigenvectors, r.residuals, np.array([t.estimate, t.stderr]), t.samples

    new = run()
    _with_per_row(monkeypatch)
    old = run()
    for x, y in zip(new, old):
        np.testing.assert_array_equal(x, y)
