"""A param group's hyper-parameters as the host reads them: torch lets ``lr`` and ``betas`` be
tensors (an LR scheduler then fills them in place); optkern's checks and functional forms take
Python numbers, read from such a tensor at every step (not cached: it may change in place)."""

from __future__ import annotations

import torch

from .._checked_values import immutable
from .._foreign import refuse_meta


def _host_number(v, name: str):
    """A one-element real tensor as a Python float (torch takes ``lr`` and ``betas`` as tensors:
    read on the host, one sync per step for a CUDA one); tuples element-wise; anything else as is.
    A meta tensor (no values to read) is refused naming ``name``."""
    if isinstance(v, torch.Tensor) and v.numel() == 1 and not v.is_complex() and v.dtype is not torch.bool:
        refuse_meta(v, name)
        return float(v.detach())
    if isinstance(v, tuple) and any(isinstance(x, torch.Tensor) for x in v):
        return tuple(_host_number(x, f"{name}[{i}]") for i, x in enumerate(v))
    return v


def host_group(group: dict, where: str = "") -> dict:
    """``group`` itself, or a copy of it whose tensor hyper-parameters are Python floats (what the
    checks and the functional forms take). The copy is for reading: the group stays the user's.
    ``where``: the group's path, which errors name (none: the keys as the constructor's arguments)."""
    for k, v in group.items():
        if k != "params" and (isinstance(v, torch.Tensor) or (isinstance(v, tuple) and not immutable(v))):
            return {
                k: v if k == "params" else _host_value(k, v, f"{where}[{k!r}]" if where else k)
                for k, v in group.items()
            }
    return group


def _host_value(k: str, v, name: str):
    return _host_betas(v, name) if k == "betas" else _host_number(v, name)


def _host_betas(v, name: str):
    """``betas``: also one 1-D tensor of two real elements, which torch.optim's Adam, AdamW and NAdam
    take as the pair (they read ``betas[0]`` and ``betas[1]``), as a tuple of floats."""
    if isinstance(v, torch.Tensor) and v.dim() == 1 and v.numel() == 2 and v.is_floating_point():
        refuse_meta(v, name)
        return tuple(map(float, v.detach().cpu()))
    return _host_number(v, name)
