"""Inference tensors (made under ``torch.inference_mode()``) in optkern.torch's in-place updates.

torch allows an in-place update of an inference tensor only inside inference mode: outside it,
torch.optim's steps, ``clip_grad_norm_`` / ``clip_grad_value_``, LBFGS and SWA's ``n_averaged``
update raise RuntimeError "Inplace update to inference tensor outside InferenceMode is not
allowed" (after they wrote: the check follows the kernel). optkern writes through NumPy / DLPack
views, which torch does not check: the steps ask here first, before anything is written.

Refused with torch's RuntimeError and its words, not the ValueError of a bad argument: the same
tensor is fine inside inference mode (what is wrong is the mode the call runs in, a state error),
and a drop-in must raise what torch raises, so that code catching torch's error catches this one.
The message adds which tensor it is, by its place (``param_groups[0]['params'][1]``).
"""

from __future__ import annotations

import torch

enabled = torch.is_inference_mode_enabled
_is_inference = torch.Tensor.is_inference
_TENSOR = torch.Tensor


def refuse(name: str) -> None:
    """torch's RuntimeError for an in-place update of inference tensor ``name`` outside inference mode."""
    raise RuntimeError(
        f"{name}: Inplace update to inference tensor outside InferenceMode is not allowed (it was made "
        "under torch.inference_mode(): step inside one, or make a normal tensor of it with .clone() "
        "outside, as torch.optim requires)"
    )


def first_written(params: list, states: list, keys) -> tuple | None:
    """(k, key) of an inference tensor an optimizer's step of ``params`` would write (the params
    first, then the state entries key by key): param ``k`` (key None) or its state
    ``states[k][key]`` for ``key`` in ``keys`` (state tensors, step counts, per-param scalars);
    None when there is none. A pass over the tensors (~0.1 us each):
    the per-step callers keep its result with the views they cache (``_Runs._run``)."""
    if any(map(_is_inference, params)):
        return next(k for k, p in enumerate(params) if p.is_inference()), None
    for key in keys:  # (one key at a time: a C-level pass over the tensors held)
        vals = [s.get(key) for s in states]
        if any(map(_is_inference, [v for v in vals if isinstance(v, _TENSOR)])):
            return next(k for k, v in enumerate(vals) if isinstance(v, _TENSOR) and v.is_inference()), key
    return None


def refuse_tensors(tensors: list, name) -> None:
    """Outside inference mode, ``refuse`` the first inference tensor of ``tensors`` (None skipped;
    ``name(k)``: how errors name the k-th)."""
    if enabled():
        return
    for k, t in enumerate(tensors):
        if t is not None and t.is_inference():
            refuse(name(k))


def check_run(opt, group: dict, ps: list, gi: int, names: tuple, states: list | None = None) -> tuple | None:
    """``first_written`` of a run of ``_Fused`` optimizer ``opt`` (params ``ps`` of group ``gi``,
    ``names`` the state tensors its step writes, ``states`` their state dicts: looked up if None),
    refused outside inference mode (``refuse_found``); returned, for the view cache to keep."""
    if states is None:
        states = [opt.state.get(p) or {} for p in ps]
    found = first_written(ps, states, names + opt._run_keys + opt._written_extra)
    if found is not None and not enabled():
        refuse_found(opt, group, ps, gi, found)
    return found


def refuse_found(opt, group: dict, ps: list, gi: int, found: tuple) -> None:
    """``refuse`` what ``first_written`` found in run ``ps`` (group ``gi``) of optimizer ``opt``."""
    k, key = found
    name = opt._names(group, [ps[k]], gi)[0]
    refuse(name if key is None else f"state[{name}][{key!r}]")
