"""optkern.clip (39th hunt, l): torch tensors given as ``grads`` (scaled or clamped in place) or as
``out`` (the norm) were written through NumPy views autograd does not see, their version counters
left alone: a graph that had saved such a tensor differentiated its new values silently, where
torch's own clipping (``mul_`` / ``clamp_``) makes the backward refuse them. A call refused by its
checks, or one that only reads the gradients (``get_total_norm``), leaves them alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from optkern import clip
from optkern import torch as otorch


def _grads():
    rng = np.random.default_rng(0)
    return [torch.from_numpy(rng.standard_normal(s) * 10) for s in (5, (2, 3))]


def _saved_graph(t):
    a = torch.ones(t.shape, dtype=t.dtype, requires_grad=True)
    return (a * t).sum()


_CLIPS = {
    "clip_grad_norm_": lambda g: clip.clip_grad_norm_(g, 1.0),
    "clip_grads_with_norm_": lambda g: clip.clip_grads_with_norm_(g, 1.0, 100.0),
    "clip_grad_value_": lambda g: clip.clip_grad_value_(g, 0.5),
}


def _assert_bumped(written, call):
    """``call()`` bumps every tensor of ``written``: a graph that saved one before refuses its backward."""
    before = [g._version for g in written]
    graphs = [_saved_graph(g) for g in written]
    call()
    assert all(g._version > v for g, v in zip(written, before))
    for graph in graphs:
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            graph.backward()


@pytest.mark.parametrize("name", sorted(_CLIPS))
@pytest.mark.parametrize("lone", [False, True])
def test_torch_grads_clipped_in_place_are_bumped(name, lone):
    grads = _grads()
    given = grads[0] if lone else grads
    written = grads[:1] if lone else grads
    _assert_bumped(written, lambda: _CLIPS[name](given))


@pytest.mark.parametrize("name", ["clip_grad_norm_", "get_total_norm"])
def test_a_torch_out_of_the_norm_is_bumped_and_read_grads_are_not(name):
    grads, out = _grads(), torch.zeros(1, dtype=torch.float64)
    before, graph = [g._version for g in grads], _saved_graph(out)
    getattr(clip, name)(grads, **({"max_norm": 1.0} if name == "clip_grad_norm_" else {}), out=out)
    assert out.item() > 0 and out._version > 0
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        graph.backward()
    if name == "get_total_norm":
        assert [g._version for g in grads] == before


def test_a_refused_clip_bumps_nothing():
    grads = _grads()
    before = [g._version for g in grads]
    with pytest.raises(ValueError, match="^max_norm"):
        clip.clip_grad_norm_(grads, -1.0)
    assert [g._version for g in grads] == before


def _params():
    params = []
    for g in _grads():
        p = torch.nn.Parameter(torch.zeros_like(g))
        p.grad = g
        params.append(p)
    return params


_TORCH_CLIPS = {
    "clip_grad_norm_": lambda ps: otorch.clip_grad_norm_(ps, 1.0),
    "clip_grads_with_norm_": lambda ps: otorch.clip_grads_with_norm_(
        ps, 1.0, torch.tensor([100.0], dtype=torch.float64)
    ),
    "clip_grad_value_": lambda ps: otorch.clip_grad_value_(ps, 0.5),
}


@pytest.mark.parametrize("name", sorted(_TORCH_CLIPS))
def test_optkern_torch_clipping_bumps_the_grads_it_scales(name):
    params = _params()
    _assert_bumped([p.grad for p in params], lambda: _TORCH_CLIPS[name](params))
