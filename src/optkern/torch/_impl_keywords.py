"""torch.optim's implementation keywords (``foreach``, ``fused``, ``capturable``, ``differentiable``)
on optkern.torch's optimizers, so that ``torch.optim.AdamW(ps, lr=..., fused=True)`` keeps working
with the import changed (nanoGPT's optimizer line, for one).

They choose how torch runs a step, not what it computes: every optkern.torch step is one fused
multi-tensor call per run of tensors, whatever ``foreach`` and ``fused`` say (torch's for-loop,
foreach and fused forms compute the same update; optkern's float32 steps are its for-loop's bits).
Each class takes the ones its torch namesake's signature names (``_impl_names``: NAdam, RMSprop and
Adadelta have no ``fused``, SGD and Adagrad no ``capturable``); another is torch's TypeError (an
unexpected keyword argument). What optkern.torch cannot do is refused by name: ``capturable=True``
(its step counters live on the host: no CUDA graph capture) and ``differentiable=True`` (its steps
run outside autograd).
What torch refuses of them is refused as torch refuses it (its types and messages, at its point,
before anything is written): ``fused`` and ``foreach`` both True; with ``foreach=True``, Adam's and
AdamW's tensor ``lr`` and betas (its constructor's ValueError; a group's set later: at the step)
and NAdam's tensor betas (torch's foreach step fails on them, after making and counting state).
The constructor's are not kept in the param groups (torch's own loader fills them when a
checkpoint of ours moves to torch.optim); a group given to ``add_param_group`` keeps its own, as
torch keeps them, checked as the constructor's are (``check_group_keywords``). A checkpoint's groups
load as saved (a CUDA run's ``capturable=True``: torch's values, the same step).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from numbers import Real
from types import MappingProxyType
from typing import Any, TypeVar

from torch import Tensor

from .._foreign import array_pair, zero_d_real
from ._torch_scalars import tensor_betas

#: torch.optim's implementation keywords and their torch defaults (keyword-only in most of torch's
#: signatures; Adagrad, RMSprop and Adadelta take some by position, and so do ours).
TORCH_IMPL_KEYWORDS: Mapping[str, Any] = MappingProxyType(
    {"foreach": None, "fused": None, "capturable": False, "differentiable": False}
)

_C = TypeVar("_C", bound=type)


def impl_names(cls: type) -> tuple:
    """The implementation keywords ``cls`` takes: its ``_impl_names`` (its torch namesake's), all
    four for a class that names none (AdagradNorm, optkern's own)."""
    return tuple(getattr(cls, "_impl_names", TORCH_IMPL_KEYWORDS))


def take_impl_keywords(options: dict, cls: type) -> dict:
    """Remove the implementation keywords from ``options`` (a constructor's ``**kwargs``), checked:
    one ``cls`` does not take (not in its ``_impl_names``) is torch's TypeError, ``foreach`` /
    ``fused`` None or a bool, ``capturable`` / ``differentiable`` a bool and False, not ``fused`` and
    ``foreach`` both True (torch's RuntimeError). Returns them, torch's defaults filled in: what a
    group without its own reads (torch puts the constructor's in every group)."""
    for key in TORCH_IMPL_KEYWORDS:
        if key in options and key not in impl_names(cls):
            raise TypeError(f"{cls.__name__}.__init__() got an unexpected keyword argument {key!r}")
    given = {key: options.pop(key) for key in TORCH_IMPL_KEYWORDS if key in options}
    for key, value in given.items():
        _check(key, value, key)
    if given.get("fused") and given.get("foreach"):
        raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
    return {**TORCH_IMPL_KEYWORDS, **given}


def group_foreach(group: dict, impl: Mapping[str, Any]) -> bool:
    """Whether torch.optim would run ``group``'s step as its foreach form by request (``foreach=True``
    and not ``capturable``: the group's own, else the constructor's ``impl``). torch's foreach Adam
    refuses a tensor ``lr`` then, and its foreach NAdam fails on tensor betas."""
    foreach = group.get("foreach", impl["foreach"])
    return bool(foreach) and not group.get("capturable", impl["capturable"])


def check_group_keywords(group: dict, where: str, names: tuple) -> None:
    """The implementation keywords ``names`` (the class's) a param group given to ``add_param_group``
    holds, checked as the constructor checks them (errors name ``where[key]``) and left in it, as
    torch leaves them: a group asking for ``capturable`` or ``differentiable`` was stepped as if it
    had not. Others are keys the class's torch namesake never reads: kept and ignored, as torch's."""
    for key in names:
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
    """Class decorator (outside ``lowp_keywords``): ``cls.__init__``'s signature also lists the
    implementation keywords ``cls`` takes (``_impl_names``) with torch's defaults (keyword-only,
    unless ``__init__`` names one itself: positional where torch's namesake takes it by position,
    such as Adagrad's ``foreach``)."""
    init = vars(cls)["__init__"]
    sig = inspect.signature(init)
    params = list(sig.parameters.values())
    params += [
        inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v)
        for k, v in TORCH_IMPL_KEYWORDS.items()
        if k in impl_names(cls) and k not in sig.parameters
    ]
    init.__signature__ = sig.replace(parameters=params)
    return cls


_FOREACH_TENSOR = "as a Tensor is not supported for capturable=False and foreach=True"


def refuse_adam_constructor(lr, betas, impl: Mapping[str, Any]) -> None:
    """torch.optim.Adam's (and AdamW's) constructor refusals of tensor hyper-parameters, its types and
    messages, before anything is made: a tensor ``lr`` or beta under ``foreach=True`` (its foreach
    step cannot take one), and a pair of betas that are not both floats or both tensors (a float
    beside a tensor, an int). Other bad values are left to the range checks."""
    foreach = group_foreach({}, impl)
    if isinstance(lr, Tensor) and foreach:
        raise ValueError(f"lr {_FOREACH_TENSOR}")
    if isinstance(betas, Tensor):  # (one 1-D tensor of two: torch reads betas[0] and betas[1], tensors)
        betas = tensor_betas(betas) or betas
    if array_pair(betas):  # (a 1-D array of two: torch reads NumPy scalars, a float32 one no float)
        betas = list(betas)
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
        return  # (refused by the range checks)
    if any(isinstance(b, Tensor) and b.numel() != 1 for b in betas):
        return  # (refused by the range checks, by name: torch's fails on its truth value)
    # (a 0-d array, as torch, compared: in range, neither a float nor a tensor)
    if not all(isinstance(b, Tensor) or (_real(b) and 0.0 <= float(b) < 1.0) for b in betas):
        return  # (not a number, or out of range: named by the type and range checks, which torch runs first)
    if not (all(isinstance(b, float) for b in betas) or all(isinstance(b, Tensor) for b in betas)):
        raise ValueError("betas must be either both floats or both Tensors")
    for i, b in enumerate(betas):
        if isinstance(b, Tensor) and foreach:
            raise ValueError(f"betas[{i}] {_FOREACH_TENSOR}")


def _real(b) -> bool:
    return isinstance(b, Real) or zero_d_real(b)


def refuse_adam_step(group: dict, where: str, pair) -> None:
    """torch.optim.Adam's step refusals of a foreach group's tensor hyper-parameters (one set after
    construction, or a group added with its own): a tensor ``lr`` (RuntimeError, as its
    ``_init_group``), then a tensor beta (ValueError, as its ``_multi_tensor_adam``). ``pair``: the
    group's betas with a tensor in them (``tensor_betas``), or None."""
    if isinstance(group["lr"], Tensor):
        raise RuntimeError(f"{where}['lr']: lr {_FOREACH_TENSOR}")
    for i, b in enumerate(pair or ()):
        if isinstance(b, Tensor):
            raise ValueError(f"{where}['betas']: beta{i + 1} {_FOREACH_TENSOR}")
