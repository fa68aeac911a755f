"""``to_torch_state_dict``: an optkern.torch optimizer's checkpoint in the form ``torch.optim``'s
optimizers load and step on as optkern's would have. Two things torch.optim cannot read as saved:
low-precision moments (8-bit codes, which its loader casts to values without a word; bfloat16) and
SGD's textbook momentum buffers (``momentum_form="textbook"``: v = -lr b, in parameter units and of
the opposite sign to torch's b, which its step would read as b: a step uphill, scaled by 1 / lr).

A textbook buffer becomes torch's b = -v / lr, lr the group's (the one in force at the next step,
rounded to the buffer's precision as both forms' steps round it): the float nearest the b that v
stands for (one rounding; computed in double precision, which holds the quotient of two floats
closely enough that rounding it again to float32 gives the correctly rounded float32 quotient). In
exact arithmetic torch's next step from it is the textbook step; in floating point it is the same
bits when lr is a power of two and momentum plain (dampening and weight decay too: scaling by a
power of two commutes with rounding), else within an ulp or so of the parameter per step (the two
forms round different products). Afterwards torch steps its own form: with a changing lr the two
forms differ by design (the textbook buffer weighs past gradients by their own lr). A group whose
lr is 0, negative or not finite holds no such b (refused, naming it), and so does a buffer whose b
overflows its dtype.
"""

from __future__ import annotations

import math

import torch

from .._lowp_schema import as_torch
from ._lowp import _is_8bit, float_entry

_BUF = "momentum_buffer"


def to_torch_state_dict(state_dict: dict, names: tuple = ()) -> dict:
    """An optkern.torch optimizer's ``state_dict()`` in the form ``torch.optim``'s optimizers load:
    8-bit and bfloat16 moments as float32 tensors, scales, block sizes and master copies dropped
    (torch keeps no master: its params continue from their half values), and SGD's textbook
    momentum buffers as torch's (b = -v / lr, their groups' ``momentum_form`` then ``"pytorch"``:
    see the module). Other entries are shared, not copied; the ``seed`` stays (torch's optimizers
    keep it as an unknown entry and save it again, so a checkpoint back from torch.optim rounds on
    with it). ``names``: the moments to convert (default: every 8-bit or bfloat16 tensor).
    ValueError naming the group's ``lr`` where a textbook buffer has no torch form. An optkern.optim
    checkpoint (NumPy arrays, ``block`` / ``state_dtype``) is read in optkern.torch's form first
    (:func:`optkern._lowp_schema.as_torch`): its arrays were passed on as NumPy arrays, which
    torch's loader refused with an error naming nothing."""
    if not isinstance(state_dict, dict) or not isinstance(state_dict.get("state"), dict):
        raise TypeError("state_dict: expected an optimizer state dict (with a 'state' dict)")
    state_dict = as_torch(state_dict)
    state = {}
    for key, entry in state_dict["state"].items():
        if not isinstance(entry, dict):
            state[key] = entry
            continue
        moments = names or tuple(
            k
            for k, v in entry.items()
            if isinstance(v, torch.Tensor) and (v.dtype is torch.bfloat16 or _is_8bit(entry, k))
        )
        state[key] = float_entry(entry, moments, f"state_dict['state'][{key!r}]")
    groups = state_dict.get("param_groups")
    if not isinstance(groups, (list, tuple)):  # (a tuple: torch's loader takes any sequence -- its textbook
        return {**state_dict, "state": state}  # buffers were left as they were, and loaded as torch's b)
    groups = list(groups)
    for i, group in enumerate(groups):
        if isinstance(group, dict) and group.get("momentum_form") == "textbook":
            _torch_buffers(group, state, f"state_dict['param_groups'][{i}]")
            groups[i] = {**group, "momentum_form": "pytorch"}
    return {**state_dict, "state": state, "param_groups": groups}


def holds_textbook(state_dict) -> bool:
    """Whether ``state_dict`` has a group in SGD's textbook form (``to_torch_state_dict`` converts
    its buffers for torch.optim.SGD, whose loader would take them as its own b)."""
    groups = state_dict.get("param_groups") if isinstance(state_dict, dict) else None
    return isinstance(groups, (list, tuple)) and any(
        isinstance(g, dict) and g.get("momentum_form") == "textbook" for g in groups
    )


def _torch_buffers(group: dict, state: dict, where: str) -> None:
    """The momentum buffers in ``state`` of textbook-form ``group``'s params as torch's b = -v / lr
    (new tensors of the buffer's dtype and device; entries copied, not written). All are computed
    before any entry is replaced: a refusal leaves ``state`` as it was."""
    new = {}
    for pid in group.get("params", ()):
        if getattr(pid, "__hash__", None) is None:
            raise ValueError(f"{where}['params']: expected hashable param ids, got {type(pid).__name__}")
        entry = state.get(pid)
        if not isinstance(entry, dict) or not isinstance(v := entry.get(_BUF), torch.Tensor):
            continue  # (none yet, or None: torch makes it from the next gradient, in either form)
        lr = _lr(group, where, v)
        wide = torch.complex128 if v.is_complex() else torch.float64
        b = torch.div(v.to(wide), -lr).to(v.dtype)  # (double, then one rounding: see the module)
        if not bool(torch.all(torch.isfinite(b) | ~torch.isfinite(v))):
            raise ValueError(
                f"{where}['lr']: {group['lr']!r} turns the textbook momentum buffer of state {pid!r} into "
                f"torch's b = -v / lr beyond {v.dtype}'s range (momentum_form='textbook')"
            )
        new[pid] = {**entry, _BUF: b}
    state.update(new)


def _lr(group: dict, where: str, v: torch.Tensor) -> float:
    """The group's lr as both forms' steps of ``v``'s precision take it (a float32 step multiplies
    by float32(lr)), refused unless positive and finite."""
    lr = group.get("lr")
    scalar = isinstance(lr, (int, float)) or (
        isinstance(lr, torch.Tensor) and lr.numel() == 1 and not (lr.is_complex() or lr.dtype == torch.bool)
    )
    value = float(lr) if scalar and lr is not None and not isinstance(lr, bool) else math.nan  # (else refused below)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(
            f"{where}['lr']: {lr!r}: a textbook momentum buffer v = -lr b (momentum_form='textbook') has no "
            "torch.optim form b = -v / lr unless lr is positive and finite"
        )
    real = v.real.dtype if v.is_complex() else v.dtype
    return float(torch.tensor(value, dtype=torch.float64).to(real))
