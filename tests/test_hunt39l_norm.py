"""optkern.norm's functions (39th hunt, l): torch tensors given as ``out`` or as the running buffers
that a training-mode ``batch_norm`` / ``instance_norm`` updates were written through NumPy views
autograd does not see, their version counters left alone: a graph that had saved such a tensor
differentiated its new values silently, where torch refuses the backward after an in-place write.
A call that only reads them (eval mode) or is refused by its checks leaves the counters alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from optkern import norm


def _t(shape, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape))


def _saved_graph(t):
    """A graph that saved ``t`` for its backward (as ``a * t`` saves ``t``)."""
    a = torch.ones(t.shape, dtype=t.dtype, requires_grad=True)
    return (a * t).sum()


def _forwards():
    x = _t((4, 3, 2))
    return {
        "batch_norm": lambda out: norm.batch_norm(x, out=out),
        "layer_norm": lambda out: norm.layer_norm(x, (2,), out=out),
        "rms_norm": lambda out: norm.rms_norm(x, (2,), out=out),
        "group_norm": lambda out: norm.group_norm(x, 1, out=out),
        "instance_norm": lambda out: norm.instance_norm(x, out=out),
    }


@pytest.mark.parametrize("name", sorted(_forwards()))
def test_a_torch_out_is_written_as_an_in_place_torch_op(name):
    out = torch.zeros(4, 3, 2, dtype=torch.float64)
    graph, before = _saved_graph(out), out._version
    y, _ = _forwards()[name](out)
    assert out.abs().sum() > 0
    assert out._version > before
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        graph.backward()


def _backwards():
    x, dy = _t((4, 3, 2)), _t((4, 3, 2), seed=1)
    _, bn = norm.batch_norm(x)
    _, ln = norm.layer_norm(x, (2,))
    _, rn = norm.rms_norm(x, (2,))
    _, gn = norm.group_norm(x, 1)
    _, inn = norm.instance_norm(x)
    return {
        "batch_norm_backward": lambda out: norm.batch_norm_backward(dy, x, None, bn, out=out),
        "layer_norm_backward": lambda out: norm.layer_norm_backward(dy, x, None, ln, out=out),
        "rms_norm_backward": lambda out: norm.rms_norm_backward(dy, x, None, rn, out=out),
        "group_norm_backward": lambda out: norm.group_norm_backward(dy, x, None, gn, out=out),
        "instance_norm_backward": lambda out: norm.instance_norm_backward(dy, x, None, inn, out=out),
    }


@pytest.mark.parametrize("name", sorted(_backwards()))
def test_a_torch_out_of_a_backward_is_written_as_an_in_place_torch_op(name):
    out = torch.zeros(4, 3, 2, dtype=torch.float64)
    graph, before = _saved_graph(out), out._version
    _backwards()[name](out)
    assert out.abs().sum() > 0
    assert out._version > before
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        graph.backward()


@pytest.mark.parametrize("fn", ["batch_norm", "instance_norm"])
def test_running_buffers_updated_in_training_are_bumped_and_only_read_in_eval_are_not(fn):
    x = _t((4, 3, 2))
    rm, rv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    mode = "training" if fn == "batch_norm" else "use_input_stats"
    graphs, before = [_saved_graph(rm), _saved_graph(rv)], (rm._version, rv._version)
    getattr(norm, fn)(x, running_mean=rm, running_var=rv, **{mode: True})
    assert rm.abs().sum() > 0
    assert rm._version > before[0] and rv._version > before[1]
    for graph in graphs:
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            graph.backward()

    graphs, before = [_saved_graph(rm), _saved_graph(rv)], (rm._version, rv._version)
    getattr(norm, fn)(x, running_mean=rm, running_var=rv, **{mode: False})
    assert (rm._version, rv._version) == before
    for graph in graphs:
        graph.backward()  # read only: the saved values are still the current ones


def test_a_refused_call_leaves_the_torch_tensors_and_their_versions_alone():
    x = _t((4, 3))
    out = torch.zeros(4, 3, dtype=torch.float64)
    rm, rv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    before = (out._version, rm._version, rv._version)
    with pytest.raises(ValueError, match="^momentum"):
        norm.batch_norm(x, running_mean=rm, running_var=rv, momentum=2.0, out=out)
    assert (out._version, rm._version, rv._version) == before
    assert not out.any() and not rm.any()
