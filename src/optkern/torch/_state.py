"""The torch-format state of optkern.torch's optimizers: step counters and per-param scalars as
torch keeps them, fresh state tensors, and the joins and identity checks the view cache uses."""

from __future__ import annotations

import functools
import itertools
import operator

import torch

from .. import optim as _optim
from . import _views


def _scalar_dtype() -> torch.dtype:
    """torch's dtype for step counters and NAdam's mu_product (float64 under a float64 default dtype)."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _step_tensor(value: float = 0.0) -> torch.Tensor:
    """A step counter as torch keeps it (a 0-d CPU tensor)."""
    return torch.tensor(float(value), dtype=_scalar_dtype())


def _entries(states: list, names: tuple) -> list:
    """The named entries of each state dict, in one flat list."""
    if len(names) <= 1:
        return list(map(operator.itemgetter(names[0]), states)) if names else []
    return list(itertools.chain.from_iterable(map(operator.itemgetter(*names), states)))


def _same_entries(states: list, names: tuple, cached: list) -> bool:
    """Whether the state dicts still hold the very objects ``cached`` (``_entries``) holds: a view
    cache's validity. Identity compared at C level (a Python loop over 600 entries costs 0.1-0.3 ms)."""
    try:
        now = _entries(states, names)
    except KeyError:
        return False
    return len(now) == len(cached) and all(map(operator.is_, now, cached))


#: per-param scalars the host reads every step (the step count; NAdam's mu_product), kept on the CPU
_HOST_SCALARS = ("step", "mu_product")


def _scalars_to_host(state: dict) -> None:
    """Move a loaded state's step counter and mu_product to the CPU, as torch's non-fused optimizers
    keep them. torch's loader puts ``step`` on the param's device for a checkpoint of a fused or
    capturable optimizer, and every other tensor (mu_product) there always: read by the host each
    step (``float``), a CUDA scalar would synchronize every step. Their dtype is kept."""
    for k in _HOST_SCALARS:
        v = state.get(k)
        if isinstance(v, torch.Tensor) and not v.is_cpu:
            state[k] = v.detach().to("cpu")


def _saved_ids(state_dict: dict) -> list:
    """The state keys of a torch state dict's params, in parameter order."""
    return [i for g in state_dict["param_groups"] if isinstance(g, dict) for i in g.get("params", ())]


def _like_param(p, state: dict) -> None:
    """State tensors of ``p``'s shape put in ``p``'s memory layout (a checkpoint of a contiguous
    model loaded into a channels_last one, or the reverse): copies, where the layouts differ."""
    for k, v in state.items():
        if isinstance(v, torch.Tensor) and v.shape == p.shape and v.dim() and not _views.same_layout(v, p):
            state[k] = torch.empty_like(p, dtype=v.dtype, device=v.device).copy_(v)


def _zeros(p):
    """Zeros in ``p``'s memory layout (channels_last too): a state is stepped element by element
    with its param in memory order."""
    return torch.zeros_like(p, memory_format=torch.preserve_format)


def _join_scalars(states: list, keys: list) -> dict:
    """Per-param scalar tensors of a run (``step``, NAdam's ``mu_product``: equal within a run)
    re-made as 0-d views into one 1-D tensor per key, which one op then advances for the whole
    run (a foreach add over 200 0-d tensors costs 0.2-0.4 ms). Same values, dtypes and device as
    before; a key whose tensors differ in dtype or device, or are not 0-d, is left alone."""
    joined = {}
    for k in keys:
        vals = [s[k] for s in states]
        first = vals[0]
        if not all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in vals):
            continue
        if any(v.dtype != first.dtype or v.device != first.device for v in vals):
            continue
        buf = torch.stack([v.detach() for v in vals])
        for j, s in enumerate(states):
            s[k] = buf[j]
        joined[k] = buf.numpy() if buf.is_cpu else buf  # (a NumPy add costs a fraction of torch's)
    return joined


@functools.cache
def _meta(core: type[_optim.Optimizer]) -> _optim.Optimizer:
    """An uninitialised instance of an optkern.optim class: what its state is made of (``_check``,
    ``_needed``, ``_new_state``, ``_new_extra``, ``_has_step``, ``_scalar_names``) is said there
    once, and those methods read no instance state."""
    return object.__new__(core)
