"""The curvature constructors agree on ``dtype`` and ``name``: ``dtype`` is float32 or float64,
``None`` refused everywhere (NumPy reads ``np.dtype(None)`` as float64, so ``hessian.from_hvp`` took
it as float64 while ``nn.MLP`` refused it: one checker now, TypeError naming ``dtype``); ``name``
is a string (``from_hvp(name=3)`` was stored and shown in reprs: TypeError naming ``name``)."""

from __future__ import annotations

import numpy as np
import pytest

from optkern import hessian, nn
from optkern.hessian import CurvatureOperator

N = 7


def _hvp(v):
    return 2.0 * v


CONSTRUCTORS = {
    "from_hvp": lambda **kw: hessian.from_hvp(_hvp, N, **kw),
    "CurvatureOperator": lambda **kw: CurvatureOperator(_hvp, N, **kw),
    "MLP": lambda **kw: nn.MLP([3, 4, 2], **kw),
}


@pytest.mark.parametrize(
    "bad", [None, "int32", np.complex128, "float16", object()], ids=["None", "int32", "complex128", "float16", "object"]
)
@pytest.mark.parametrize("make", sorted(CONSTRUCTORS))
def test_every_curvature_constructor_refuses_the_same_dtypes_naming_dtype(make, bad):
    with pytest.raises(TypeError, match=r"^dtype: expected float32 or float64"):
        CONSTRUCTORS[make](dtype=bad)


@pytest.mark.parametrize("good", [np.float32, "float64", np.dtype(">f8")], ids=str)
@pytest.mark.parametrize("make", sorted(CONSTRUCTORS))
def test_every_curvature_constructor_takes_the_same_float_dtypes(make, good):
    obj = CONSTRUCTORS[make](dtype=good)
    assert obj.dtype == np.dtype(good).newbyteorder("=") and obj.dtype.isnative


@pytest.mark.parametrize("bad", [3, None, b"hvp", ("a",)], ids=repr)
@pytest.mark.parametrize("make", ["from_hvp", "CurvatureOperator"])
def test_a_non_string_name_is_refused_naming_name(make, bad):
    with pytest.raises(TypeError, match=r"^name: expected a str"):
        CONSTRUCTORS[make](name=bad)


def test_from_grad_refuses_a_non_string_name():
    with pytest.raises(TypeError, match=r"^name: expected a str"):
        hessian.from_grad(lambda p: 2.0 * p, np.ones(N), name=3)


def test_a_string_name_is_kept_and_products_still_right():
    op = hessian.from_hvp(_hvp, N, name="mine")
    v = np.random.default_rng(56).standard_normal(N)
    assert op.name == "mine"
    np.testing.assert_array_equal(op.matvec(v), 2.0 * v)
