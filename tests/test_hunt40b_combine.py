"""The fixed-order row combination ``combine_rows_`` (40th hunt, b).

Thick restart's kept Ritz vectors, the Ritz vectors ``Q^T S`` and (now) block Lanczos's residuals
``R S_last`` are sums over the basis added in a fixed order. They were NumPy's elementwise multiplies
and adds, a column chunk at a time, on one thread; the native kernel must give those bits exactly (CuPy
still runs the elementwise path on the GPU, so that is what keeps CPU and GPU equal), with any thread
count, in place or not.
"""

import numpy as np
import pytest

import optkern
from optkern import _cpu, hessian
from optkern.hessian.krylov import BlockKrylov
from optkern.hessian.operators import vector_norm


def _elementwise(C, V):
    """The former NumPy path: a = C[:, 0] V[0]; a += C[:, j] V[j] in order, each op rounded."""
    k, m = C.shape
    a = np.zeros((k, V.shape[1]), dtype=V.dtype)
    if m:
        np.multiply(C[:, :1], V[0], out=a)
        for j in range(1, m):
            a += C[:, j : j + 1] * V[j]
    return a


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [0, 1, 7, 511, 512, 513, 1023, 5001])
@pytest.mark.parametrize(("m", "k"), [(0, 3), (1, 1), (7, 3), (3, 7), (30, 30), (4, 0)])
def test_matches_numpy_elementwise_bits_and_a_float64_product(n, m, k, dtype):
    rng = np.random.default_rng(n * 31 + m * 7 + k)
    C = rng.standard_normal((k, m)).astype(dtype)
    V = rng.standard_normal((m, n)).astype(dtype)
    want = _elementwise(C, V)
    out = np.full((k, n), np.nan, dtype=dtype)
    assert _cpu.combine_rows_(C, V, out) is None
    np.testing.assert_array_equal(out, want)
    outT = np.full((n, k), np.nan, dtype=dtype)
    _cpu.combine_rows_(C, V, outT, True)
    np.testing.assert_array_equal(outT, want.T)
    tol = 1e-12 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(out, C.astype(np.float64) @ V.astype(np.float64), atol=tol * (1 + m))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("m", "k", "n"), [(5, 3, 1023), (3, 5, 1023), (6, 6, 7), (2, 0, 9)])
def test_in_place_over_the_first_rows(m, k, n, dtype):
    rng = np.random.default_rng(m + k + n)
    Q = rng.standard_normal((max(m, k) + 2, n)).astype(dtype)
    C = rng.standard_normal((k, m)).astype(dtype)
    want = _elementwise(C, Q[:m])
    Q0 = Q.copy()
    _cpu.combine_rows_(C, Q[:m], Q[:k])
    np.testing.assert_array_equal(Q[:k], want)
    np.testing.assert_array_equal(Q[k:], Q0[k:])


def test_threads_change_no_bits():
    rng = np.random.default_rng(2)
    C = rng.standard_normal((30, 60))
    V = rng.standard_normal((60, 100_003))
    before = optkern.get_num_threads()
    outs = []
    try:
        for t in (1, 2):
            optkern.set_num_threads(t)
            out = np.empty((30, V.shape[1]))
            _cpu.combine_rows_(C, V, out)
            outs.append(out)
    finally:
        optkern.set_num_threads(before)
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], _elementwise(C, V))


def _good():
    return dict(C=np.ones((2, 3)), V=np.ones((3, 10)), out=np.zeros((2, 10)))


@pytest.mark.parametrize(
    ("kw", "exc", "name"),
    [
        (dict(C=np.ones((2, 4))), ValueError, "C"),
        (dict(C=np.ones(3)), ValueError, "C"),
        (dict(C=np.ones((2, 3), np.float32)), TypeError, "C"),
        (dict(C=np.ones((3, 2)).T), ValueError, "C"),
        (dict(V=np.ones(10)), ValueError, "V"),
        (dict(V=np.ones((3, 10), np.int32)), TypeError, "V"),
        (dict(V=[[1.0] * 10] * 3), TypeError, "V"),
        (dict(out=np.zeros((2, 9))), ValueError, "out"),
        (dict(out=np.zeros((10, 2))), ValueError, "out"),
        (dict(out=np.zeros((2, 10), np.float32)), TypeError, "out"),
        (dict(out=np.zeros((10, 2)).T), ValueError, "out"),
    ],
)
def test_bad_input_names_the_argument_and_writes_nothing(kw, exc, name):
    a = _good()
    a.update(kw)
    out = a["out"]
    before = np.array(out, copy=True)
    with pytest.raises(exc, match=name):
        _cpu.combine_rows_(**a)
    np.testing.assert_array_equal(out, before)


def test_overlap_other_than_in_place_is_refused():
    Q = np.ones((6, 10))
    with pytest.raises(ValueError, match="overlap|share|alias"):
        _cpu.combine_rows_(np.ones((2, 3)), Q[1:4], Q[:2])  # (out starts a row before V: not in place)
    buf = np.ones(26)
    with pytest.raises(ValueError, match="overlap|share|alias"):
        _cpu.combine_rows_(buf[:6].reshape(2, 3), np.ones((3, 10)), buf[4:24].reshape(2, 10))  # (out over C)
    assert (Q == 1.0).all() and (buf == 1.0).all()
    with pytest.raises(ValueError, match="out"):  # (transposed over V's own data: the shape is V's, not (n, k))
        _cpu.combine_rows_(np.ones((2, 3)), Q[:3], Q[:2], True)


def test_ritz_residuals_are_the_fixed_order_combination():
    n = 3001
    d = np.linspace(-1.0, 2.0, n)
    op = hessian.from_hvp(lambda v: d * v, n, np.float64, matmat=lambda V: d[:, None] * V)
    kr = BlockKrylov(op, 4, 40, None, 0)
    for _ in range(5):
        kr.step()
    theta, S, res = kr.ritz()
    RS = _elementwise(np.ascontiguousarray(kr.R), np.ascontiguousarray(S[kr.m - kr.b : kr.m]))
    np.testing.assert_array_equal(res, vector_norm(np, RS, axis=0))
    np.testing.assert_allclose(res, np.linalg.norm(kr.R @ S[kr.m - kr.b : kr.m], axis=0), rtol=1e-12, atol=1e-300)
