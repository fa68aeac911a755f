"""What a user's product function returns is checked where it enters the operator (from_hvp's
``fn`` / ``matmat`` / ``into``, from_grad's ``grad_fn``, a wrapped LinearOperator's ``matvec``):
a wrong kind, shape or dtype is a TypeError / ValueError naming the function, and every estimator
raises the same one (they broadcast a scalar into wrong numbers, truncated int64 products, and
failed with an unnamed AttributeError on a list). A non-finite product is a ValueError in every
estimator, also for operators the library computes itself (trace returned NaN where Lanczos
raised FloatingPointError)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse.linalg as sla

from optkern import hessian, nn

N = 6
A = np.diag(np.arange(1.0, N + 1))  # trace 21, top eigenvalue 6

BAD = {
    "shape (7,)": (lambda v: np.ones(N + 1), ValueError, r"^fn: returned shape \(7,\), expected \(6,\)"),
    "shape (6, 1)": (lambda v: (A @ v)[:, None], ValueError, r"^fn: returned shape \(6, 1\), expected \(6,\)"),
    "scalar": (lambda v: 1.0, TypeError, r"^fn: expected it to return a numpy array \(the product\), got float"),
    "numpy scalar": (lambda v: np.float64(1.0), TypeError, r"^fn: expected it to return a numpy array"),
    "None": (lambda v: None, TypeError, r"^fn: expected it to return a numpy array \(the product\), got NoneType"),
    "list": (lambda v: list(A @ v), TypeError, r"^fn: expected it to return a numpy array \(the product\), got list"),
    "int64": (lambda v: (0.5 * A @ v).astype(np.int64), TypeError, r"^fn: returned int64 entries, expected float32"),
    "bool": (lambda v: A @ v > 0, TypeError, r"^fn: returned bool entries"),
    "float16": (lambda v: (A @ v).astype(np.float16), TypeError, r"^fn: returned float16 entries"),
    "complex": (lambda v: (A @ v).astype(np.complex128), TypeError, r"^fn: returned complex128 entries"),
    "NaN": (lambda v: np.full(N, np.nan), ValueError, r"^fn: returned a product with NaN or Inf entries"),
    "Inf": (lambda v: np.r_[(A @ v)[:-1], -np.inf], ValueError, r"^fn: returned a product with NaN or Inf entries"),
}

RUNS = {
    "matvec": lambda op: op.matvec(np.ones(N)),
    "matmat": lambda op: op.matmat(np.eye(N)),
    "@": lambda op: op @ np.ones(N),
    "trace": lambda op: hessian.trace(op, "hutchinson", 4),
    "hutch++": lambda op: hessian.trace(op, "hutch++", 9),
    "hutch++ exact": lambda op: hessian.trace(op, "hutch++", 3 * N),
    "lanczos": lambda op: hessian.lanczos(op, 4),
    "lanczos none": lambda op: hessian.lanczos(op, 4, reorthogonalize="none"),
    "top_eigenvalues": lambda op: hessian.top_eigenvalues(op, 1),
    "top_eigenvalues b=2": lambda op: hessian.top_eigenvalues(op, 1, block_size=2),
    "spectral_density": lambda op: hessian.spectral_density(op, 2, 4, probes_per_block=2),
    "power_iteration": lambda op: hessian.power_iteration(op, 5),
    "cg": lambda op: hessian.cg(op, np.ones(N)),
    "gradient_concentration": lambda op: hessian.gradient_concentration(op, np.ones(op.shape[0]), 1),
    "scipy eigsh": lambda op: sla.eigsh(op, 1),
}


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("bad", BAD)
def test_every_estimator_names_fn_for_a_bad_product(bad, run):
    fn, exc, match = BAD[bad]
    op = hessian.from_hvp(fn, N)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ComplexWarning / RuntimeWarning on the way to the error
        with pytest.raises(exc, match=match):
            RUNS[run](op)


@pytest.mark.parametrize("bad", BAD)
def test_a_refused_product_writes_nothing_into_out(bad):
    fn, exc, match = BAD[bad]
    out = np.full(N, 7.0)
    with pytest.raises(exc, match=match):
        hessian.from_hvp(fn, N).matvec(np.ones(N), out=out)
    np.testing.assert_array_equal(out, np.full(N, 7.0))


@pytest.mark.parametrize(
    "mm,exc,match",
    [
        (lambda V: A @ V[:, :-1], ValueError, r"^matmat: returned shape \(6, 2\), expected \(6, 3\)"),
        (lambda V: (A @ V).astype(np.int32), TypeError, r"^matmat: returned int32 entries"),
        (lambda V: None, TypeError, r"^matmat: expected it to return a numpy array"),
        (lambda V: A @ V * np.nan, ValueError, r"^matmat: returned a product with NaN or Inf entries"),
    ],
)
def test_a_users_matmat_is_checked(mm, exc, match):
    op = hessian.from_hvp(lambda v: A @ v, N, matmat=mm)
    with pytest.raises(exc, match=match):
        op.matmat(np.ones((N, 3)))
    with pytest.raises(exc, match=match if "shape" not in match else r"^matmat: returned shape"):
        hessian.trace(op, "hutch++", 9)


def test_into_products_are_checked_for_finiteness():
    def into(v, out):
        out[...] = A @ v
        out[2] = np.nan

    op = hessian.from_hvp(lambda v: A @ v, N, into=into)
    with pytest.raises(ValueError, match=r"^into: returned a product with NaN or Inf entries"):
        hessian.lanczos(op, 3)
    with pytest.raises(TypeError, match=r"^matmat: expected a callable or None, got int"):
        hessian.from_hvp(lambda v: v, N, matmat=3)


def test_good_products_pass_and_float32_is_cast():
    """float32 and float64 products are both taken (cast to the operator's dtype); a torch tensor is
    viewed as the array it is; the results are those of the dense matrix."""
    torch = pytest.importorskip("torch")
    ops = {
        "f64": hessian.from_hvp(lambda v: A @ v, N),
        "f32 product": hessian.from_hvp(lambda v: (A @ v).astype(np.float32), N),
        "f64 product of a f32 op": hessian.from_hvp(lambda v: A @ v.astype(np.float64), N, np.float32),
        "torch": hessian.from_hvp(lambda v: torch.from_numpy(A @ v), N),
    }
    for name, op in ops.items():
        y = op.matvec(np.arange(1.0, N + 1))
        assert isinstance(y, np.ndarray) and y.dtype == op.dtype, name
        np.testing.assert_array_equal(y, np.arange(1.0, N + 1) ** 2)
        assert op.matmat(np.eye(N)).dtype == op.dtype
        assert hessian.trace(op, "hutchinson", 8).estimate == pytest.approx(21.0), name
        assert hessian.top_eigenvalues(op, 1).eigenvalues[0] == pytest.approx(6.0, rel=1e-5), name


def test_finite_products_whose_sum_overflows_are_taken():
    """The finiteness test reads the sum first; a sum that overflows on finite entries is not a refusal."""
    big = np.r_[1e308, 1e308, -1e308, 1e308, 1e308, 1.0]
    y = hessian.from_hvp(lambda v: big.copy(), N).matvec(np.ones(N))
    np.testing.assert_array_equal(y, big)
    y32 = hessian.from_hvp(lambda v: np.full(N, 3e38, np.float32), N, np.float32).matvec(np.ones(N))
    assert y32.dtype == np.float32 and np.all(y32 == np.float32(3e38))


def test_a_product_that_is_its_input_is_copied():
    """The identity ``fn = lambda v: v`` is a valid operator; the recurrences overwrite products in
    place, which failed ("w shares memory with Q") or would corrupt the basis."""
    op = hessian.from_hvp(lambda v: v, N)
    v = np.arange(1.0, N + 1)
    y = op.matvec(v)
    np.testing.assert_array_equal(y, v)
    assert not np.shares_memory(y, v)
    alpha, beta = hessian.lanczos(op, 3)
    np.testing.assert_allclose(alpha, [1.0])
    assert hessian.top_eigenvalues(op, 2).eigenvalues == pytest.approx([1.0, 1.0])
    assert hessian.spectral_density(op, 1, 3).mean() == pytest.approx(1.0)
    ident_mm = hessian.from_hvp(lambda v: v, N, matmat=lambda V: V)
    assert hessian.top_eigenvalues(ident_mm, 2, block_size=2).eigenvalues == pytest.approx([1.0, 1.0])


def test_wrapped_operators_and_from_grad_are_checked():
    lin = sla.LinearOperator((N, N), matvec=lambda v: (A @ v).astype(np.int64), dtype=np.float64)
    with pytest.raises(TypeError, match=r"^op\.matvec: returned int64 entries"):  # (the estimators' op)
        hessian.top_eigenvalues(lin, 1)
    lin = sla.LinearOperator((N, N), matvec=lambda v: A @ v * np.inf, dtype=np.float64)
    with pytest.raises(ValueError, match=r"^op\.matvec: returned a product with NaN or Inf"):
        hessian.trace(lin, "hutchinson", 3)
    fd = hessian.from_grad(lambda p: p * np.nan, np.ones(N))
    for run in ("trace", "lanczos", "power_iteration"):
        with pytest.raises(ValueError, match=r"^grad_fn: returned a product with NaN or Inf"):
            RUNS[run](fd)


def _nan_mlp_operator():
    model = nn.MLP([3, 4, 2], activation="tanh", dtype=np.float64)
    p = model.init_params(0)
    p[0] = np.nan
    return hessian.from_mlp(model, p, np.ones((5, 3)), np.zeros(5, dtype=np.int64))


@pytest.mark.parametrize("run", [r for r in RUNS if r not in ("matvec", "matmat", "@", "cg", "scipy eigsh")])
@pytest.mark.parametrize("kind", ["dense", "mlp"])
def test_estimators_agree_on_non_finite_products_of_library_operators(kind, run):
    """Products the library computes (a dense matrix, from_mlp at NaN params) are not checked one by
    one; every estimator refuses their NaN with the same ValueError naming op (trace and
    power_iteration returned NaN, Lanczos raised FloatingPointError)."""
    if kind == "dense":
        op = A.copy()
        op[2, 2] = np.nan
    else:
        op = _nan_mlp_operator()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # (NumPy's on the NaN arithmetic)
        with pytest.raises(ValueError, match=r"^op: the operator's products are not finite"):
            RUNS[run](op)


def test_cg_refuses_a_non_finite_product_of_a_library_operator():
    """A NaN curvature p.Ap was read as negative curvature: info -1, x = 0 returned as an answer."""
    B = A.copy()
    B[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"^A: the product is not finite \(p\.Ap = nan\)"):
        hessian.cg(B, np.ones(N))
