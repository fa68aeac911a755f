"""The torch-format state of optkern.torch's optimizers: step counters and per-param scalars as
torch keeps them, fresh state tensors, and the joins and identity checks the view cache uses."""

from __future__ import annotations

import functools
import itertools
import math
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


def _scalars_to_host(state: dict, keys: tuple) -> None:
    """A loaded state's step counter and per-param scalars (mu_product), ``keys`` among
    ``_HOST_SCALARS``, as torch's non-fused optimizers keep them: CPU tensors.

    torch's loader puts ``step`` on the param's device for a checkpoint of a fused or capturable
    optimizer, and every other tensor (mu_product) there always: read by the host each step
    (``float``), a CUDA scalar would synchronize every step. Their dtype is kept. A plain number
    (older torch saved ``"step": 2``) becomes the tensor torch's ``__setstate__`` makes of it
    (``torch.tensor(float(v), dtype=_get_scalar_dtype())``): the step advances it in place, after
    the native call wrote."""
    for k in keys:
        v = state.get(k)
        if isinstance(v, torch.Tensor):
            if not v.is_cpu:
                state[k] = v.detach().to("cpu")
        elif v is not None:  # (a real number: _checks_state._check_scalar refused anything else)
            state[k] = torch.tensor(float(v), dtype=_scalar_dtype())


#: the dtypes of a step count a step advances in place (torch's ``step_t += 1``), and of mu_product
_FLOAT_DTYPES = frozenset((torch.float16, torch.bfloat16, torch.float32, torch.float64))
_STEP_DTYPES = _FLOAT_DTYPES | {torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64}


def _checked_scalar(v, name: str, dtypes: frozenset, lo: float):
    """The value of ``v``, a 1-element tensor of one of ``dtypes`` holding a finite value >= ``lo``,
    else TypeError / ValueError naming it (``_StepChecks._scalar_values``' slow path: a tensor
    subclass passes)."""
    if not (isinstance(v, torch.Tensor) and v.dtype in dtypes and v.numel() == 1):
        what = "real" if torch.int64 in dtypes else "floating-point"
        got = f"{v.dtype} of shape {tuple(v.shape)}" if isinstance(v, torch.Tensor) else type(v).__name__
        raise TypeError(f"{name}: expected a 1-element {what} tensor, got {got}")
    x = v.item()
    if not lo <= x < math.inf:
        raise ValueError(f"{name}: must be finite{' and >= 0' if lo == 0 else ''}, got {x}")
    if lo == 0 and x % 1:  # (a step count: the step's bias corrections read int(step), torch's the fraction)
        raise ValueError(f"{name}: expected a whole number of steps, got {x}")
    return x


def _saved_ids(state_dict: dict) -> list:
    """The state keys of a torch state dict's params, in parameter order."""
    return [i for g in state_dict["param_groups"] if isinstance(g, dict) for i in g.get("params", ())]


def _like_param(p, state: dict) -> None:
    """State tensors of ``p``'s shape put in ``p``'s memory layout (a checkpoint of a contiguous
    model loaded into a channels_last one, or the reverse), holding the values they show (a
    negated or conjugated view: the step's views cannot carry the bit): copies, where they differ.
    A complex param's complex state in its dtype (torch's loader casts the state of floating-point
    params only)."""
    cx = p.is_complex()
    for k, v in state.items():
        if not (isinstance(v, torch.Tensor) and v.shape == p.shape):
            continue
        cast = cx and v.is_complex() and v.dtype != p.dtype
        if cast or (v.dim() and (not _views.same_layout(v, p) or v.is_neg() or v.is_conj())):
            state[k] = _views.in_layout_of(p, v, p.dtype if cast else None)


def _zeros(p):
    """Zeros in ``p``'s memory layout (channels_last too): a state is stepped element by element
    with its param in memory order."""
    return torch.zeros_like(p, memory_format=torch.preserve_format)


_is_inference = torch.Tensor.is_inference


def _join_scalars(states: list, keys) -> tuple:
    """Per-param scalar tensors of a run (``step``, NAdam's ``mu_product``: equal within a run)
    re-made as 0-d views into one 1-D tensor per key, which one op then advances for the whole
    run (a foreach add over 200 0-d tensors costs 0.2-0.4 ms). Same values, dtypes and device as
    before; a key whose tensors differ in dtype or device, or are not 0-d, is left alone (as is a
    CPU dtype NumPy lacks: bfloat16).

    Returns ({key: the joined values, a NumPy array on the CPU}, [the joined 1-D tensors]): a
    tensor's ``_version`` moves with any in-place op on any of its views (a user's
    ``state[p]["step"].fill_(0)``) but not with the step's own add on the values, which is how a
    cached run notices that its params' step counts may no longer be equal (``_Runs._layout_holds``)."""
    joined, bufs = {}, []
    for k in keys:
        vals = [s[k] for s in states]
        first = vals[0]
        if not all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in vals):
            continue
        if any(v.dtype != first.dtype or v.device != first.device for v in vals):
            continue
        if any(map(_is_inference, vals)):  # (made under torch.inference_mode(): it has no version counter)
            continue
        # (joined into a normal tensor inside inference mode too, as the tensors it replaces are)
        with torch.inference_mode(False):
            buf = torch.stack([v.detach() for v in vals])
            try:
                # (a NumPy add costs a fraction of torch's; off the CPU, ``.data``: the same memory with
                # a version counter of its own, so the step's add does not move ``buf._version``)
                arr = buf.numpy() if buf.is_cpu else buf.data
            except TypeError:
                continue
            for j, s in enumerate(states):
                s[k] = buf[j]
        joined[k] = arr
        bufs.append(buf)
    return joined, bufs


def _equal_scalars(states: list, keys: tuple) -> bool:
    """Whether every state dict holds each of ``keys`` (the step count, per-param scalars) with
    the first's value, a finite one (a step count >= 0): whether params stepped in one call (one
    step count for all) still may be. False where any is missing or unreadable (``_layout`` then
    names it)."""
    try:
        for k in keys:
            first = float(states[0][k])
            if not math.isfinite(first) or (k == "step" and first < 0):
                return False
            if any(float(s[k]) != first for s in states[1:]):
                return False
    except (KeyError, TypeError, ValueError, RuntimeError):
        return False
    return True


@functools.cache
def _meta(core: type[_optim.Optimizer]) -> _optim.Optimizer:
    """An uninitialised instance of an optkern.optim class: what its state is made of (``_check``,
    ``_needed``, ``_new_state``, ``_new_extra``, ``_has_step``, ``_scalar_names``) is said there
    once, and those methods read no instance state."""
    return object.__new__(core)
