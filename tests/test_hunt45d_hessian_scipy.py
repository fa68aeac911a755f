"""``optkern.hessian`` with SciPy composite operators, and ``hessian.cg`` beside ``scipy.sparse.linalg.cg``.

* A composite SciPy operator (``aslinearoperator(A) + B``, ``A @ B``, ``2 * B``, ``B ** 2``) whose inner
  operator returns a product of the wrong size raised NumPy's "cannot reshape array of size 4 into
  shape (5,)" from inside SciPy (its parts' ``matvec``) in ``cg`` (as ``A`` and as ``M``), ``as_operator``
  and every estimator, naming no argument; ``B.H`` of an operator without ``_rmatvec`` raised SciPy's
  bare ``NotImplementedError``. Both now name the argument.
* ``maxiter=0``: SciPy returns ``info = 0`` ("successful exit") for an ``x0`` it never tested; optkern
  returns 1 where the tolerance is not met (``info > 0`` always means not converged), 0 where it is,
  as its docstring and the README now say. Everything else SciPy's ``cg`` tells -- ``info`` and ``x``
  for the edge tolerances -- is compared here with the installed SciPy.
"""

from __future__ import annotations

import numpy as np
import pytest

from optkern import hessian

sl = pytest.importorskip("scipy.sparse.linalg")

N = 5


def _system():
    rng = np.random.default_rng(0)
    q = rng.standard_normal((N, N))
    return q @ q.T + N * np.eye(N), rng.standard_normal(N)


class _WrongSize(sl.LinearOperator):
    def __init__(self, out_shape):
        super().__init__(np.float64, (N, N))
        self.out_shape = out_shape

    def _matvec(self, v):
        return np.ones(self.out_shape)


def _composites():
    A, _ = _system()
    bad = _WrongSize((N - 1,))
    return {
        "sum": sl.aslinearoperator(A) + bad,
        "product": sl.aslinearoperator(A) @ bad,
        "product-outer": bad @ sl.aslinearoperator(A),
        "scaled": 2.0 * bad,
        "power": bad**2,
        "sum-matrix-product": sl.aslinearoperator(A) + _WrongSize((N, N)),
    }


@pytest.mark.parametrize("kind", list(_composites()))
def test_a_composite_with_a_wrong_inner_product_names_the_argument(kind):
    A, b = _system()
    op = _composites()[kind]
    inside = rf"a product inside the _\w+LinearOperator failed: cannot reshape array of size \d+ into shape \({N},\)"
    with pytest.raises(ValueError, match=rf"^A\.matvec: {inside}"):
        hessian.cg(op, b)
    with pytest.raises(ValueError, match=rf"^M\.matvec: {inside}"):
        hessian.cg(A, b, M=op)
    with pytest.raises(ValueError, match=rf"^A\.matvec: {inside}"):
        hessian.as_operator(op).matvec(b)
    with pytest.raises(ValueError, match=rf"^op\.matvec: {inside}"):
        hessian.lanczos(op, 3)


def test_an_adjoint_without_rmatvec_is_a_type_error_naming_the_argument():
    _, b = _system()
    op = _WrongSize((N,)).H
    with pytest.raises(TypeError, match=r"^A\.matvec: the _AdjointLinearOperator cannot compute its product"):
        hessian.cg(op, b)


def test_a_good_composite_still_solves():
    A, b = _system()
    op = sl.aslinearoperator(A) + sl.aslinearoperator(np.eye(N))
    x, info = hessian.cg(op, b, rtol=1e-12)
    assert info == 0
    np.testing.assert_allclose((A + np.eye(N)) @ x, b, rtol=0, atol=1e-10)


def _scipy_cg(A, b, **kw):
    with np.errstate(all="raise"):
        return sl.cg(A, b, **kw)


@pytest.mark.parametrize(
    "kw",
    [
        {"maxiter": 1},
        {"maxiter": 2, "x0": "ones"},
        {"rtol": 0.0, "atol": 0.0, "maxiter": 3},
        {"rtol": 2.0},
        {"atol": 1e300},
        {"maxiter": 0, "rtol": 1.5},
        {"maxiter": 0, "x0": "solution"},
        {"maxiter": 0, "b": "zeros", "x0": "ones"},
        {"b": "zeros", "x0": "ones"},
    ],
    ids=str,
)
def test_cg_agrees_with_scipy(kw):
    A, b = _system()
    kw = dict(kw)
    if kw.pop("b", None) == "zeros":
        b = np.zeros(N)
    x0 = kw.pop("x0", None)
    if x0 is not None:
        kw["x0"] = np.ones(N) if x0 == "ones" else np.linalg.solve(A, b)
    x_s, info_s = _scipy_cg(A, b, **kw)
    x, info = hessian.cg(A, b, **kw)
    assert info == info_s
    np.testing.assert_allclose(x, x_s, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("x0", [None, "ones"])
def test_cg_maxiter_0_not_converged_is_info_1_where_scipy_says_0(x0):
    A, b = _system()
    start = None if x0 is None else np.ones(N)
    x_s, info_s = _scipy_cg(A, b, x0=start, maxiter=0)
    res = hessian.cg(A, b, x0=start, maxiter=0)
    assert info_s == 0  # (SciPy's: no iteration, and "successful exit"; if SciPy changes, so may we)
    assert res.info == 1 and res.iterations == 0 and res.num_matvecs == (0 if x0 is None else 1)
    np.testing.assert_array_equal(res.x, x_s)
    assert res.residual_norm > 1e-5 * np.linalg.norm(b)  # (really not converged)
    assert "maxiter=0" in hessian.cg.__doc__ and "unlike SciPy" in hessian.cg.__doc__


class _Raising(sl.LinearOperator):
    def __init__(self):
        super().__init__(np.float64, (N, N))

    def _matvec(self, v):
        raise ValueError("my own problem")


def test_an_operators_own_value_error_is_named_as_the_argument():
    _, b = _system()
    with pytest.raises(ValueError, match=r"^A\.matvec: my own problem$"):
        hessian.cg(_Raising(), b)
    says = r"^M\.matvec: a product inside the _SumLinearOperator failed: my own problem$"
    with pytest.raises(ValueError, match=says):
        hessian.cg(np.eye(N), b, M=sl.aslinearoperator(np.eye(N)) + _Raising())
