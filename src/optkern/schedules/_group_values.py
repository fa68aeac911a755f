"""The values a Scheduler reads from and writes into param groups: numbers, NumPy scalars, 1-element
NumPy / CuPy arrays (a capturable optimizer's device-resident lr) and torch tensors (torch's tensor lr
and betas), each read as a float and, where it is an array or tensor, updated in place."""

from __future__ import annotations

import numpy as np

from .._words import article


def param_groups(optimizer) -> list | tuple:
    """``optimizer.param_groups``, a list (or tuple) of dicts, or TypeError naming the optimizer."""
    groups = getattr(optimizer, "param_groups", None)
    if not isinstance(groups, (list, tuple)) or not all(isinstance(g, dict) for g in groups):
        raise TypeError("optimizer: expected an object with param_groups, a list of dicts")
    return groups


def _scalar(v) -> float:
    """A group value as a float: a number, or a 1-element (device) array."""
    return float(v.item()) if hasattr(v, "item") else float(v)


def _numel(v) -> int | None:
    """The element count of an array (NumPy, CuPy) or a torch tensor, whose ``size`` is a method
    (``size == 1`` never held for one: a tensor lr was refused); None for anything else."""
    numel = getattr(v, "numel", None)
    if callable(numel):
        return int(numel())
    size = getattr(v, "size", None)
    return size if isinstance(size, int) else None


def _item(v):
    """A 1-element (device) array's or tensor's number; anything else as it is (for the checks to name)."""
    return v.item() if hasattr(v, "item") and _numel(v) == 1 and not isinstance(v, (str, bytes)) else v


def _fills_in_place(v) -> bool:
    """Whether a group value is a 1-element array or tensor, updated in place (``fill`` / ``fill_``)
    as torch updates a tensor lr. A NumPy scalar (``np.float64``) is not: its ``fill`` returns and
    changes nothing, so writing through it left the lr at its first value."""
    if isinstance(v, np.generic):
        return False
    return _numel(v) == 1 and (callable(getattr(v, "fill_", None)) or callable(getattr(v, "fill", None)))


def _detached(v):
    """A copy of a 1-element array / tensor (``initial_<key>`` must not alias the value written in
    place: it drifted with the schedule, so the next Scheduler took the current lr as its base)."""
    if not _fills_in_place(v):
        return v
    return v.clone() if callable(getattr(v, "clone", None)) else v.copy()


#: group values written by assignment: no array or tensor, nothing to fill in place (exact types)
_PLAIN_VALUES = frozenset({float, int})


def check_put(v, where: str) -> None:
    """A group value :func:`_put` writes in place can take a float, else TypeError / ValueError naming
    ``where``: run over every group before any is written. Unchecked, a read-only NumPy array raised
    NumPy's unnamed "assignment destination is read-only" (a leaf tensor that requires grad, torch's
    in-place error) after the groups before it were written, and an integer array took the value
    truncated (an lr of 0.05 written as 0), silently."""
    if type(v) in _PLAIN_VALUES or not _fills_in_place(v):
        return
    floating = getattr(v, "is_floating_point", None)  # (a torch tensor)
    if callable(floating):
        if not floating():
            raise TypeError(f"{where}: {article(str(v.dtype))} tensor cannot hold the value (a floating tensor can)")
        if v.requires_grad and v.is_leaf:
            raise ValueError(f"{where}: a leaf tensor that requires grad cannot be written in place")
        return
    if np.dtype(v.dtype).kind != "f":
        raise TypeError(f"{where}: {article(str(v.dtype))} array cannot hold the value (a floating array can)")
    if not getattr(getattr(v, "flags", None), "writeable", True):  # (a CuPy array has no such flag)
        raise ValueError(f"{where}: array is read-only")


def still_takes(v) -> bool:
    """Whether ``v``, the very object that passed :func:`check_put` before, passes it still: only
    what one object can change is read again (a NumPy array's writeable flag and assignable dtype, a
    tensor's requires_grad and its dtype through ``.data``), ~0.3 us where check_put takes ~2 us
    (~3 for a tensor). False (check it again) for anything else."""
    if type(v) is np.ndarray:
        return v.dtype.kind == "f" and bool(v.flags.writeable)
    floating = getattr(v, "is_floating_point", None)
    return callable(floating) and bool(floating()) and not (v.requires_grad and v.is_leaf)


def _put(g: dict, key: str, v: float) -> None:
    """Write ``v`` as the group's ``key`` entry: a device-resident value (a capturable GPU optimizer's
    lr, a tensor lr) is updated in place, as torch's schedulers do, so that a captured CUDA graph
    reads the new value at its next replay; anything else is replaced."""
    cur = g[key]
    if type(cur) not in _PLAIN_VALUES and _fills_in_place(cur):
        fill = getattr(cur, "fill_", None)
        (fill if callable(fill) else cur.fill)(v)
    else:
        g[key] = v
