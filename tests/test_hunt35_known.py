"""Session 35's known defects, each pinned by a test that failed before its fix.

* ``hessian.from_mlp(..., fixed=True)``: ``op.matvec(v, out=params)`` wrote the product over the
  caller's params (the operator reads its own copy, so the product was right, but the caller's
  weights were silently clobbered); an ``out`` over a batch's ``x`` / ``y`` likewise. Refused like
  the live operator's overlaps: ValueError naming ``out``, nothing written.
"""

from __future__ import annotations

import numpy as np
import pytest

from optkern import hessian
from optkern.nn import MLP


def _fixed_problem(loss="mse", batches=2):
    rng = np.random.default_rng(3)
    model = MLP(sizes=[4, 6, 3], activation="tanh", loss=loss, dtype=np.float64)
    p = model.init_params(0)
    data = []
    for b in range(batches):
        x = rng.standard_normal((5 + b, 4))
        y = rng.standard_normal((x.shape[0], 3)) if loss == "mse" else rng.integers(0, 3, x.shape[0])
        data.append((x, y))
    return model, p, data, rng


def _aliased(shape, n, dtype=np.float64):
    """(an array of ``shape``, an ``(n,)`` float64 array over the same memory)."""
    size = int(np.prod(shape))
    buf = np.zeros(max(size, n))
    return buf[:size].view(dtype).reshape(shape), buf[:n]


@pytest.mark.parametrize("kind", ["hessian", "ggn"])
@pytest.mark.parametrize("first", [True, False])  # the out= product is the operator's first, or a later one
def test_fixed_operator_refuses_an_out_over_the_callers_params(kind, first):
    model, p, data, rng = _fixed_problem()
    op = hessian.from_mlp(model, p, kind=kind, batches=data, fixed=True)
    v = rng.standard_normal(model.num_params)
    if not first:
        op.matvec(v)
    before = p.copy()
    with pytest.raises(ValueError, match="^out shares memory with params"):
        op.matvec(v, out=p)
    np.testing.assert_array_equal(p, before)
    with pytest.raises(ValueError, match="^out shares memory with params"):
        op.matvec(v, out=p[::-1][::-1])  # (a view of it: any overlap)
    np.testing.assert_array_equal(p, before)
    # one batch: the product goes straight into `out` (no checking pass over later batches)
    one = hessian.from_mlp(model, p, data[0][0], data[0][1], kind=kind, fixed=True)
    with pytest.raises(ValueError, match="^out shares memory with params"):
        one.matvec(v, out=p)
    np.testing.assert_array_equal(p, before)


@pytest.mark.parametrize("which", [0, 1])  # the first batch or a later one
@pytest.mark.parametrize("name", ["x", "y"])
def test_fixed_operator_refuses_an_out_over_a_batchs_arrays(which, name):
    model, p, data, rng = _fixed_problem()
    n = model.num_params
    arr = data[which][0 if name == "x" else 1]
    alias, out = _aliased(arr.shape, n)
    alias[...] = arr
    data[which] = (alias, data[which][1]) if name == "x" else (data[which][0], alias)
    op = hessian.from_mlp(model, p, kind="hessian", batches=data, fixed=True)
    live = hessian.from_mlp(model, p, kind="hessian", batches=[(a.copy(), b.copy()) for a, b in data])
    v = rng.standard_normal(n)
    saved = alias.copy()
    with pytest.raises(ValueError, match="^out shares memory with"):
        op.matvec(v, out=out)
    np.testing.assert_array_equal(alias, saved)
    # (the operator still works, and a separate out is fine)
    np.testing.assert_array_equal(op.matvec(v, out=np.empty(n)), live.matvec(v))


def test_fixed_operator_out_elsewhere_still_written_directly():
    model, p, data, rng = _fixed_problem()
    op = hessian.from_mlp(model, p, kind="ggn", batches=data, fixed=True)
    live = hessian.from_mlp(model, p, kind="ggn", batches=data)
    v = rng.standard_normal(model.num_params)
    out = np.full(model.num_params, np.nan)
    assert op.writes_into and op.matvec(v, out=out) is out
    np.testing.assert_array_equal(out, live.matvec(v))
