"""Curvature operators and solvers on two backends at once.

hessian.cg with a preconditioner ``M`` (a dense matrix or an operator) on the other backend than
``A``: a TypeError naming ``M`` before any product (was NumPy's unnamed "Implicit conversion to a
NumPy array is not allowed" from inside the first M r, or "v: cannot be read as an array").
A product of operators on NumPy and CuPy vectors (``H @ G``, either order): a TypeError when it is
formed (was made, then its first product failed inside SciPy or named a ``v`` the caller never
passed).
NewtonCG with a curvature operator on the other backend than its params: a TypeError naming
``curvature`` before the closure runs (was "b: cannot be read as an array of numbers", naming the
argument of the cg call inside)."""

import numpy as np
import pytest

from gpu import require_gpu

cp, K = require_gpu()

from optkern import hessian, optim  # noqa: E402

N = 7


def _system(dt):
    rng = np.random.default_rng(39)
    q = rng.standard_normal((N, N))
    a = (q @ q.T + N * np.eye(N)).astype(dt)
    return a, rng.standard_normal(N).astype(dt), np.diag(1.0 / np.diag(a)).astype(dt)


def _counting(a, xp):
    calls = []

    def fn(v):
        calls.append(1)
        return a @ v

    return hessian.from_hvp(fn, N, dtype=a.dtype, xp=xp), calls


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("a_on_gpu", [False, True])
@pytest.mark.parametrize("m_kind", ["dense", "operator"])
def test_a_preconditioner_on_the_other_backend_is_named(dt, a_on_gpu, m_kind):
    a, b, m = _system(dt)
    xa, xm = (cp, np) if a_on_gpu else (np, cp)
    op, calls = _counting(xa.asarray(a), xa)
    M = xm.asarray(m) if m_kind == "dense" else hessian.as_operator(xm.asarray(m), "M")
    with pytest.raises(TypeError, match=r"^M: works on (numpy|cupy) vectors, but A on (numpy|cupy) vectors"):
        hessian.cg(op, xa.asarray(b), M=M)
    assert calls == []  # refused before the first product


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_a_preconditioner_on_the_same_backend_still_solves(dt):
    a, b, m = _system(dt)
    ref = hessian.cg(a, b, M=m)
    got = hessian.cg(cp.asarray(a), cp.asarray(b), M=cp.asarray(m))
    assert got.info == ref.info == 0
    np.testing.assert_allclose(cp.asnumpy(got.x), ref.x, rtol=1e-4 if dt == np.float32 else 1e-10)


# (not a SciPy product on the left: SciPy's own operator, not optkern's, reads a CuPy one as an array)
@pytest.mark.parametrize("left_on_gpu,composed", [(False, False), (True, False), (True, True)])
def test_a_product_of_operators_on_two_backends_is_refused_when_formed(left_on_gpu, composed):
    a, _, m = _system(np.float64)
    xl, xr = (cp, np) if left_on_gpu else (np, cp)
    left = hessian.as_operator(xl.asarray(a))
    if composed:
        left = left @ hessian.as_operator(xl.asarray(m))  # a compose.Composed on the left
    right = hessian.as_operator(xr.asarray(m))
    with pytest.raises(TypeError, match=r"operators on (numpy|cupy) and (numpy|cupy) vectors"):
        left @ right
    with pytest.raises(TypeError, match=r"operators on (numpy|cupy) and (numpy|cupy) vectors"):
        left.dot(right)


def test_a_product_of_cupy_operators_still_multiplies():
    a, b, m = _system(np.float64)
    h = hessian.as_operator(cp.asarray(a)) @ hessian.as_operator(cp.asarray(m))
    np.testing.assert_allclose(cp.asnumpy(h.matvec(cp.asarray(b))), a @ (m @ b), rtol=1e-12)


@pytest.mark.parametrize("params_on_gpu", [False, True])
def test_newton_cg_names_an_operator_on_the_other_backend(params_on_gpu):
    xp, xo = (cp, np) if params_on_gpu else (np, cp)
    ps = [xp.asarray(np.linspace(-1, 1, 5).astype(np.float32))]
    op = hessian.from_hvp(lambda v: 2 * v, 5, dtype=np.float32, xp=xo)
    calls = []

    def closure():
        calls.append(1)
        return float((ps[0] * ps[0]).sum()), [2 * ps[0]]

    before = cp.asnumpy(ps[0]) if params_on_gpu else ps[0].copy()
    with pytest.raises(
        TypeError, match=r"^curvature: works on (numpy|cupy) vectors, but the params are (numpy|cupy) arrays"
    ):
        optim.NewtonCG(ps, op).step(closure)
    assert calls == []
    np.testing.assert_array_equal(cp.asnumpy(ps[0]) if params_on_gpu else ps[0], before)
