"""``hessian.from_grad`` as a user calls it: the operator's dtype is the params', and so is what a
product is accurate to.

* A ``grad_fn`` returning float32 gradients at float64 params was taken (cast up): the products of
  the float64 operator carried float32's rounding divided by float64's small step, a relative error
  near 1e-3 (``diag(1, 2, 3)``: ``[0.9984, 1.9969, 2.9953]``), silently.
* ``params`` of size 0 was refused naming ``n``, an argument ``from_grad`` does not have.
* A ``rel_step`` whose step overflows float64 was taken; the first product was refused as NaN
  "returned by grad_fn", the user's function blamed for the step.
"""

import numpy as np
import pytest

from optkern import hessian

A = np.diag([1.0, 2.0, 3.0])


def test_finite_differences_of_float64_params_match_the_exact_product_to_float64_accuracy():
    op = hessian.from_grad(lambda p: A @ p + p**3, np.ones(3))
    exact = A + 3.0 * np.eye(3)  # (the Hessian of p^T A p / 2 + sum p^4 / 4 at p = 1)
    assert np.abs(op.matmat(np.eye(3)) - exact).max() <= 1e-8


def test_a_lower_precision_gradient_than_the_params_is_refused_by_name():
    op = hessian.from_grad(lambda p: (A @ p).astype(np.float32), np.ones(3))
    with pytest.raises(TypeError, match=r"^grad_fn: returned float32 gradients at float64 params"):
        op.matvec(np.ones(3))
    for est in (lambda: hessian.trace(op, num_matvecs=3), lambda: hessian.top_eigenvalues(op)):
        with pytest.raises(TypeError, match=r"^grad_fn: "):
            est()


def test_a_gradient_in_the_params_dtype_or_finer_is_taken():
    p32 = np.ones(3, np.float32)
    for grad_fn in (lambda p: A.astype(np.float32) @ p, lambda p: A @ p.astype(np.float64)):
        op = hessian.from_grad(grad_fn, p32)
        assert op.dtype == np.float32
        assert np.abs(op.matvec(np.ones(3, np.float32)) - [1.0, 2.0, 3.0]).max() <= 1e-3


def test_empty_params_are_refused_naming_params():
    with pytest.raises(ValueError, match=r"^params: expected at least one parameter, got shape \(0,\)"):
        hessian.from_grad(lambda p: p, np.zeros(0))


@pytest.mark.parametrize("rel_step", [1e308, float(np.finfo(np.float64).max)])
def test_a_rel_step_whose_step_overflows_is_refused_naming_rel_step(rel_step):
    with pytest.raises(ValueError, match=r"^rel_step: "):
        hessian.from_grad(lambda p: A @ p, np.ones(3), rel_step=rel_step)


# ---- operator products with an operator that has only matvec and shape ---------------------------


class _MatvecOnly:
    """An operator as ``as_operator`` documents it: ``shape``, ``dtype`` and ``matvec``, no ``matmat``."""

    shape = (3, 3)
    dtype = np.float64

    def matvec(self, v):
        return np.diag([2.0, 1.0, 1.0]) @ v


@pytest.mark.parametrize("block", [np.eye(3), np.ones((3, 1)), np.arange(6.0).reshape(3, 2)])
def test_a_product_with_a_matvec_only_operator_takes_blocks(block):
    # H @ G with G not a SciPy operator is a compose.Composed, whose matmat called G.matmat: an
    # unnamed AttributeError for G @ V (V of 2 columns, or of 1: scipy's (n, 1) rule), where
    # ``as_operator(G)`` and the estimators apply such an operator column by column
    C = hessian.from_hvp(lambda v: A @ v, 3) @ _MatvecOnly()
    want = A @ np.diag([2.0, 1.0, 1.0]) @ block
    assert np.array_equal(C.matmat(block), want)
    assert np.array_equal(C @ block, want)
    assert np.array_equal(C.dot(2.0).matmat(block), 2.0 * want)


def test_gradient_concentration_takes_torch_eigenvectors_as_it_takes_a_torch_grad():
    # grad, v0, b, x0, grid... take torch tensors (viewed); eigenvectors was refused ("expected a numpy
    # array, got torch.Tensor")
    torch = pytest.importorskip("torch")
    op = hessian.as_operator(np.diag([3.0, 2.0, 1.0, 0.5]))
    g = torch.tensor([1.0, 2.0, 2.0, 4.0], dtype=torch.float64)
    V = torch.eye(4, dtype=torch.float64)[:, :2]  # (a non-contiguous view)
    want = hessian.gradient_concentration(op, g.numpy(), 2, eigenvectors=np.eye(4)[:, :2])
    assert want == pytest.approx(5.0 / 25.0, rel=1e-15)
    assert hessian.gradient_concentration(op, g, 2, eigenvectors=V) == want
    with pytest.raises(TypeError, match=r"^eigenvectors: cannot view this torch.Tensor"):
        hessian.gradient_concentration(op, g, 2, eigenvectors=V._neg_view())


# ---- nested lists, as SciPy's LinearOperator takes them -------------------------------------------


@pytest.mark.parametrize(
    "x", [[1.0, 1.0, 1.0], (1.0, 1.0, 1.0), [[1.0], [1.0], [1.0]], [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]]
)
@pytest.mark.parametrize("how", ["@", "dot"])
def test_operator_products_with_nested_lists_match_scipys(x, how):
    # (SciPy's ``A @ [1, 1, 1]`` is ``A @ np.asarray(...)``; a curvature operator refused it, "x: expected
    # a 1-D or 2-D array, got list", and its matvec of a (3, 1) list returned a (3,) vector)
    sla = pytest.importorskip("scipy.sparse.linalg")
    A3 = np.diag([1.0, 2.0, 3.0])
    for op in (hessian.as_operator(A3), hessian.from_hvp(lambda v: A3 @ v, 3)):
        ref = sla.aslinearoperator(A3)
        got, want = (op @ x, ref @ x) if how == "@" else (op.dot(x), ref.dot(x))
        assert got.shape == want.shape and np.array_equal(got, want)
    if np.ndim(x) == 1 or np.shape(x)[1] == 1:
        got = hessian.as_operator(A3).matvec(x)
        assert got.shape == np.shape(x) and np.array_equal(got, ref.matvec(x))


def test_a_ragged_list_is_refused_naming_the_operand():
    op = hessian.as_operator(np.eye(3))
    with pytest.raises(ValueError, match=r"^x: expected a 1-D or 2-D array"):
        op @ [[1.0], [1.0, 2.0], [1.0]]
