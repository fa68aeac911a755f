"""A user's float64 product for a float32 operator (``from_hvp(fn, n, np.float32)``) with finite entries
past float32's range: the cast that ``_products.checked`` makes after its finiteness check turned them
into inf. ``matvec`` returned the inf product silently (the contract: a finite product, or ValueError
naming ``fn``), the estimators blamed ``op`` ("the operator's products are not finite"), and under
``-W error`` NumPy's "overflow encountered in cast" escaped from every one of them as a RuntimeWarning.
Now ValueError naming the function, before anything reads the product (or writes ``out``)."""

import warnings

import numpy as np
import pytest

from optkern import hessian

N = 4


def _op(**kw):
    return hessian.from_hvp(lambda v: v.astype(np.float64) * 1e300, N, np.float32, **kw)


CALLS = {
    "matvec": lambda op: op.matvec(np.ones(N, np.float32)),
    "matvec_out": lambda op: op.matvec(np.ones(N, np.float32), out=np.zeros(N, np.float32)),
    "power_iteration": lambda op: hessian.power_iteration(op),
    "trace": lambda op: hessian.trace(op, num_matvecs=3),
    "top_eigenvalues": lambda op: hessian.top_eigenvalues(op, 1),
    "cg": lambda op: hessian.cg(op, np.ones(N, np.float32)),
    "lanczos": lambda op: hessian.lanczos(op, 2),
    "spectral_density": lambda op: hessian.spectral_density(op, steps=2),
}


@pytest.mark.parametrize("name", list(CALLS))
@pytest.mark.parametrize("mode", ["error", "ignore"])
def test_a_product_past_the_operators_dtype_is_refused_naming_fn(name, mode):
    with warnings.catch_warnings():
        warnings.simplefilter(mode)
        with pytest.raises(ValueError, match=r"^fn: .*float32"):
            CALLS[name](_op())


def test_matmat_product_past_the_dtype_is_refused_naming_matmat():
    op = _op(matmat=lambda V: V.astype(np.float64) * 1e300)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"^matmat: .*float32"):
            op.matmat(np.ones((N, 2), np.float32))


def test_out_is_not_written_when_the_product_is_refused():
    out = np.full(N, 7.0, np.float32)
    with pytest.raises(ValueError, match=r"^fn: "):
        _op().matvec(np.ones(N, np.float32), out=out)
    np.testing.assert_array_equal(out, 7.0)


def test_a_float64_product_within_range_is_cast_as_before():
    op = hessian.from_hvp(lambda v: v.astype(np.float64) * 1e30, N, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = op.matvec(np.arange(1, N + 1, dtype=np.float32))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, (np.arange(1, N + 1, dtype=np.float64) * 1e30).astype(np.float32))
