"""Distributed curvature at its edges, on 2 ranks: a rank without rows under reduction="sum" (it
raised at the first product while the other rank waited in the collective), and an operator that
hands back its input (the rank sum was formed in the caller's vector)."""

from __future__ import annotations

import numpy as np
import pytest

from optkern import hessian, nn
from test_distributed import _ok, launch

SCRIPT = """
import numpy as np
import scipy.sparse.linalg as sla
from optkern import hessian, nn
from optkern.distributed import Communicator, distributed
c = Communicator(backend="mpi")
model = nn.MLP([3, 4, 2], activation="tanh", dtype=np.float64)
p = model.init_params(seed=0)
rng = np.random.default_rng(0)
x, y = rng.standard_normal((5, 3)), rng.integers(0, 2, 5)
xl, yl = (x, y) if c.rank == 0 else (x[:0], y[:0])
w = np.linspace(-1.0, 1.0, model.num_params)
for red in ("sum", "mean"):
    want = hessian.from_mlp(model, p, x, y, reduction=red) @ w
    got = hessian.from_mlp(model, p, xl, yl, comm=c, reduction=red) @ w
    assert np.allclose(got, want, rtol=1e-12, atol=1e-14), (red, got, want)
for op in (sla.LinearOperator((4, 4), matvec=lambda v: v, dtype=np.float64), np.eye(4)):
    v = np.arange(4.0)
    out = distributed(op, c) @ v
    assert np.array_equal(v, np.arange(4.0)), v  # the caller's vector untouched
    assert np.array_equal(out, 2 * np.arange(4.0)), out
print("edges: ok", flush=True)
"""


@pytest.mark.spawns
def test_a_rank_without_rows_and_an_operator_returning_its_input(tmp_path):
    pytest.importorskip("scipy")
    script = tmp_path / "edges.py"
    script.write_text(SCRIPT)
    _ok(launch(2, str(script), timeout=180), "edges: ok")


def test_every_batch_empty_is_refused_without_a_communicator():
    model = nn.MLP([3, 4, 2], activation="tanh", dtype=np.float64)
    p = model.init_params(seed=0)
    with pytest.raises(ValueError, match=r"^x: needs at least one row"):
        hessian.from_mlp(model, p, np.zeros((0, 3)), np.zeros(0, np.int64))


def test_empty_batches_beside_others_add_nothing():
    model = nn.MLP([3, 4, 2], activation="tanh", dtype=np.float64)
    p = model.init_params(seed=0)
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((6, 3)), rng.integers(0, 2, 6)
    v = rng.standard_normal(model.num_params)
    empty = (x[:0], y[:0])
    for red in ("sum", "mean"):
        want = hessian.from_mlp(model, p, batches=[(x[:2], y[:2]), (x[2:], y[2:])], reduction=red) @ v
        got = hessian.from_mlp(model, p, batches=[empty, (x[:2], y[:2]), empty, (x[2:], y[2:])], reduction=red) @ v
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)
