"""Hunt 34, curvature: what the 34th session's hunt found in the operators and estimators.

Vectors of another dtype than the operator's: a float64 vector given to a float32 operator is cast
to float32. Finite entries past float32's range became inf in that cast, which NumPy reports with a
RuntimeWarning ("overflow encountered in cast": an error under ``-W error``, the project's test
setting), else an inf went on: a matvec of inf, or "v0: must be a finite nonzero vector" / "grad: has
NaN or Inf entries" about a finite vector the caller gave. Arguments that are only a direction (a
start vector ``v0``, the gradient whose concentration is measured, the eigenvectors spanning a
subspace) are scale-free: they are taken as given, scaled into range by a power of two; the others
(``matvec``'s ``v``, ``matmat``'s ``V``, ``cg``'s ``b`` and ``x0``) are refused, ValueError naming them.
"""

import warnings

import numpy as np
import pytest

from optkern import hessian

BIG = 1e39  # finite in float64, past float32's largest (3.4e38)


def _op32(n=5, seed=0):
    rng = np.random.default_rng(seed)
    Q = np.linalg.qr(rng.standard_normal((n, n)))[0]
    return ((Q * np.linspace(1.0, 3.0, n)) @ Q.T).astype(np.float32)


def _direction(n, seed=1):
    return np.random.default_rng(seed).uniform(0.5, 1.0, n)  # float64


@pytest.mark.parametrize(
    "call,name",
    [
        (lambda op, v: op.matvec(v), "v"),
        (lambda op, v: op.matvec(v, out=np.empty(v.shape[0], np.float32)), "v"),
        (lambda op, v: op.matmat(np.stack([v, v], axis=1)), "V"),
        (lambda op, v: hessian.cg(op, v), "b"),
        (lambda op, v: hessian.cg(op, np.ones(v.shape[0]), x0=v), "x0"),
    ],
)
@pytest.mark.parametrize(
    "wrap", [hessian.as_operator, lambda A: hessian.from_hvp(lambda v: A @ v, A.shape[0], A.dtype)]
)
def test_a_float64_vector_past_float32s_range_is_refused_naming_it(call, name, wrap):
    op = wrap(_op32())
    v = _direction(5) * BIG
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=rf"^{name}: .*float32"):
            call(op, v)


@pytest.mark.parametrize("scale", [BIG, 1e-50])
def test_a_start_vector_is_a_direction_whatever_its_float64_scale(scale):
    """``v0`` of top_eigenvalues, lanczos and power_iteration: the result of ``v0 * scale`` is the
    result of ``v0`` (1e-50 underflowed to a zero float32 vector: "must be a finite nonzero vector")."""
    A = _op32()
    v0 = _direction(5)
    for run in (
        lambda v: hessian.top_eigenvalues(A, 2, v0=v, return_eigenvectors=True).eigenvalues,
        lambda v: hessian.power_iteration(A, v0=v, max_iter=3).eigenvalue,
        lambda v: hessian.lanczos(A, steps=3, v0=v)[0],
    ):
        want = run(v0)
        np.testing.assert_allclose(run(v0 * scale), want, rtol=1e-6)


@pytest.mark.parametrize("scale", [BIG, 1e-50])
def test_gradient_concentration_of_a_float64_gradient_at_any_scale(scale):
    A = _op32()
    g = _direction(5, seed=2)
    ev = hessian.top_eigenvalues(A, 2, return_eigenvectors=True).eigenvectors
    # the float64 reference: the fraction of g in the span of the two Ritz vectors
    U = np.linalg.qr(ev.astype(np.float64))[0]
    want = float(np.sum((U.T @ g) ** 2) / (g @ g))
    got = hessian.gradient_concentration(A, g * scale, 2, eigenvectors=ev)
    assert got == pytest.approx(want, rel=1e-5)
    # eigenvectors are a basis: any scale spans the same subspace
    assert hessian.gradient_concentration(A, g, 2, eigenvectors=ev.astype(np.float64) * scale) == pytest.approx(
        want, rel=1e-5
    )


def test_a_composed_duck_typed_operator_refuses_a_product_of_mismatched_shapes():
    """``(H @ G) @ K`` of the operators CuPy vectors use (``compose.Composed``) with ``K`` of another
    size: made as a (9, 4) operator, refused only at its first product, naming a ``v`` the caller
    never passed. Now refused where composed, as ``H @ K`` and SciPy's product are."""
    from optkern.hessian import CurvatureOperator

    H = CurvatureOperator(lambda x: 2.0 * x, 9)  # (the class CuPy operators use)
    K = CurvatureOperator(lambda x: 3.0 * x, 4)
    with pytest.raises(ValueError, match="shapes"):
        H @ K
    for P in (H @ H, H.dot(2.0)):
        with pytest.raises(ValueError, match=r"shapes \(9, 9\) and \(4, 4\)"):
            P @ K
        with pytest.raises(ValueError, match=r"shapes \(9, 9\) and \(4, 4\)"):
            P.dot(K)
    np.testing.assert_allclose(((H @ H) @ H) @ np.ones(9), np.full(9, 8.0))


def _mse_with_targets_in(buf_extra):
    """An MSE MLP, its params, x, and a buffer whose head holds the targets ``y``."""
    from optkern.nn import MLP

    m = MLP([3, 4, 2], activation="tanh", loss="mse", dtype=np.float64)
    rng = np.random.default_rng(5)
    p = m.init_params(5) + 0.1 * rng.standard_normal(m.num_params)
    x = rng.standard_normal((5, 3))
    buf = np.empty(m.num_params + buf_extra)
    y = buf[:10].reshape(5, 2)
    y[...] = rng.standard_normal((5, 2))
    return m, p, x, y, buf, rng.standard_normal(m.num_params)


@pytest.mark.parametrize("method", ["hvp", "ggn_vp"])
def test_an_mlp_product_into_an_out_over_the_targets_is_refused(method):
    """``out`` sharing memory with ``y`` (MSE targets) was accepted: the product overwrote the caller's
    targets, no error (``x`` and ``params`` were refused already, and ``from_mlp`` refused a later
    batch's ``y``)."""
    m, p, x, y, buf, v = _mse_with_targets_in(10)
    y0 = y.copy()
    with pytest.raises(ValueError, match="^out shares memory with y$"):
        getattr(m, method)(p, x, y, v, out=buf[: m.num_params])
    np.testing.assert_array_equal(y, y0)


def test_from_mlp_products_into_an_out_over_the_targets_are_refused():
    """Through ``from_mlp`` the overwritten targets made every later product wrong, silently."""
    m, p, x, y, buf, v = _mse_with_targets_in(10)
    y0 = y.copy()
    op = hessian.from_mlp(m, p, x, y)
    with pytest.raises(ValueError, match="out shares memory with y"):
        op.matvec(v, out=buf[: m.num_params])
    np.testing.assert_array_equal(y, y0)
    # the float64 reference: central differences of the gradient at the intact targets
    h = 1e-5
    fd = (m.loss_and_grad(p + h * v, x, y0)[1] - m.loss_and_grad(p - h * v, x, y0)[1]) / (2 * h)
    np.testing.assert_allclose(op.matvec(v), fd, rtol=1e-6, atol=1e-9)


def test_a_torch_operators_non_finite_product_names_loss_fn():
    """``optkern.torch.hessian_operator``'s errors name ``loss_fn``, ``params[i]``, ``batches`` or
    ``kind`` (its docstring); a finite loss with a non-finite Hessian (``|w|^1.5`` at 0) was refused
    naming ``fn`` -- or ``into`` for ``matvec(v, out=...)`` --, arguments of ``from_hvp`` that the
    caller never passed."""
    torch = pytest.importorskip("torch")
    from optkern.torch import hessian_operator

    w = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64, requires_grad=True)
    op = hessian_operator(lambda: (w.abs() ** 1.5).sum(), [w])
    for run in (
        lambda: op.matvec(np.ones(3)),
        lambda: op.matvec(np.ones(3), out=np.empty(3)),
        lambda: hessian.trace(op, num_matvecs=3),
        lambda: hessian.top_eigenvalues(op, 1),
    ):
        with pytest.raises(ValueError, match=r"^loss_fn: .*NaN or Inf"):
            run()
    # a finite Hessian is still the products' (w^2 summed: 2 I)
    v = np.array([1.0, -2.0, 0.5])
    np.testing.assert_array_equal(hessian_operator(lambda: (w * w).sum(), [w]).matvec(v), 2 * v)


def test_a_composed_duck_typed_operator_at_a_scalar_or_a_3d_array_names_x():
    """``P @ 2.0`` / ``P @ (3-d array)`` of a composed CuPy-style operator raised "V: expected shape
    (n, k)", naming a ``V`` the caller never passed; ``H @ 2.0`` of the operator itself names ``x``
    with SciPy's words."""
    from optkern.hessian import CurvatureOperator

    H = CurvatureOperator(lambda x: 2.0 * x, 4)
    for P in (H, H @ H, H.dot(3.0)):
        with pytest.raises(ValueError, match="^x: Scalar operands are not allowed"):
            P @ 2.0
        with pytest.raises(ValueError, match="^x: expected a 1-D or 2-D array"):
            P @ np.ones((4, 1, 1))
    np.testing.assert_allclose((H @ H) @ np.ones((4, 1)), np.full((4, 1), 4.0))
