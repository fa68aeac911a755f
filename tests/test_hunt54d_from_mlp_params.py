"""``hessian.from_mlp`` checks its ``params`` when it builds the operator: it took ``None``, a string, a
list, float64 params for a float32 model or params of another length, and returned an operator whose
first product raised -- inside whichever estimator or solver the operator was handed to (``cg``,
``top_eigenvalues``, an optimizer's ``NewtonCG`` step), naming a ``params`` that call never took. The
params' kind, dtype and shape cannot change between the operator and its products (their values may:
``fixed=False`` reads them at each product); the batches' contents are still checked by the products,
as documented."""

import numpy as np
import pytest

from optkern import hessian
from optkern.nn import MLP

m = MLP((3, 4, 2))  # float32, 26 parameters
X = np.ones((3, 3), np.float32)
Y = np.array([0, 1, 1])


@pytest.mark.parametrize("fixed", [False, True])
@pytest.mark.parametrize(
    "params, err, match",
    [
        (None, TypeError, r"^params: expected a numpy or cupy array, got NoneType$"),
        ("abc", TypeError, r"^params: expected a numpy or cupy array, got str$"),
        ([1.0] * 26, TypeError, r"^params: expected a numpy or cupy array, got list$"),
        (np.ones(26), TypeError, r"^params: expected float32, got float64$"),
        (np.ones(26, np.int32), TypeError, r"^params: expected float32, got int32$"),
        (np.ones(25, np.float32), ValueError, r"^params: expected shape \(26,\), got \(25,\)$"),
        (np.ones((2, 13), np.float32), ValueError, r"^params: expected shape \(26,\), got \(2, 13\)$"),
    ],
)
def test_bad_params_are_refused_when_the_operator_is_built(params, err, match, fixed):
    with pytest.raises(err, match=match):
        hessian.from_mlp(m, params, X, Y, fixed=fixed)
    with pytest.raises(err, match=match):
        hessian.from_mlp(m, params, batches=[(X, Y)], kind="ggn", fixed=fixed)


def test_params_in_either_byte_order_or_strided_are_taken():
    """What the products take is what the constructor takes: a byte-swapped float32 params (its
    values) and a strided view are read through a native, contiguous copy."""
    p = m.init_params(0)
    v = np.linspace(-1.0, 1.0, 26).astype(np.float32)
    want = hessian.from_mlp(m, p, X, Y) @ v
    swapped = p.astype(p.dtype.newbyteorder(">"))
    np.testing.assert_array_equal(hessian.from_mlp(m, swapped, X, Y) @ v, want)
    strided = np.repeat(p, 2)[::2]
    np.testing.assert_array_equal(hessian.from_mlp(m, strided, X, Y) @ v, want)
