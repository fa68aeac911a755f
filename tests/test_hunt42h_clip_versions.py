"""Gradient clipping of torch tensors given in an iterable other than a list or tuple (a generator,
as ``(p.grad for p in model.parameters())``): their version counters are bumped as a list's are
(``_torch_written.bumps_written``), so that a graph saved before the clip refuses its backward."""

from __future__ import annotations

import pytest

import optkern

torch = pytest.importorskip("torch")


@pytest.mark.parametrize(
    "clip", [lambda gs: optkern.clip_grad_norm_(gs, 1.0), lambda gs: optkern.clip_grad_value_(gs, 1.0)]
)
@pytest.mark.parametrize("wrap", [lambda xs: (x for x in xs), lambda xs: dict(enumerate(xs)).values()])
def test_grads_in_an_iterator_are_versioned(clip, wrap):
    g = torch.full((5,), 10.0, requires_grad=True)
    y = (g * g).sum()  # saves g for its backward
    clip(wrap([g]))
    assert float(g.detach().abs().max()) <= 1.0  # (clipped)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.backward()
