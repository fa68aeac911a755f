"""The PyHessian row of `optkern bench hvp`: the torch copy of the MLP is the same function, the
torch.eig stand-in is installed for the call only, and a missing PyHessian is reported, not raised."""

import sys

import numpy as np
import pytest

from optkern import hessian
from optkern.benchmarks import pyhessian_row
from optkern.nn import MLP

torch = pytest.importorskip("torch")


def _problem():
    model = MLP([13, 9, 7, 4], activation="tanh", dtype=np.float32)
    rng = np.random.default_rng(5)
    params = model.init_params(1)
    x = rng.standard_normal((33, 13)).astype(np.float32)
    y = rng.integers(0, 4, 33)
    return model, params, x, y


def test_torch_model_computes_the_same_function():
    model, params, x, y = _problem()
    net = pyhessian_row.torch_model(torch, model, params)
    got = net(torch.as_tensor(x)).detach().numpy()
    np.testing.assert_allclose(got, model.predict(params, x), rtol=1e-5, atol=1e-6)
    loss = torch.nn.CrossEntropyLoss()(net(torch.as_tensor(x)), torch.as_tensor(y))
    assert abs(float(loss.detach()) - float(model.loss(params, x, y))) <= 1e-5


def test_torch_eig_stand_in_is_scoped_and_correct():
    before = getattr(torch, "eig", None)
    T = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    with pyhessian_row._torch_eig(torch):
        vals, vecs = torch.eig(T, eigenvectors=True)
    assert getattr(torch, "eig", None) is before
    np.testing.assert_allclose(vals[:, 0].numpy(), np.linalg.eigvalsh(T.numpy()), rtol=1e-12)
    assert np.all(vals[:, 1].numpy() == 0)
    np.testing.assert_allclose((T @ vecs).numpy(), (vecs * vals[:, 0]).numpy(), atol=1e-12)


def test_missing_pyhessian_gives_none(monkeypatch):
    model, params, x, y = _problem()
    monkeypatch.setitem(sys.modules, "pyhessian", None)
    assert pyhessian_row.factory(torch, model, params, x, y, 5, {}) is None


def test_pyhessian_density_finds_our_top_eigenvalue():
    pytest.importorskip("pyhessian")
    model, params, x, y = _problem()
    got: dict = {}
    pyhessian_row.factory(torch, model, params, x, y, 30, got)()
    m64 = MLP([13, 9, 7, 4], activation="tanh", dtype=np.float64)
    op = hessian.from_mlp(m64, params.astype(np.float64), x.astype(np.float64), y)
    top = hessian.top_eigenvalues(op, 1).eigenvalues[0]
    assert abs(got["top"] - top) <= 1e-4 * abs(top)
