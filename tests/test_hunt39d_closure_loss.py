"""optkern.optim's closure optimizers (LBFGS, NewtonCG, SAM) over torch tensors: a closure that
computes its loss with autograd returns a loss tensor that requires grad (``loss.backward();
return loss, [t.grad]``). Reading it with ``float()`` made torch warn "Converting a tensor with
requires_grad=True to a scalar may lead to unexpected behavior" at every evaluation (an error under
``-W error``); the loss's value is read detached now, as torch's own optimizers read it."""

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from optkern import hessian, optim  # noqa: E402


def _make(kind: str, params: list):
    if kind == "lbfgs":
        return optim.LBFGS(params, lr=0.5, max_iter=4)
    if kind == "newton_cg":
        return optim.NewtonCG(params, hessian.as_operator(2 * np.eye(3)))
    return optim.SAM(optim.SGD(params, lr=0.1), rho=0.05)


@pytest.mark.parametrize("kind", ["lbfgs", "newton_cg", "sam"])
def test_a_loss_that_requires_grad_is_read_without_a_warning(kind):
    w = torch.ones(3, dtype=torch.float64, requires_grad=True)
    opt = _make(kind, [w])  # (optkern writes w through a view, outside autograd)

    def closure():
        w.grad = None
        loss = (w**2).sum() + w.sum()
        loss.backward()
        return loss, [w.grad]

    was = torch.is_warn_always_enabled()
    torch.set_warn_always(True)  # (torch warns once per process otherwise: each case must see it)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            loss = opt.step(closure)
    finally:
        torch.set_warn_always(was)
    assert float(loss) == pytest.approx(6.0)
