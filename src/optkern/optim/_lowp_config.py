"""The low-precision keywords of the optimizers (``LOWP_KEYWORDS``, ``lowp_keywords``), their
parsed form (``LowpConfig``) and the small helpers :mod:`._lowp` and its users share."""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple, TypeVar

import numpy as np

from .. import _backend
from .._foreign import refuse_meta
from .._lowp_blocks import block_scale_name as block_scale_name

STATE_DTYPES = ("float32", "bfloat16", "int8")
_MASTER = "master_param"


class LowpConfig(NamedTuple):
    master: bool
    sr: bool
    state_dtype: str
    seed: int
    block: int


def block_scale_names(moments, state_dtype: str) -> tuple:
    """The state names of the 8-bit block scales of ``moments`` stored as ``state_dtype``: one
    ``<moment>_scale`` each for int8 storage (one float32 per block of its param, shaped
    ``(n_blocks,)`` where every other state array has its param's shape), none for any other. The
    one definition optkern.optim and optkern.torch read (their state names, the state dicts' and the
    steps' shape checks)."""
    return tuple(block_scale_name(n) for n in moments) if state_dtype == "int8" else ()


@functools.lru_cache(maxsize=64)
def _half_fmt(dt) -> str | None:
    """'float16' / 'bfloat16' for a half dtype, else None. (Cached: a step asks once per array.)"""
    dt = np.dtype(dt)
    if dt == np.float16:
        return "float16"
    return "bfloat16" if _backend.is_bfloat16(dt) else None


def _host(a, name: str) -> np.ndarray:
    """``a`` as an aligned NumPy array (a CuPy array copied to the host: loading a state dict only).
    A saved array at an odd address (read from a raw buffer) is copied, as a float32 state is: the
    native conversions refused it naming their own arguments (``x``, ``scales``), not the entry.
    ``name``: the entry, which a value that cannot be read (a meta tensor) is refused naming."""
    refuse_meta(a, name)
    try:
        return np.require(_backend.to_numpy(a), requirements="A")
    except (TypeError, ValueError, RuntimeError) as e:  # (torch's, naming no entry: a CUDA tensor)
        raise TypeError(f"{name}: cannot be read as a NumPy array ({type(a).__name__}: {e})") from None


#: The low-precision keywords of SGD, Adagrad, RMSprop, Adadelta, Adam / AdamW and NAdam (keyword-only)
#: and their defaults: the classes take them as ``**lowp`` and show them in their signature
#: (``lowp_keywords``).
LOWP_KEYWORDS: Mapping[str, Any] = MappingProxyType(
    {"master_weights": False, "stochastic_rounding": False, "state_dtype": "float32", "seed": 0, "block_size": 256}
)

_C = TypeVar("_C", bound=type)


def refuse_group_keywords(group: dict, where: str) -> None:
    """ValueError naming a low-precision keyword given in param group ``where``: the storage is the
    optimizer's (its constructor's keywords), one for all its groups; a group's was ignored, its
    states kept in float32 silently."""
    for k in LOWP_KEYWORDS:
        if k in group:
            raise ValueError(
                f"{where}[{k!r}]: low-precision storage is set for the whole optimizer (a constructor "
                "keyword), not per param group"
            )


def lowp_keywords(cls: _C) -> _C:
    """Class decorator: ``cls.__init__``'s signature (``help``, ``inspect.signature``) lists the
    low-precision keywords that it takes as ``**lowp``, with their defaults."""
    init = vars(cls)["__init__"]
    sig = inspect.signature(init)
    params = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
    params += [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in LOWP_KEYWORDS.items()]
    init.__signature__ = sig.replace(parameters=params)
    return cls


def element_starts(groups: list, size: Callable[[Any], int] | None = None) -> list[int]:
    """The index of each param's element 0 among all elements of ``groups``' params in order (any
    array with a ``shape``: NumPy, CuPy, torch): the Philox counters of stochastic rounding, so that
    no two params of a step round with the same words. One numbering for optkern.optim and
    optkern.torch, whose runs (groups, formats, None-grad splits) step in separate native calls.
    ``size``: a param's element count where its ``shape`` is not it (a lazy torch param: 0)."""
    starts, base = [], 0
    for g in groups:
        for p in g["params"]:
            starts.append(base)
            base += math.prod(p.shape) if size is None else size(p)
    return starts
