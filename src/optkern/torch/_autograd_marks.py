"""What torch's autograd must see of an optkern.torch step that writes params through views it
does not track: the version counters bumped, and grads that are lazily negated views refused by
name."""

from __future__ import annotations

import collections
import operator
from typing import Any

import torch

_increment_version = torch.autograd.graph.increment_version
_bump = torch._C._increment_version  # (increment_version's own call, without its isinstance look)
_version = operator.attrgetter("_version")
# (torch's setter of version counters: older torch may lack it, then the step bumps after it wrote)
_set_versions: Any = getattr(torch._C._autograd, "_unsafe_set_version_counter", None)

_is_neg = torch.Tensor.is_neg


def bump_before_write(params: list) -> bool:
    """Bump the version counters of ``params`` before the step writes them, while their tensors
    are still in cache from the step's checks (after a large step's memory traffic the bump cost
    ~70 us for 200 params, ~30 before it; reading their versions first, ~25 more); False, bumping
    nothing, where they could not be put back (a torch without the setter): the caller bumps them
    once written. Inference tensors have no counter: skipped, as ``increment_version`` skips them."""
    if _set_versions is None:
        return False
    _bump(params)
    return True


def restore_versions(params: list) -> None:
    """Undo ``bump_before_write`` for a step that raised before it wrote. Each counter went up
    once per param holding it (views of one tensor share their base's), so each param's version
    before is its version now less the number of params sharing its counter. Which share one:
    each param's counter set to the param's index in turn, the params of one counter all read the
    last index set on it."""
    ps = [p for p in params if not p.is_inference()]
    now = list(map(_version, ps))
    _set_versions(ps, list(range(len(ps))))
    last = list(map(_version, ps))
    sharing = collections.Counter(last)
    _set_versions(ps, [v - sharing[i] for v, i in zip(now, last)])


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
