"""optkern.nn.MLP (39th hunt, l): a torch tensor given as ``out`` of ``hvp`` / ``ggn_vp`` was written
through a NumPy view autograd does not see, its version counter left alone: a graph that had saved
the tensor before the product differentiated its new values silently, where torch refuses the
backward after an in-place write ("one of the variables needed for gradient computation has been
modified by an inplace operation"), as it does after optkern's optimizer steps, which bump it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tiny_mlp import tiny_mlp_problem


@pytest.mark.parametrize("method", ["hvp", "ggn_vp"])
@pytest.mark.parametrize("positional", [False, True])
def test_a_torch_out_is_written_as_an_in_place_torch_op(method, positional):
    m, p, x, y, v = tiny_mlp_problem()
    want = getattr(m, method)(p, x, y, v)
    out = torch.zeros(m.num_params, dtype=torch.float64)
    a = torch.ones(m.num_params, dtype=torch.float64, requires_grad=True)
    saved = (a * out).sum()  # the product's backward reads `out` as it was (zeros)
    before = out._version
    args = (p, x, y, v, out) if positional else (p, x, y, v)
    getattr(m, method)(*args, **({} if positional else {"out": out}))
    np.testing.assert_array_equal(out.numpy(), want)
    assert out._version > before
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        saved.backward()


@pytest.mark.parametrize("method", ["hvp", "ggn_vp"])
def test_a_refused_call_leaves_the_torch_out_and_its_version_alone(method):
    m, p, x, y, v = tiny_mlp_problem()
    out = torch.zeros(m.num_params, dtype=torch.float64)
    before = out._version
    with pytest.raises(ValueError, match="^v: expected shape"):
        getattr(m, method)(p, x, y, v[:-1], out=out)
    assert out._version == before
    assert not out.any()
