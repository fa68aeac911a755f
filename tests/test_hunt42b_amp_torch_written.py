"""``amp.GradScaler`` unscaling torch tensors in place (defect hunt 42b).

Defect fixed: ``unscale_`` and ``step`` unscale the grads in place through their NumPy views, which
autograd does not see, and left the tensors' version counters as they were: a graph that had saved
a grad tensor differentiated its unscaled values silently (x.grad 2 where it is 8 below), where
torch refuses the backward after an in-place write -- as optkern's own clipping (``bumps_written``)
and optimizer steps already bump the tensors they write. Now every torch tensor the unscale wrote
is bumped once; grads only read (a low-precision optimizer's, checked here and unscaled inside its
step) are not.
"""

import numpy as np
import pytest

from optkern import amp, optim

torch = pytest.importorskip("torch")


def _saved():
    """(x, y, z): ``y`` (4, 4, 4) saved by z = sum(y * y)'s graph."""
    x = torch.full((3,), 4.0, requires_grad=True)
    y = x * 1.0
    return x, y, (y * y).sum()


@pytest.mark.parametrize("how", ["unscale_", "unscale_ anonymous", "step"])
def test_a_saved_tensor_unscaled_in_place_refuses_the_backward(how):
    x, y, z = _saved()
    g = y.detach()  # (shares y's memory and version counter)
    before = g._version
    scaler = amp.GradScaler(init_scale=4.0)
    if how == "unscale_":
        scaler.unscale_(optim.SGD([np.zeros(3, np.float32)], lr=0.1), [g])
    elif how == "unscale_ anonymous":
        scaler.unscale_([g])
    else:
        scaler.step(optim.SGD([np.zeros(3, np.float32)], lr=0.1), [g])
    np.testing.assert_array_equal(g.numpy(), np.ones(3, np.float32))
    assert g._version == before + 1
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z.backward()


def test_grads_only_read_are_not_bumped():
    # a master_weights optimizer's grads: checked here, unscaled inside its step (read only)
    p = np.zeros(3, np.float16)
    opt = optim.SGD([p], lr=1.0, master_weights=True)
    g = torch.full((3,), 8.0, dtype=torch.float16)
    before = g._version
    amp.GradScaler(init_scale=4.0).step(opt, [g])
    np.testing.assert_array_equal(p, np.full(3, -2.0, np.float16))
    assert g._version == before
