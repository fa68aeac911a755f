"""A param group's hyper-parameters as the host reads them: torch lets ``lr`` and ``betas`` be
tensors (an LR scheduler then fills them in place); optkern's checks and functional forms take
Python numbers, read from such a tensor at every step (not cached: it may change in place)."""

from __future__ import annotations

import torch

from .._checked_values import immutable
from .._foreign import host_number


def host_group(group: dict, where: str = "") -> dict:
    """``group`` itself, or a copy of it whose tensor hyper-parameters are Python floats (what the
    checks and the functional forms take). The copy is for reading: the group stays the user's.
    ``where``: the group's path, which errors name (none: the keys as the constructor's arguments)."""
    for k, v in group.items():
        if k != "params" and (isinstance(v, torch.Tensor) or (isinstance(v, tuple) and not immutable(v))):
            return {
                k: v if k == "params" else host_number(v, f"{where}[{k!r}]" if where else k, k == "betas")
                for k, v in group.items()
            }
    return group
