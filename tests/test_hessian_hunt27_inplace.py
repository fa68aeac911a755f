"""A user's product function that computes in place, writing into the vector it is given.

The estimators pass their own state to the products (the Lanczos vector, power iteration's
iterate, CG's direction, Hutchinson's probe block, CG's residual to the preconditioner) and read it
again afterwards. ``np.multiply(d, v, out=v)`` or torch's ``v.mul_(d)`` changed that state: every
estimator returned wrong numbers with no error (top eigenvalues of diag(1..6): 3087 and 766;
``cg`` a wrong x reported as converged). The library's operators now give such functions a copy.
"""

import numpy as np
import pytest
import scipy.sparse.linalg as sla

from optkern import hessian

N = 6
D = np.arange(1.0, N + 1)  # the operator diag(1..6)


def in_place(v):
    np.multiply(D, v, out=v)
    return v


def in_place_block(V):
    V *= D[:, None]
    return V


def writes_scratch(v):
    """Uses its input as scratch, returns a fresh product."""
    y = D * v
    v[...] = 0.0
    return y


def into_scribbles(v, out):
    np.multiply(D, v, out=out)
    v[...] = 0.0


OPERATORS = {
    "fn returns its input": lambda: hessian.from_hvp(in_place, N),
    "fn scribbles on its input": lambda: hessian.from_hvp(writes_scratch, N),
    "matmat in place": lambda: hessian.from_hvp(lambda v: D * v, N, matmat=in_place_block),
    "into scribbles on its input": lambda: hessian.from_hvp(lambda v: D * v, N, into=into_scribbles),
    "LinearOperator": lambda: sla.LinearOperator((N, N), matvec=in_place, dtype=np.float64),
}

RUNS = {
    "lanczos": lambda op: np.sort(np.linalg.eigvalsh(_tridiag(*hessian.lanczos(op, N)))),
    "top_eigenvalues": lambda op: hessian.top_eigenvalues(op, 2).eigenvalues,
    "top_eigenvalues block": lambda op: hessian.top_eigenvalues(op, 2, block_size=2).eigenvalues,
    "spectral_density": lambda op: np.sort(hessian.spectral_density(op, 1, N).nodes[0]),
    "power_iteration": lambda op: hessian.power_iteration(op, max_iter=500, tol=1e-12).eigenvalue,
    "trace hutchinson": lambda op: hessian.trace(op, "hutchinson", 4).estimate,
    "trace hutch++": lambda op: hessian.trace(op, "hutch++", 3 * N).estimate,
    "cg": lambda op: hessian.cg(op, np.ones(N), rtol=1e-12).x,
    "gradient_concentration": lambda op: hessian.gradient_concentration(op, np.ones(N), 2),
}

EXPECTED = {
    "lanczos": D,
    "top_eigenvalues": [6.0, 5.0],
    "top_eigenvalues block": [6.0, 5.0],
    "spectral_density": D,
    "power_iteration": 6.0,
    "trace hutchinson": 21.0,  # (Rademacher probes: exact for a diagonal operator)
    "trace hutch++": 21.0,
    "cg": 1.0 / D,
    "gradient_concentration": 2.0 / N,
}


def _tridiag(alpha, beta):
    return np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)


@pytest.mark.parametrize("run", list(RUNS))
@pytest.mark.parametrize("kind", list(OPERATORS))
def test_estimators_are_right_whatever_the_product_does_to_its_input(kind, run):
    got = RUNS[run](OPERATORS[kind]())
    np.testing.assert_allclose(got, EXPECTED[run], rtol=1e-6, err_msg=f"{kind}: {run}")


@pytest.mark.parametrize("kind", list(OPERATORS))
def test_hutchpp_sketch_is_that_of_the_plain_operator(kind):
    """Below ``3 n`` products Hutch++ sketches (its probe blocks read again after the products)."""
    want = hessian.trace(np.diag(D), "hutch++", 9, seed=3).estimate
    assert hessian.trace(OPERATORS[kind](), "hutch++", 9, seed=3).estimate == pytest.approx(want, rel=1e-12)


def test_matvec_leaves_the_callers_vector_alone():
    v = np.ones(N)
    for kind, make in OPERATORS.items():
        op = hessian.as_operator(make())
        y = op.matvec(v)
        np.testing.assert_array_equal(v, np.ones(N), err_msg=kind)
        np.testing.assert_allclose(y, D, err_msg=kind)
        out = np.empty(N)
        op.matvec(v, out=out)
        np.testing.assert_array_equal(v, np.ones(N), err_msg=kind)
        np.testing.assert_allclose(out, D, err_msg=kind)


def test_the_identity_is_still_a_valid_operator():
    """``lambda v: v`` (its product a copy: the recurrences overwrite products in place)."""
    op = hessian.from_hvp(lambda v: v, N)
    v = np.arange(1.0, N + 1)
    y = op.matvec(v)
    np.testing.assert_array_equal(y, v)
    assert not np.shares_memory(y, v)
    assert hessian.top_eigenvalues(op, 2).eigenvalues == pytest.approx([1.0, 1.0])


@pytest.mark.parametrize("as_callable", [True, False])
def test_cg_with_a_preconditioner_that_scales_its_input_in_place(as_callable):
    """``M`` receives CG's residual: ``np.divide(r, d, out=r)`` changed the residual itself and ``cg``
    returned info 0 with x off by 1.6 (a 20 x 20 SPD system)."""
    rng = np.random.default_rng(0)
    n = 20
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = (Q * np.linspace(1.0, 5.0, n)) @ Q.T
    A = (A + A.T) / 2
    b = rng.standard_normal(n)
    d = np.diag(A).copy()

    def M(r):
        np.divide(r, d, out=r)
        return r

    pre = M if as_callable else sla.LinearOperator((n, n), matvec=M, dtype=np.float64)
    res = hessian.cg(A, b, M=pre, rtol=1e-10)
    assert res.info == 0
    np.testing.assert_allclose(res.x, np.linalg.solve(A, b), rtol=1e-7, atol=1e-9)
