"""What torch's autograd must see of an optkern.torch step that writes params through views it
does not track: the version counters bumped, and grads that are lazily negated views refused by
name."""

from __future__ import annotations

import torch

_increment_version = torch.autograd.graph.increment_version

_is_neg = torch.Tensor.is_neg


def _refuse_neg_view(params: list, gi: int, group: dict) -> None:
    """ValueError naming the first grad that is a lazily negated view (``torch._neg_view``): NumPy
    refuses it and DLPack hands over its memory without the sign, which would step the wrong way."""
    for p in params:
        if p.grad.is_neg():
            j = next(k for k, q in enumerate(group["params"]) if q is p)
            raise ValueError(
                f"param_groups[{gi}]['params'][{j}].grad: a negated view (its sign is a lazy bit "
                "that optkern's views cannot carry): set .grad = grad.resolve_neg()"
            )
