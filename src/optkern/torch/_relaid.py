"""A step whose grads are laid out unlike their params (``_views.GradLayout``): torch.optim reads a
grad element by element in logical order whatever its strides, optkern's native calls pair it with
its param in memory order. Such a grad (set by hand, or accumulated in place before ``p.data`` got
another layout) is read through a copy in its param's layout for the step, then put back: the grad
is only read, so the copy changes nothing the caller sees."""

from __future__ import annotations

import contextlib

import torch

from . import _views


def _relayable(p: torch.Tensor) -> bool:
    """Whether ``p``'s grad is one ``check_grad`` would refuse for its layout only."""
    g = p.grad
    return g is not None and g.dtype is p.dtype and g.device == p.device and not g.is_conj() and _views.relayable(g, p)


@contextlib.contextmanager
def relaid_grads(groups: list):
    """Within: every grad of ``groups``' params that is laid out unlike its param replaced by a copy
    in its param's layout (``_views.in_layout_of``); the grads put back on leaving, however it is left."""
    swapped = []
    try:
        with torch.no_grad():
            for group in groups:
                for p in group["params"]:
                    if _relayable(p):
                        g = p.grad
                        p.grad = _views.in_layout_of(p, g)
                        swapped.append((p, g))
        yield
    finally:
        for p, g in swapped:
            p.grad = g
