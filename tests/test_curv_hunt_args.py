"""Regressions from a defect hunt in the curvature operators' argument checks: ``hessian.from_mlp``
took malformed ``batches``, a non-MLP model or a non-callable ``progress`` and failed later with an
unnamed IndexError / AttributeError / TypeError; ``optkern.torch.hessian_operator`` raised torch's
"not writable" warning (an error under ``-W error``) for a read-only NumPy vector."""

from __future__ import annotations

import numpy as np
import pytest

from optkern import hessian
from optkern.nn import MLP


def _problem():
    model = MLP([3, 4, 2], dtype=np.float64)
    rng = np.random.default_rng(0)
    return model, model.init_params(0), rng.standard_normal((2, 3)), np.array([0, 1])


def test_from_mlp_refuses_an_x_y_pair_as_batches():
    # (read as two "batches" made of rows of x and y: IndexError, or for other shapes a wrong operator)
    model, p, x, y = _problem()
    with pytest.raises(TypeError, match=r"^batches: expected a sequence of \(x, y\) batches, got one"):
        hessian.from_mlp(model, p, batches=(x, y))


@pytest.mark.parametrize(
    "batches, match",
    [
        (lambda x, y: [x], r"^batches\[0\]: expected an \(x, y\) pair, got ndarray"),
        (lambda x, y: [(x,)], r"^batches\[0\]: expected an \(x, y\) pair, got 1 items"),
        (lambda x, y: [(x, y), (x, y, 1)], r"^batches\[1\]: expected an \(x, y\) pair, got 3 items"),
        (lambda x, y: [(x.tolist(), y)], r"^batches\[0\]: expected an \(x, y\) pair of arrays, got \(list, ndarray\)"),
        (lambda x, y: 3, r"^batches: expected a sequence"),
    ],
)
def test_from_mlp_names_a_malformed_batch(batches, match):
    model, p, x, y = _problem()
    with pytest.raises(TypeError, match=match):
        hessian.from_mlp(model, p, batches=batches(x, y))


def test_from_mlp_reads_a_generator_of_batches_once():
    model, p, x, y = _problem()
    v = np.linspace(-1, 1, model.num_params)
    op = hessian.from_mlp(model, p, batches=((x[i : i + 1], y[i : i + 1]) for i in range(2)))
    want = (model.hvp(p, x[:1], y[:1], v) + model.hvp(p, x[1:], y[1:], v)) / 2
    np.testing.assert_allclose(op.matvec(v), want, rtol=1e-13, atol=1e-15)


def test_from_mlp_names_model_and_progress():
    model, p, x, y = _problem()
    with pytest.raises(TypeError, match="^model: expected an optkern.nn.MLP"):
        hessian.from_mlp(object(), p, x, y)
    with pytest.raises(TypeError, match="^progress: expected a callable"):
        hessian.from_mlp(model, p, x, y, progress=3)


def test_torch_operator_takes_a_read_only_vector():
    torch = pytest.importorskip("torch")
    from optkern.torch import hessian_operator

    lin = torch.nn.Linear(4, 3).double()
    x = torch.randn(10, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    H = hessian_operator(lambda: (lin(x) ** 2).mean(), lin.parameters())
    v = np.linspace(-1, 1, H.shape[0])
    want = H.matvec(v.copy())
    v.flags.writeable = False  # (pytest's filterwarnings = error: torch's UserWarning failed the product)
    np.testing.assert_array_equal(H.matvec(v), want)
    np.testing.assert_array_equal(H.matvec(v, out=np.empty(H.shape[0])), want)
