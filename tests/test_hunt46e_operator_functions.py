"""``hessian.CurvatureOperator`` (public, its arguments documented) took any object as ``matvec``,
``matmat``, ``into`` or ``avoid``, and ``check`` of any shape: the first product then failed with
Python's unnamed "'int' object is not callable" (``check=('a',)``: an IndexError at the first
``matmat``). ``as_operator`` of an object whose ``matvec`` is no function failed alike. Now TypeError
naming the argument when the operator is made (``from_hvp``'s ``fn``, ``matmat``, ``into`` as before,
by the same check)."""

import numpy as np
import pytest

from optkern import hessian

ident = lambda v: v


@pytest.mark.parametrize(
    "args, kw, match",
    [
        ((5, 3), {}, r"^matvec: expected a callable, got int"),
        ((ident, 3), {"matmat": 5}, r"^matmat: expected a callable or None, got int"),
        ((ident, 3), {"into": np.eye(3)}, r"^into: expected a callable or None, got ndarray"),
        ((ident, 3), {"avoid": 5}, r"^avoid: expected a callable or None, got int"),
        ((ident, 3), {"check": ("a",)}, r"^check: expected None or a tuple of three names"),
        ((ident, 3), {"check": "abc"}, r"^check: expected None or a tuple of three names"),
        ((5, 3), {"check": ("f", "g", "h")}, r"^f: expected a callable, got int"),
        ((ident, 3), {"matmat": 5, "check": ("f", "g", "h")}, r"^g: expected a callable or None, got int"),
    ],
)
def test_bad_functions_are_refused_by_name_when_made(args, kw, match):
    with pytest.raises(TypeError, match=match):
        hessian.CurvatureOperator(*args, **kw)


def test_from_hvp_and_as_operator_name_their_own_arguments():
    with pytest.raises(TypeError, match=r"^fn: expected a callable, got object"):
        hessian.from_hvp(object(), 3)
    with pytest.raises(TypeError, match=r"^into: expected a callable or None, got int"):
        hessian.from_hvp(ident, 3, into=3)

    class NotAFunction:
        shape = (3, 3)
        dtype = np.float64
        matvec = 5

    with pytest.raises(TypeError, match=r"^op\.matvec: expected a callable, got int"):
        hessian.trace(NotAFunction(), num_matvecs=2)


def test_good_functions_still_make_an_operator():
    A = np.diag([1.0, 2.0, 3.0])
    out = np.empty(3)
    op = hessian.CurvatureOperator(
        lambda v: A @ v, 3, matmat=lambda V: A @ V, into=lambda v, o: np.matmul(A, v, out=o), avoid=dict
    )
    np.testing.assert_array_equal(op.matvec(np.ones(3)), [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(op.matmat(np.eye(3)), A)
    assert op.matvec(np.ones(3), out=out) is out
    np.testing.assert_array_equal(out, [1.0, 2.0, 3.0])
