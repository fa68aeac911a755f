"""optkern.init's in-place writers given a torch tensor bump its version counter, as torch.nn.init's
in-place fills do (review of the 55th's h333): they wrote through a NumPy view autograd does not see,
so a graph that had saved the tensor differentiated its new values silently, where torch refuses the
backward ("modified by an inplace operation"). The rule of optkern/_torch_written.py for every call
that writes a caller's tensor through its view."""

from __future__ import annotations

import numpy as np
import pytest

from optkern import init, nn
from test_hunt55h_init_dlpack import FIXED, RANDOM, _call

torch = pytest.importorskip("torch")


def _saved_graph(w):
    """A loss whose backward needs ``w``'s values as they were (x * w saves w)."""
    x = torch.ones(w.shape, dtype=w.dtype, requires_grad=True)
    return (x * w).sum()


@pytest.mark.parametrize("name,args", RANDOM + FIXED)
def test_a_fill_makes_a_saved_graph_refuse_its_backward_as_torch_does(name, args):
    w = torch.full((7, 3), 0.5)
    loss = _saved_graph(w)
    before = w._version
    assert _call(name, w, args, 7) is w
    assert w._version > before
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
    ref = torch.full((7, 3), 0.5)  # torch.nn.init's own fill: the same refusal
    ref_loss = _saved_graph(ref)
    torch.nn.init.constant_(ref, 2.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        ref_loss.backward()


def test_dirac_bumps_and_a_numpy_fill_is_unchanged():
    w = torch.full((4, 2, 3), 7.0)
    loss = _saved_graph(w)
    init.dirac_(w, groups=2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
    a = np.full((3, 2), 0.5, np.float32)
    assert init.constant_(a, 2.0) is a  # (NumPy: written, returned, no torch involved)


def test_lsuv_bumps_the_weights_it_rescaled():
    rng = np.random.default_rng(0)
    w = torch.from_numpy(rng.standard_normal((5, 4)).astype(np.float32))
    x = rng.standard_normal((64, 4)).astype(np.float32)
    loss = _saved_graph(w)
    init.lsuv_([w], lambda xb: [xb @ w.numpy().T], x, rng=1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_lsuv_mlp_bumps_its_params():
    mlp = nn.MLP([4, 6, 3])
    params = torch.from_numpy(mlp.init_params(0))
    x = np.random.default_rng(1).standard_normal((32, 4)).astype(np.float32)
    loss = _saved_graph(params)
    init.lsuv_mlp_(mlp, params, x, rng=2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
