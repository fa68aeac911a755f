"""``from_mlp(..., fixed=True)`` is the curvature at the values the params and batches hold at its
first product. A first call refused for its ``out`` (sharing memory with the params) took the
copies anyway, before refusing: the params changed after it were never seen, and the operator was
the curvature at a point of a call that made no product. (A refused ``v`` took none: the two refusals
disagreed.) So did a first call refused for a later batch (a label out of range in ``batches[1]``):
the params were copied with the first batch. Now ``out`` and every batch are checked before the
copies are taken."""

import numpy as np
import pytest

from optkern import hessian, nn


@pytest.mark.parametrize("batches", [1, 2])
@pytest.mark.parametrize("kind", ["hessian", "ggn"])
def test_a_refused_first_call_takes_no_copy(batches, kind):
    model = nn.MLP([3, 4, 3], norm="batch", dtype=np.float64)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((6, 3)), rng.integers(0, 3, 6)
    data = [(x, y)] if batches == 1 else [(x[:3], y[:3]), (x[3:], y[3:])]
    p = model.init_params(0)
    op = hessian.from_mlp(model, p, batches=data, kind=kind, fixed=True)
    v = np.linspace(-1.0, 1.0, op.shape[0])
    with pytest.raises(ValueError, match="out shares memory with params"):
        op.matvec(v, out=p)
    p *= 1.5  # (changed in place before the first product)
    want = hessian.from_mlp(model, p, batches=data, kind=kind).matvec(v)
    out = np.empty_like(v)
    for got in (op.matvec(v), op.matvec(v, out=out), op.matmat(v[:, None])[:, 0]):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    p *= 2.0  # (after the first product: not seen, as documented)
    np.testing.assert_allclose(op.matvec(v), want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("call", ["matvec", "out", "matmat"])
def test_a_first_call_refused_for_a_later_batch_takes_no_copy(call):
    model = nn.MLP([3, 4, 3], dtype=np.float64)
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((6, 3)), rng.integers(0, 3, 6)
    y2 = y[3:].copy()
    p = model.init_params(0)
    op = hessian.from_mlp(model, p, batches=[(x[:3], y[:3]), (x[3:], y2)], fixed=True)
    y2[0] = 7  # (no such class: refused -- set after the build, which refuses it too, test_hunt55c_from_mlp_data)
    v = np.linspace(-1.0, 1.0, op.shape[0])
    run = {
        "matvec": lambda: op.matvec(v),
        "out": lambda: op.matvec(v, out=np.empty_like(v)),
        "matmat": lambda: op.matmat(v[:, None]),
    }[call]
    with pytest.raises(ValueError, match="7"):
        run()
    y2[0] = y[3]  # (corrected in place, and the params changed, before the first product)
    p *= 1.5
    want = hessian.from_mlp(model, p, x, y).matvec(v)
    np.testing.assert_allclose(np.ravel(run()), want, rtol=1e-12, atol=1e-14)
