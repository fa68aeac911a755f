"""torch tensors written in place by the functional steps and by SWALP have their version counters
bumped, as ``Optimizer.step`` bumps its params': a graph saved before the write then refuses its
backward (as after torch's own in-place step) instead of silently differentiating the new values
(the gradient of w * w came out 2 * w_new)."""

import pickle

import numpy as np
import pytest

from optkern import functional
from optkern.swalp import SWALP

torch = pytest.importorskip("torch")

STALE = "modified by an inplace operation"


def _saved(w):
    """A graph that saved ``w`` (its backward reads it)."""
    return (w * w).sum()


@pytest.mark.parametrize(
    "name,state,kw",
    [
        ("sgd_", 1, dict(lr=0.5, momentum=0.9, first=True)),
        ("adagrad_", 1, dict(step=1)),
        ("adagrad_norm_", 0, dict()),
        ("rmsprop_", 1, dict()),
        ("adadelta_", 2, dict()),
        ("adam_", 2, dict(step=1)),
        ("adamw_", 2, dict(step=1)),
        ("nadam_", 2, dict(step=1)),
    ],
)
def test_functional_steps_bump_the_params_they_write(name, state, kw):
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    g = torch.tensor([1.0, 1.0], requires_grad=True)
    loss, g_loss = _saved(w), _saved(g)
    states = [[torch.zeros(2)] for _ in range(state)]
    if name == "adagrad_norm_":
        states = [torch.full((1,), 1e-4, dtype=torch.float64)]
    getattr(functional, name)([w], [g], *states, **kw)
    with pytest.raises(RuntimeError, match=STALE):
        loss.backward()
    g_loss.backward()  # (grads are only read: a graph that saved one still runs)
    np.testing.assert_array_equal(g.grad.numpy(), [2.0, 2.0])
    fn = getattr(functional, name)
    assert pickle.loads(pickle.dumps(fn)) is fn  # (still pickled by reference)


def test_swalp_bumps_the_params_it_quantizes():
    w = torch.nn.Parameter(torch.tensor([1.03, 2.0]))
    loss = _saved(w)
    opt = SWALP([w], lr=0.5, momentum=0.0, number="fixed_point", bits=8, frac=4, rounding="nearest")
    with pytest.raises(RuntimeError, match=STALE):  # quantized at construction
        loss.backward()
    loss = _saved(w)
    opt.step([torch.tensor([1.0, 1.0])])
    with pytest.raises(RuntimeError, match=STALE):  # and at each step
        loss.backward()
    np.testing.assert_array_equal(w.detach().numpy(), [0.5, 1.5])


def test_adagrad_norm_updates_a_torch_b_sq_in_place_as_a_numpy_one():
    grads = [np.array([3.0, 4.0], np.float32)]
    b_np, p_np = np.full(1, 1e-4), [np.ones(2, np.float32)]
    functional.adagrad_norm_(p_np, grads, b_np, lr=0.1)
    b_t, p_t = torch.full((1,), 1e-4, dtype=torch.float64), [torch.ones(2)]
    functional.adagrad_norm_(p_t, [torch.from_numpy(g) for g in grads], b_t, lr=0.1)  # (was refused)
    np.testing.assert_array_equal(b_t.numpy(), b_np)
    np.testing.assert_array_equal(p_t[0].numpy(), p_np[0])
    assert b_np[0] == 1e-4 + 25.0
