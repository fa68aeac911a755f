"""What torch's autograd must see of an optkern.torch step that writes params through views it
does not track: the version counters bumped, and grads that are lazily negated views refused by
name."""

from __future__ import annotations

import operator

import torch

_increment_version = torch.autograd.graph.increment_version
_bump = torch._C._increment_version  # (increment_version's own call, without its isinstance look)
_version = operator.attrgetter("_version")
# (torch's setter of version counters: older torch may lack it, then the step bumps after it wrote)
_set_versions = getattr(torch._C._autograd, "_unsafe_set_version_counter", None)

_is_neg = torch.Tensor.is_neg


def bump_before_write(params: list) -> list | None:
    """Bump the version counters of ``params`` before the step writes them, while their tensors
    are still in cache from the step's checks (after a large step's memory traffic the bump cost
    40-90 us for 200 params); returns their versions before, for ``restore_versions`` should the
    step raise. None, bumping nothing, where they cannot be put back (an inference tensor has no
    version counter; a torch without the setter): the caller bumps them once written."""
    if _set_versions is None:
        return None
    try:
        before = list(map(_version, params))
    except RuntimeError:  # (an inference tensor, stepped inside inference mode)
        return None
    _bump(params)
    return before


def restore_versions(params: list, before: list | None) -> None:
    """Undo ``bump_before_write`` (``before``: what it returned) for a step that raised before it
    wrote. Params sharing a counter (views of one tensor) all read the same version before, so
    setting each one puts it back."""
    if before is not None:
        _set_versions(params, before)


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
