"""Torch running buffers updated by batch_norm / instance_norm with the mode given as a NumPy bool
(``training=np.True_``, ``use_input_stats=np.True_``: accepted as the bools they are, and the buffers
written) get their version counters bumped, as with Python's True. bumps_written compared the flag
with ``is True``: np.True_ is not True, so the tensors were written through their NumPy views with
their versions unchanged, and a graph that had saved them differentiated the new values silently
where torch refuses the backward after an in-place write."""

from __future__ import annotations

import numpy as np
import pytest

from optkern import norm

torch = pytest.importorskip("torch")


def _x(shape):
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("flag", [True, np.True_])
@pytest.mark.parametrize("positional", [False, True])
def test_batch_norm_training_bumps_running_buffers(flag, positional):
    rm, rv = torch.zeros(3), torch.ones(3)
    v = rm._version, rv._version
    if positional:
        norm.batch_norm(_x((4, 3, 2)), None, None, rm, rv, flag)
    else:
        norm.batch_norm(_x((4, 3, 2)), None, None, rm, rv, training=flag)
    assert bool((rm != 0).any())  # (written)
    assert rm._version > v[0] and rv._version > v[1]


@pytest.mark.parametrize("flag", [False, np.False_])
def test_batch_norm_eval_reads_only(flag):
    rm, rv = torch.zeros(3), torch.ones(3)
    v = rm._version, rv._version
    norm.batch_norm(_x((4, 3, 2)), None, None, rm, rv, training=flag)
    assert (rm._version, rv._version) == v


@pytest.mark.parametrize("flag", [True, np.True_])
def test_instance_norm_input_stats_bumps_running_buffers(flag):
    rm, rv = torch.zeros(3), torch.ones(3)
    v = rm._version, rv._version
    norm.instance_norm(_x((4, 3, 5)), None, None, rm, rv, use_input_stats=flag)
    assert bool((rm != 0).any())
    assert rm._version > v[0] and rv._version > v[1]


def test_a_saved_graph_of_the_buffer_refuses_its_backward():
    w = torch.ones(3, requires_grad=True)
    rm, rv = torch.zeros(3), torch.ones(3)
    loss = (w * rm).sum()  # (mul saves rm for w's gradient)
    norm.batch_norm(_x((4, 3, 2)), None, None, rm, rv, training=np.True_)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
