"""A torch tensor param re-viewed in place with another dtype (``p.data = p.data.view(torch.int32)``:
the same memory, the same address) is refused naming the param, nothing written (hunt 48b).

The optimizers that step the torch tensors given to them through NumPy views (optkern.optim's, LBFGS,
NewtonCG, ShardedOptimizer) follow a tensor to new memory by its address alone
(``optim._given.follow``): a dtype swap at the same address went unnoticed, and the step went on
writing float32 updates into memory the tensor now shows as int32 (or float16 pairs) -- silently.
Such a tensor is now re-viewed as it is, and refused as a tensor given memory of another dtype is;
viewed back as its dtype, it is stepped again from there.
"""

from __future__ import annotations

import numpy as np
import pytest

import optkern.optim as O
from given_steppers import stepper

torch = pytest.importorskip("torch")

_VIEWS = (torch.int32, torch.float16)  # (the same bytes: int32 as many elements, float16 twice as many)


@pytest.mark.parametrize("view", _VIEWS)
@pytest.mark.parametrize("kind", ["sgd", "lbfgs", "newton"])
def test_a_param_re_viewed_as_another_dtype_is_refused(kind, view):
    ps = [torch.linspace(-1, 1, 7), torch.tensor([0.5, -0.25, 2.0])]
    step = stepper(kind, ps)
    step()
    ps[0].data = ps[0].data.view(view)
    before = [p.clone() for p in ps]
    for _ in range(2):  # (at every step, not only the first)
        with pytest.raises(TypeError, match=r"param_groups\[0\]\['params'\]\[0\]"):
            step()
        assert all(torch.equal(a, b) for a, b in zip(ps, before))
    ps[0].data = ps[0].data.view(torch.float32)  # (viewed back: stepped again, from there)
    step()
    assert not torch.equal(ps[0].view(view), before[0])


@pytest.mark.parametrize("view", _VIEWS)
def test_zero1_refuses_a_param_re_viewed_as_another_dtype(view):
    from mpi4py import MPI

    from optkern.distributed import Communicator, ShardedOptimizer

    ps = [torch.linspace(-1, 1, n) for n in (7, 5, 9)]
    z = ShardedOptimizer(O.Adam, ps, Communicator(MPI.COMM_SELF), lr=0.1)
    grads = [np.full(n, 0.25, np.float32) for n in (7, 5, 9)]
    z.step(grads)
    ps[1].data = ps[1].data.view(view)
    before = [p.clone() for p in ps]
    flat = z._flat.copy()
    for _ in range(2):
        with pytest.raises(TypeError, match=r"params\[1\]"):
            z.step(grads)
        assert all(torch.equal(a, b) for a, b in zip(ps, before)) and np.array_equal(z._flat, flat)
    ps[1].data = ps[1].data.view(torch.float32)
    z.step(grads)
    assert not torch.equal(ps[1].view(view), before[1])
