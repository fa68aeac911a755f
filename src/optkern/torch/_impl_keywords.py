"""torch.optim's implementation keywords (``foreach``, ``fused``, ``capturable``, ``differentiable``)
on optkern.torch's optimizers, so that ``torch.optim.AdamW(ps, lr=..., fused=True)`` keeps working
with the import changed (nanoGPT's optimizer line, for one).

They choose how torch runs a step, not what it computes: every optkern.torch step is one fused
multi-tensor call per run of tensors, whatever ``foreach`` and ``fused`` say (torch's for-loop,
foreach and fused forms compute the same update; optkern's float32 steps are its for-loop's bits).
What optkern.torch cannot do is refused by name: ``capturable=True`` (its step counters live on
the host: no CUDA graph capture) and ``differentiable=True`` (its steps run outside autograd).
The constructor's are not kept in the param groups (torch's own loader fills them when a
checkpoint of ours moves to torch.optim); a group given to ``add_param_group`` keeps its own, as
torch keeps them, checked as the constructor's are (``check_group_keywords``). A checkpoint's groups
load as saved (a CUDA run's ``capturable=True``: torch's values, the same step).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, TypeVar

#: torch.optim's implementation keywords and their torch defaults (keyword-only in most of torch's
#: signatures; Adagrad, RMSprop and Adadelta take some by position, and so do ours).
TORCH_IMPL_KEYWORDS: Mapping[str, Any] = MappingProxyType(
    {"foreach": None, "fused": None, "capturable": False, "differentiable": False}
)

_C = TypeVar("_C", bound=type)


def take_impl_keywords(options: dict) -> None:
    """Remove the implementation keywords from ``options`` (a constructor's ``**kwargs``), checked:
    ``foreach`` / ``fused`` None or a bool, ``capturable`` / ``differentiable`` a bool and False."""
    for key in TORCH_IMPL_KEYWORDS:
        if key in options:
            _check(key, options.pop(key), key)


def check_group_keywords(group: dict, where: str) -> None:
    """The implementation keywords a param group given to ``add_param_group`` holds, checked as the
    constructor checks them (errors name ``where[key]``) and left in it, as torch leaves them: a group
    asking for ``capturable`` or ``differentiable`` was stepped as if it had not."""
    for key in TORCH_IMPL_KEYWORDS:
        if key in group:
            _check(key, group[key], f"{where}[{key!r}]")


def _check(key: str, value, name: str) -> None:
    """TypeError / ValueError naming ``name`` unless ``value`` is a value of implementation keyword
    ``key`` that optkern.torch runs as torch would."""
    nullable = TORCH_IMPL_KEYWORDS[key] is None
    if not (isinstance(value, bool) or (nullable and value is None)):
        want = "None or a bool" if nullable else "a bool"
        raise TypeError(f"{name}: expected {want}, got {type(value).__name__}")
    if value and key == "capturable":
        raise ValueError(
            f"{name}: optkern.torch keeps step counts on the host and cannot be captured in a "
            "CUDA graph (capturable=True is optkern.optim's, on CuPy arrays)"
        )
    if value and key == "differentiable":
        raise ValueError(f"{name}: optkern.torch's steps run outside autograd (differentiable=False)")


def impl_keywords(cls: _C) -> _C:
    """Class decorator (outside ``lowp_keywords``): ``cls.__init__``'s signature also lists
    ``TORCH_IMPL_KEYWORDS`` with torch's defaults (keyword-only, unless ``__init__`` names one itself:
    positional where torch's namesake takes it by position, such as Adagrad's ``foreach``)."""
    init = vars(cls)["__init__"]
    sig = inspect.signature(init)
    params = list(sig.parameters.values())
    params += [
        inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v)
        for k, v in TORCH_IMPL_KEYWORDS.items()
        if k not in sig.parameters
    ]
    init.__signature__ = sig.replace(parameters=params)
    return cls
