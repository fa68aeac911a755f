"""A torch tensor param narrowed or widened at the same address (``p.data = p.data[:3]``,
``p.data = base`` for a ``p`` made as ``base[:4]``) is followed to its new size (hunt 49d).

The optimizers that step torch tensors through NumPy views (optkern.optim's, LBFGS, NewtonCG,
ShardedOptimizer) followed a tensor by its address and dtype alone (``optim._given.follow``): a
narrowed tensor kept its old view, and the step went on writing elements the tensor no longer
showed, with grads of its old size (a grad of its new size was refused against the old view); a
widened one had its new elements never stepped; a square matrix transposed (``p.data = p.data.t()``)
was stepped each element with another's grad. The element count and ``is_contiguous()`` are compared
too now: the tensor is viewed again, as ``tensor.data =`` to new memory is (a transposed one is then
refused as not C-contiguous).
"""

from __future__ import annotations

import numpy as np
import pytest

import optkern.optim as O
from given_steppers import stepper

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("kind", ["sgd", "lbfgs", "newton"])
def test_a_narrowed_param_with_state_is_refused_nothing_written(kind):
    ps = [torch.linspace(-1, 1, 7), torch.tensor([0.5, -0.25, 2.0])]
    step = stepper(kind, ps)
    step()
    base = ps[0].data
    ps[0].data = base[:3]  # (the same address: only the size differs)
    before = [base.clone(), ps[1].clone()]
    for _ in range(2):  # (at every step, not only the first)
        # (SGD names its state, the others their flat vector; before: "grads[0]: expected 7 elements")
        with pytest.raises(ValueError, match=r"momentum_buffers\[0\]: expected 3|hold 6 elements"):
            step()
        assert torch.equal(base, before[0]) and torch.equal(ps[1], before[1])
    ps[0].data = base  # (given its size back: stepped again)
    step()
    assert not torch.equal(base, before[0])


def test_a_narrowed_param_without_state_is_stepped_as_torch_steps_it():
    base = torch.linspace(-1, 1, 7)
    p, q = base.clone(), torch.nn.Parameter(base.clone())
    opt = O.SGD([p], lr=0.5)
    ref = torch.optim.SGD([q], lr=0.5)
    p.data, q.data = p.data[:3], q.data[:3]
    g = torch.tensor([1.0, -2.0, 4.0])
    opt.step([g.numpy()])  # (refused before: "grads[0]: expected 7 elements, got 3")
    q.grad = g
    ref.step()
    assert torch.equal(p, q)
    # the elements the tensor no longer shows are left as they were
    assert torch.equal(p.data.as_strided((7,), (1,)), torch.cat([q.detach(), base[3:]]))


def test_a_widened_param_is_stepped_whole():
    base = torch.linspace(-1, 1, 8)
    p = base[:4]
    opt = O.SGD([p], lr=1.0)
    p.data = base  # (the same address, twice the elements)
    opt.step([np.ones(8, np.float32)])  # (refused before: "grads[0]: expected 4 elements, got 8")
    assert torch.equal(base, torch.linspace(-1, 1, 8) - 1.0)


def test_zero1_refuses_a_narrowed_param():
    from mpi4py import MPI

    from optkern.distributed import Communicator, ShardedOptimizer

    ps = [torch.linspace(-1, 1, n) for n in (7, 5, 9)]
    z = ShardedOptimizer(O.Adam, ps, Communicator(MPI.COMM_SELF), lr=0.1)
    grads = [np.full(n, 0.25, np.float32) for n in (7, 5, 9)]
    z.step(grads)
    base = ps[1].data
    ps[1].data = base[:2]
    before = [base.clone(), ps[0].clone(), ps[2].clone()]
    flat = z._flat.copy()
    for _ in range(2):
        with pytest.raises(ValueError, match=r"params\[1\]: given new memory of shape \(2,\)"):
            z.step(grads)
        assert all(torch.equal(a, b) for a, b in zip([base, ps[0], ps[2]], before))
        assert np.array_equal(z._flat, flat)
    ps[1].data = base
    z.step(grads)
    assert not torch.equal(base, before[0])


@pytest.mark.parametrize("kind", ["sgd", "lbfgs"])
def test_a_transposed_square_param_is_refused_nothing_written(kind):
    ps = [torch.arange(4.0).reshape(2, 2), torch.tensor([0.5, -0.25, 2.0])]
    if kind == "sgd":
        opt = O.SGD(ps, lr=1.0)
        g = np.array([[0.0, 1.0], [0.0, 0.0]], np.float32)  # (the grad of p[0, 1] only)

        def step():
            return opt.step([g, np.zeros(3, np.float32)])
    else:
        step = stepper(kind, ps)
    ps[0].data = ps[0].data.t()  # (the same address, size and shape: only the strides differ)
    before = [p.clone() for p in ps]
    for _ in range(2):
        # (named "params[0]" by SGD's array checks, "param_groups[0]['params'][0]" by LBFGS's)
        with pytest.raises(ValueError, match=r"params'?\]?\[0\]: .*C-contiguous"):
            step()
        assert all(torch.equal(a, b) for a, b in zip(ps, before))


def test_an_optimizer_pickled_before_sizes_were_followed_steps():
    """An optimizer pickled by a version that followed addresses and dtypes only (no sizes, no
    layouts in its state) steps its tensors, and follows them from then on."""
    p = torch.zeros(5)
    state = O.SGD([p], lr=1.0).__getstate__()
    for k in ("_tensor_sizes", "_tensor_dense"):
        del state[k]
    opt = O.SGD.__new__(O.SGD)
    opt.__setstate__(state)  # (what pickle.loads does)
    opt.step([np.ones(5, np.float32)])
    assert torch.equal(p, -torch.ones(5))
    p.data = p.data[:2]
    opt.step([np.ones(2, np.float32)])
    assert torch.equal(p, -2 * torch.ones(2))
