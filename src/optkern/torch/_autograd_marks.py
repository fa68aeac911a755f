"""What torch's autograd must see of an optkern.torch step that writes params through views it
does not track: the version counters bumped (and put back when a step is refused), and grads that
are lazily negated views refused by name."""

from __future__ import annotations

import torch

_increment_version = torch.autograd.graph.increment_version
_set_versions = getattr(torch._C._autograd, "_unsafe_set_version_counter", None)


def _bumped_back(params: list) -> None:
    """The version counters of a refused step's params as before its bump: a refusal (TypeError,
    ValueError: every array is checked before the first write) wrote nothing, so a graph that saved
    them stays valid. (Params that are views of one tensor share a counter: it keeps one bump per
    extra view -- stricter, never unsafe. A torch without the setter keeps the bumps too.)"""
    if _set_versions is not None and params:
        _set_versions(tuple(params), tuple(p._version - 1 for p in params))


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
