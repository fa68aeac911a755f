"""Curvature operators and pickle, continued (56th hunt, f).

- ``as_operator`` of a dense or SciPy sparse matrix (what every estimator makes of a matrix) was
  refused by pickle: "its matvec is '_quiet.<locals>.product', a lambda or a function defined inside
  another" -- a library function the caller never wrote, for an operator made of nothing but a
  picklable matrix. Now it pickles (and deep-copies) as its matrix and is rebuilt where it is loaded.
- ``from_hvp`` over a callable object of a class defined inside a function, or over a
  ``functools.partial`` holding a lambda, escaped the refusal: pickle's own AttributeError ("Can't
  pickle local object") or PicklingError, where every other unpicklable product raises the TypeError
  that says what to send instead."""

from __future__ import annotations

import copy
import functools
import pickle
import re

import numpy as np
import pytest
import scipy.sparse as sp

from optkern import hessian

rng = np.random.default_rng(56)
B = rng.standard_normal((7, 7))
S = B + B.T


def _weighted(w, v):
    """A module-level product (pickled by reference inside a partial)."""
    return w * (S @ v)


def _weighted_by(f, v):
    """A module-level product of a weight computed by ``f``."""
    return f() * (S @ v)


MATRICES = {
    "dense float64": lambda: S.copy(),
    "dense float32": lambda: S.astype(np.float32),
    "dense integer": lambda: np.diag(np.arange(1, 8)),
    "csr": lambda: sp.csr_matrix(S),
    "csr_array float32": lambda: sp.csr_array(S.astype(np.float32)),
}


@pytest.mark.parametrize("kind", sorted(MATRICES))
def test_a_matrix_operator_pickles_as_its_matrix(kind):
    M = MATRICES[kind]()
    op = hessian.as_operator(M)
    v = rng.standard_normal(7).astype(op.dtype)
    want, V = op.matvec(v), np.stack([v, 2 * v], 1)
    want_block = op.matmat(V)
    op.name = "mine"
    back = pickle.loads(pickle.dumps(op))
    assert type(back) is type(op) and back.shape == op.shape and back.dtype == op.dtype
    assert back.name == "mine" and back.num_matvecs == op.num_matvecs == 3
    np.testing.assert_array_equal(back.matvec(v), want)
    np.testing.assert_array_equal(back.matmat(V), want_block)
    # the estimators read it as they read the matrix
    assert hessian.trace(back, num_matvecs=5).estimate == hessian.trace(M, num_matvecs=5).estimate


def test_a_deep_copy_of_a_matrix_operator_is_detached():
    M = S.copy()
    op = hessian.as_operator(M)
    v = np.arange(1.0, 8.0)
    deep, shallow = copy.deepcopy(op), copy.copy(op)
    want = op.matvec(v)
    M *= 2
    np.testing.assert_array_equal(deep.matvec(v), want)
    np.testing.assert_array_equal(shallow.matvec(v), 2 * want)


def _local_callable():
    class Product:
        def __call__(self, v):
            return S @ v

    return Product()


@pytest.mark.parametrize(
    "name, fn, shown",
    [
        ("local class", _local_callable(), "_local_callable.<locals>.Product object"),
        ("partial over a lambda", functools.partial(_weighted_by, lambda: 2.0), "functools.partial"),
        ("partial of a lambda", functools.partial(lambda w, v: w * v, 2.0), "functools.partial"),
    ],
)
def test_unpicklable_products_are_refused_with_the_type_error(name, fn, shown):
    op = hessian.from_hvp(fn, 7)
    with pytest.raises(TypeError, match=r"^cannot pickle this CurvatureOperator: its fn is .*" + re.escape(shown)):
        pickle.dumps(op)
    # (copies still work, sharing the function)
    v = np.ones(7)
    np.testing.assert_array_equal(copy.deepcopy(op).matvec(v), op.matvec(v))


def test_picklable_partials_and_callable_objects_still_pickle():
    op = hessian.from_hvp(functools.partial(_weighted, 3.0), 7)
    v = np.arange(7.0)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(op)).matvec(v), 3.0 * (S @ v))
    # a callable object of a module-level class (NumPy's ufunc instances are such objects)
    op = hessian.from_hvp(np.negative, 7)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(op)).matvec(v), -v)
