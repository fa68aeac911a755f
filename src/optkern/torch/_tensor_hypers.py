"""Tensor hyper-parameters whose step scalars torch.optim computes in tensor ops that optkern.torch
does not follow: refused by name, before anything is written, rather than stepped differently.

torch.optim takes any hyper-parameter as a 0-d tensor, and its for-loop then computes what it
derives from one in that tensor's dtype: ``1 - dampening`` (SGD), ``1 - alpha`` (RMSprop),
``1 - rho`` (Adadelta) rounded to a float16 / bfloat16 / float32 tensor's format, Adagrad's
``lr / (1 + (step - 1) * lr_decay)`` as a reciprocal times ``lr`` from a tensor ``lr_decay``, NAdam's
coefficients and ``1 - lr * weight_decay`` from a half ``lr`` or a tensor decoupled decay. optkern
reads such a tensor as its value and computes in double (a float32 ``lr``: in torch's float32 ops,
``_tensor_lr``; Adam's and AdamW's tensor scalars: torch's own expressions, ``_torch_scalars``):
the values it does not follow are refused here, those it does (a value torch only reads: ``eps``,
``momentum``, an L2 ``weight_decay``; a float64 tensor, whose ops round as the Python float's) pass.
"""

from __future__ import annotations

import torch

from ._tensor_lr import FOLLOWED_LR, lr_dtype


def _tensor(group: dict, key: str):
    v = group.get(key)
    return v if isinstance(v, torch.Tensor) else None


def refuse_tensor(where: str, key: str, v, why: str):
    """ValueError naming ``where[key]``, a tensor ``v`` whose step scalars torch computes ``why``."""
    raise ValueError(
        f"{where}[{key!r}]: a {str(v.dtype).replace('torch.', '')} tensor ({float(v)!r}), {why}, which "
        "optkern.torch does not follow: pass a Python float or a float64 tensor"
    )


def refuse_one_minus(group: dict, where: str, key: str) -> None:
    """``key`` a tensor whose ``1 - x`` torch rounds to the tensor's dtype where the rules' double
    ``1 - float(x)`` is not that value (a float64 tensor, or an x in [0.5, 1], is exact)."""
    v = _tensor(group, key)
    if v is not None and v.dtype != torch.float64 and float(1 - v.detach()) != 1.0 - float(v):
        refuse_tensor(where, key, v, f"whose 1 - {key} torch rounds to its dtype")


def refuse_half_lr(group: dict, where: str, why: str) -> None:
    """A float16 / bfloat16 tensor ``lr`` where torch divides or multiplies it in its format (an
    integer one: in torch's default dtype, ``lr_dtype``)."""
    v = _tensor(group, "lr")
    if v is not None and lr_dtype(v) not in FOLLOWED_LR:
        refuse_tensor(where, "lr", v, why)


def refuse_decoupled_decay(group: dict, where: str) -> None:
    """A tensor ``weight_decay`` in torch's ``1 - lr * weight_decay`` (decoupled decay) unless a float64
    one beside a Python-float or float64 lr (ops that round as Python's)."""
    v, lr = _tensor(group, "weight_decay"), _tensor(group, "lr")
    if v is None or not group.get("decoupled_weight_decay") or float(v) == 0.0:
        return
    if v.dtype != torch.float64 or (lr is not None and lr.dtype != torch.float64):
        refuse_tensor(where, "weight_decay", v, "in torch's 1 - lr * weight_decay tensor ops")


def refuse_bool_lr(group: dict, where: str) -> None:
    """A bool tensor ``lr`` where torch.optim's step negates it (``alpha=-lr``: "Negation ... on a bool
    tensor is not supported"): TypeError naming lr. (Adam's, AdamW's and Adagrad's steps divide or
    multiply it by floats, in torch's default dtype: those classes take it, ``_BOOL_LR``.)"""
    v = _tensor(group, "lr")
    if v is not None and v.dtype is torch.bool:
        raise TypeError(
            f"{where}['lr']: a bool tensor, which this optimizer's step does not take (torch.optim's "
            "negates lr, which a bool tensor refuses): pass a real number or a floating-point tensor"
        )
