"""A param group's hyper-parameters as the host reads them: torch lets ``lr`` and ``betas`` be
tensors (an LR scheduler then fills them in place), and ``lr`` a 0-d NumPy array (its steps compute
with it as with the NumPy scalar it holds); optkern's checks and functional forms take numbers, read
from such a tensor or array at every step (not cached: it may change in place)."""

from __future__ import annotations

import torch

from .._checked_values import immutable
from .._foreign import array_pair, host_number, zero_d_real
from .._hyper_scalars import refuse_float16


def host_group(group: dict, where: str = "", bool_lr: bool = False) -> dict:
    """``group`` itself, or a copy of it whose tensor hyper-parameters are Python floats (what the
    checks and the functional forms take). The copy is for reading: the group stays the user's.
    ``where``: the group's path, which errors name (none: the keys as the constructor's arguments).
    ``bool_lr``: a bool tensor lr read as its value (for the classes whose torch step takes it,
    ``_Fused._BOOL_LR``; elsewhere it stays a tensor, which the checks refuse naming lr)."""
    for k, v in group.items():
        if k != "params" and (
            isinstance(v, torch.Tensor)
            or (isinstance(v, tuple) and not immutable(v))
            or array_lr(k, v)
            or (k == "betas" and array_pair(v))
        ):
            return {k: _host_value(k, v, where, bool_lr) for k, v in group.items()}
    return group


def array_lr(key: str, v) -> bool:
    """Whether ``v`` is ``lr`` as a 0-d NumPy array (exactly: not a masked one) of a real dtype, which
    torch.optim's steps compute with as with the NumPy scalar it holds: NumPy 2 promotes the two
    alike (a float32 one in float32). (Its other hyper-parameters as arrays fail in torch's steps:
    TypeErrors of its tensor ops; refused here by the checks, naming them.)"""
    return key == "lr" and zero_d_real(v)


def _host_value(k: str, v, where: str, bool_lr: bool):
    if k == "params":
        return v
    if array_lr(k, v):
        # (refused as the array it is: unwrapped, the float16 check named a scalar the caller never passed)
        refuse_float16(f"{where}[{k!r}]" if where else k, v)
        return v[()]
    if bool_lr and k == "lr" and isinstance(v, torch.Tensor) and v.dtype is torch.bool and v.numel() == 1:
        return float(v)
    return host_number(v, f"{where}[{k!r}]" if where else k, k == "betas")
