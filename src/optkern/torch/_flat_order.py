"""The order of the flat state vectors of the closure optimizers (LBFGS, NewtonCG) over params
contiguous in another order of their dims (channels_last).

The inner optimizer keeps one flat vector of all params, each param's segment in its memory order
(zero-copy views: ``_views.view``), and so are the vectors ``opt.state`` shows over its buffers.
torch's LBFGS state (``_gather_flat_grad``: ``p.view(-1)`` concatenated) is in the params'
logical order, and that is what a checkpoint holds: ``state_dict()`` turns the vectors into it,
``load_state_dict`` back into the memory order of the params it loads into, and a param whose
layout (or dtype, device) changed between steps (``model.to(memory_format=...)``) has the state
carried over through it. Without this, the history of a channels_last model was read against
another order of the elements: silently wrong steps after a checkpoint or a layout change.
"""

from __future__ import annotations

import torch

from . import _views


def layout(params: list) -> tuple:
    """What the inner optimizer's flat vector depends on, per param: dtype, device, shape and the
    order of dims ``_views.view`` reads its memory in (None: contiguous). A complex param's are its
    real view's (``torch.view_as_real``: shape + (2,)), as torch's LBFGS flattens it."""
    return tuple(_param_layout(p) for p in params)


def _param_layout(p: torch.Tensor) -> tuple:
    dtype = p.dtype
    if p.is_complex():
        p = torch.view_as_real(p.detach())
    return (dtype, p.device, tuple(p.shape), None if p.is_contiguous() else _order(p))


def size(p: torch.Tensor) -> int:
    """The number of elements ``p`` has in the flat vector (a complex one: twice its numel)."""
    return 2 * p.numel() if p.is_complex() else p.numel()


def _order(p: torch.Tensor) -> tuple | None:
    order = _views.dense_order(p)
    return None if order is None else tuple(order)


def permuted(lay: tuple) -> bool:
    """Whether some param's memory order is not its logical order."""
    return any(order is not None for *_, order in lay)


def _numel(shape: tuple) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _reorder(v, lay: tuple, to_memory: bool):
    """Flat vector ``v`` from the params' logical order to their memory order (``to_memory``) or
    back; anything that is not a 1-D tensor of all params' size is left for the checks to name."""
    total = sum(_numel(shape) for _, _, shape, _ in lay)
    if not isinstance(v, torch.Tensor) or v.dim() != 1 or v.numel() != total:
        return v
    parts, at = [], 0
    for _, _, shape, order in lay:
        n = _numel(shape)
        seg = v[at : at + n]
        at += n
        if order is not None:
            if to_memory:  # (what _views.view reads: p.permute(order), contiguous)
                seg = seg.reshape(shape).permute(order).reshape(-1)
            else:
                inverse = sorted(range(len(order)), key=order.__getitem__)
                seg = seg.reshape([shape[d] for d in order]).permute(inverse).reshape(-1)
        parts.append(seg)
    return torch.cat(parts) if parts else v


def reorder_entry(entry, keys: tuple, lay: tuple, to_memory: bool):
    """State entry ``entry`` with its flat vectors ``keys`` (a list: each element) reordered (new
    tensors; the entry itself is not changed)."""
    if not isinstance(entry, dict) or not permuted(lay):
        return entry
    out = dict(entry)
    for k in keys:
        v = out.get(k)
        if isinstance(v, (list, tuple)):
            out[k] = [_reorder(x, lay, to_memory) for x in v]
        elif v is not None:
            out[k] = _reorder(v, lay, to_memory)
    return out
