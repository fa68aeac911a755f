"""Curvature operators and pickle (55th hunt, c): what a ``multiprocessing`` user sends a worker.

``pickle.dumps`` of any operator raised a PicklingError from inside pickle ("attribute lookup
CurvatureLinearOperator ... failed"). Now ``from_mlp``'s operator pickles as its recipe (model,
params, batches, options; a ``fixed`` one as the point its first product took) and is rebuilt
where it is loaded; ``from_hvp`` over module-level functions pickles them by reference; an operator
over lambdas or functions defined inside another is refused at ``dumps`` with a TypeError saying
what to send instead. Copies (``copy.copy`` / ``deepcopy``) keep working for every operator."""

from __future__ import annotations

import concurrent.futures
import copy
import multiprocessing
import pickle
import re

import numpy as np
import pytest

from optkern import hessian
from optkern.nn import MLP

D = np.linspace(-2.0, 3.0, 6)


def diagonal_hvp(v):
    """A module-level product: pickled by reference (a spawned worker imports this module)."""
    return D * v


rng = np.random.default_rng(5)
MODEL = MLP((5, 7, 3), norm="batch")
X = rng.standard_normal((9, 5)).astype(np.float32)
Y = rng.integers(0, 3, 9)

OPTIONS = [
    {},
    {"kind": "ggn"},
    {"fixed": True},
    {"block": "layer2", "reduction": "sum"},
    {"batches": "two", "block_size": 2},
    {"batches": "two", "fixed": True, "kind": "ggn"},
]


def _build(params, options):
    options = dict(options)
    if options.pop("batches", None) == "two":
        return hessian.from_mlp(MODEL, params, batches=[(X, Y), (X[:4], Y[:4])], **options)
    return hessian.from_mlp(MODEL, params, X, Y, **options)


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_from_mlp_operator_pickles_as_the_same_operator(options):
    params = MODEL.init_params(1)
    op = _build(params, options)
    n = op.shape[0]
    v = rng.standard_normal(n).astype(np.float32)
    V = rng.standard_normal((n, 3)).astype(np.float32)
    want, want_block = op.matvec(v), op.matmat(V)
    back = pickle.loads(pickle.dumps(op))
    assert type(back) is type(op) and back.shape == op.shape and back.dtype == op.dtype and back.name == op.name
    assert back.num_matvecs == op.num_matvecs == 4
    np.testing.assert_array_equal(back.matvec(v), want)
    np.testing.assert_array_equal(back.matmat(V), want_block)
    out = np.empty(n, np.float32)
    np.testing.assert_array_equal(back.matvec(v, out=out), want)


def test_a_fixed_operator_pickles_the_point_of_its_first_product():
    params = MODEL.init_params(2)
    op = hessian.from_mlp(MODEL, params, X, Y, fixed=True)
    v = rng.standard_normal(MODEL.num_params).astype(np.float32)
    want = op.matvec(v)
    params *= 3  # (not seen by the fixed operator, nor by its pickle)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(op)).matvec(v), want)
    # a live operator pickles the values its arrays hold now, as its next product reads them
    live = hessian.from_mlp(MODEL, params, X, Y)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(live)).matvec(v), live.matvec(v))


def test_the_unpickled_operator_is_detached_from_the_callers_arrays():
    params = MODEL.init_params(3)
    op = hessian.from_mlp(MODEL, params, X, Y)
    v = rng.standard_normal(MODEL.num_params).astype(np.float32)
    back = pickle.loads(pickle.dumps(op))
    before = back.matvec(v)
    params *= 2
    np.testing.assert_array_equal(back.matvec(v), before)
    assert not np.array_equal(op.matvec(v), before)


def _product(op_and_v):
    op, v = op_and_v
    return op.matvec(v)


def test_an_operator_sent_to_a_spawned_worker():
    params = MODEL.init_params(4)
    ops = [hessian.from_mlp(MODEL, params, X, Y, kind="ggn"), hessian.from_hvp(diagonal_hvp, 6)]
    vs = [rng.standard_normal(op.shape[0]).astype(op.dtype) for op in ops]
    # (an executor, not multiprocessing.Pool: a worker that dies fails the test with BrokenProcessPool
    # where Pool waited for its lost task forever -- a whole suite run hung so; and a timeout)
    pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    try:
        got = [f.result(timeout=120) for f in [pool.submit(_product, ov) for ov in zip(ops, vs)]]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    for op, v, g in zip(ops, vs, got):
        np.testing.assert_array_equal(g, op.matvec(v))


def test_from_hvp_over_module_level_functions_pickles():
    op = hessian.from_hvp(diagonal_hvp, 6)
    back = pickle.loads(pickle.dumps(op))
    v = np.arange(1.0, 7.0)
    np.testing.assert_array_equal(back.matvec(v), D * v)
    assert back._mv is diagonal_hvp  # (by reference)


def _refused():
    params = MODEL.init_params(5)
    yield "lambda", "'_refused.<locals>.<lambda>'", hessian.from_hvp(lambda v: 2 * v, 4)

    def local(v):
        return 2 * v

    yield "local", "'_refused.<locals>.local'", hessian.from_hvp(local, 4)
    yield "from_grad", "'from_grad.<locals>.matvec'", hessian.from_grad(lambda p: 2 * p, np.ones(3))
    yield (
        "progress",
        "progress is '_refused.<locals>.<lambda>'",
        hessian.from_mlp(MODEL, params, X, Y, progress=lambda d, t: None),
    )


@pytest.mark.parametrize("case", list(_refused()), ids=lambda c: c[0])
def test_operators_over_local_functions_are_refused_with_a_type_error(case):
    _, name, op = case
    with pytest.raises(TypeError, match=r"^cannot pickle this CurvatureOperator: its .*" + re.escape(name)):
        pickle.dumps(op)
    # (copies still work: a deep copy shares the functions, as Python's deepcopy does)
    v = np.ones(op.shape[0], op.dtype)
    for c in (copy.copy(op), copy.deepcopy(op)):
        assert type(c) is type(op)
        np.testing.assert_array_equal(c.matvec(v), op.matvec(v))


def test_deepcopy_of_a_from_mlp_operator_is_detached():
    params = MODEL.init_params(6)
    op = hessian.from_mlp(MODEL, params, X, Y)
    v = rng.standard_normal(MODEL.num_params).astype(np.float32)
    deep, shallow = copy.deepcopy(op), copy.copy(op)
    want = op.matvec(v)
    params *= 2
    np.testing.assert_array_equal(deep.matvec(v), want)
    np.testing.assert_array_equal(shallow.matvec(v), op.matvec(v))  # (the shallow copy reads the params)
