"""``amp.GradScaler``'s record of one iteration (since the last ``update()``): each optimizer's
stage and found_inf flag, as torch.amp.GradScaler's ``_per_optimizer_states`` keeps them.

An optimizer is READY until its grads are unscaled (``unscale_(optimizer, grads)``, or inside
``step``), UNSCALED until its step, then STEPPED: a second ``unscale_`` or ``step`` for it before
``update()`` raises torch's RuntimeError, and each optimizer's step is skipped on its own flag
only. ``update()`` backs the scale off when any optimizer's flag is set. Optimizers are keyed by
``id()``, as torch keys them, and held by the record (one iteration long): an optimizer dropped
after its step cannot leave its id to the next one made.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any, NamedTuple

import numpy as np

from . import _backend
from ._array_checks import byte_span

__all__ = ["OptState"]


class OptState(Enum):
    """An optimizer's stage in the current iteration (torch.amp.grad_scaler.OptState)."""

    READY = 0
    UNSCALED = 1
    STEPPED = 2


class Iteration:
    """The stages and found_inf flags recorded since the last ``update()``."""

    def __init__(self) -> None:
        #: id(optimizer) -> [stage, found_inf flag, the optimizer, the unscaled grads' memory_of]
        #: (recorded once its grads were checked; the optimizer held so that its id is not reused by
        #: another within the iteration; the memory of grads unscale_ unscaled, else None)
        self.states: dict[int, list] = {}
        #: the flag of ``unscale_(grads)`` (no optimizer named) that no step has claimed yet
        self.pending: Any = None
        #: the memory of the grads that ``unscale_(grads)`` unscaled (``memory_of``); None: unknown
        #: (a scaler pickled before it was kept), any step claims the flag
        self.pending_grads: tuple | None = None

    def __bool__(self) -> bool:
        return bool(self.states) or self.pending is not None

    def stage(self, optimizer) -> OptState:
        entry = self.states.get(id(optimizer))
        return OptState.READY if entry is None else entry[0]

    def found_inf(self, optimizer):
        return self.states[id(optimizer)][1]

    def record(self, optimizer, stage: OptState, found_inf, unscaled: tuple | None = None) -> None:
        self.states[id(optimizer)] = [stage, found_inf, optimizer, unscaled]

    def take_unscaled(self, optimizer, grads) -> None:
        """The grads ``step(optimizer, grads)`` takes, against what was unscaled for ``optimizer``:
        claimed from ``unscale_(grads)`` (``claim_pending``: the same memory), else ValueError naming
        ``grads`` when an ``unscale_`` of ``optimizer`` unscaled other grads (another memory): taken
        as unscaled, they were stepped on still scaled and skipped on the other grads' flag (an inf
        among them written into the params). Their memory is walked once (a claim was walked twice,
        once to claim and once to compare with the very memory it claimed)."""
        if self.claim_pending(optimizer, grads):
            return
        entry = self.states.get(id(optimizer))
        if entry is None or entry[0] is not OptState.UNSCALED or entry[3] is None:
            return
        given = memory_of(grads)  # (None: no list of arrays, which the step's own checks name)
        if given is not None and given != entry[3]:
            raise ValueError(
                "grads: not the grads unscale_() unscaled for this optimizer since the last update() "
                "(step(optimizer, grads) takes the grads unscale_ was given)"
            )

    def stepping(self, optimizer, found_inf) -> list | None:
        """Record ``optimizer`` STEPPED before its step runs (outside the scaler's lock: an
        ``update()`` meanwhile reads this flag); returns the entry it replaced, for ``undo``."""
        before = self.states.get(id(optimizer))
        self.record(optimizer, OptState.STEPPED, found_inf)
        return before

    def undo(self, optimizer, before: list | None) -> None:
        """Put back the entry ``stepping`` replaced: that step raised (a refused step changes nothing)."""
        if before is None:
            self.states.pop(id(optimizer), None)
        else:
            self.states[id(optimizer)] = before

    def claim_pending(self, optimizer, grads) -> bool:
        """A READY optimizer stepped on the grads ``unscale_(grads)`` unscaled: those were its grads,
        unscaled (the single-optimizer form, which ``unscale_`` allows once per iteration). A step on
        other grads (another optimizer's) leaves it READY, its grads unscaled by the step, as torch
        tracks each optimizer's own unscale: claimed by any step, they were stepped still scaled.
        Returns whether it claimed them."""
        if not self.holds_pending(optimizer, grads):
            return False
        self.record(optimizer, OptState.UNSCALED, self.pending, self.pending_grads)
        self.pending, self.pending_grads = None, None
        return True

    def refuse_pending(self, optimizer, grads) -> None:
        """RuntimeError when ``unscale_(optimizer, grads)`` names the grads ``unscale_(grads)``
        unscaled: unscaled again they were divided by the scale twice, silently (torch's unscale_
        refuses a second call for one optimizer). Nothing is recorded: its step claims them."""
        if self.holds_pending(optimizer, grads):
            raise RuntimeError(
                "unscale_() has already been called on these grads (unscale_(grads)) since the last "
                "update(); step(optimizer, grads) takes them as this optimizer's, unscaled"
            )

    def holds_pending(self, optimizer, grads) -> bool:
        """Whether ``grads`` of a READY ``optimizer`` are those ``unscale_(grads)`` unscaled and no
        step claimed yet (the same memory; any grads when that memory is unknown)."""
        if self.pending is None or id(optimizer) in self.states:
            return False
        return self.pending_grads is None or memory_of(grads) == self.pending_grads

    def flags(self) -> list:
        """Every found_inf flag recorded, for ``update()`` (none for an optimizer unscaled with
        every grad None: nothing was checked)."""
        found = [entry[1] for entry in self.states.values() if entry[1] is not None]
        return found + ([] if self.pending is None else [self.pending])


class Stepping(NamedTuple):
    """An optimizer's step that ``GradScaler.step`` has checked and recorded, to run without the
    scaler's lock: the ``grads`` it takes, the attributes set on ``target`` around it (the device
    flag, the scale, the checked grads), the context it runs in (a distributed wrapper's
    ``skip_synchronize``), and the record to put back if it raises (``Iteration.undo``)."""

    iteration: Iteration
    optimizer: Any
    before: list | None
    grads: Any
    target: Any
    attrs: dict
    context: Any


def memory_of(grads) -> tuple | None:
    """Where each of ``grads`` lies (first and end byte, shape, strides, dtype; None entries as
    None): the same grads passed again as other objects (views made again, a new list, the NumPy
    view of a torch tensor) compare equal. None when ``grads`` is no list of arrays (the checks
    of the call that asks name it)."""
    try:
        arrays = _backend.as_list(grads, "grads")
        return tuple(
            None if a is None else (byte_span(a), tuple(a.shape), tuple(a.strides), str(a.dtype)) for a in arrays
        )
    except (TypeError, ValueError, AttributeError):
        return None


def combined(flags: list, scale):
    """One found_inf flag beside ``scale`` (its backend and device) that is set when any of
    ``flags`` is: torch sums them, the nonzero test is the same. On the device the flags are
    combined there, without a host synchronization (one from another backend or device is
    copied over first)."""
    here = [f if _same_place(f, scale) else _backend.asarray_like(f, scale, np.float32) for f in flags]
    if len(here) == 1:
        return here[0]  # (only read by amp_update_scale_)
    xp = _backend.array_module(scale)
    with _backend._device_of(scale):
        total = here[0].copy()
        for f in here[1:]:
            xp.maximum(total, f, out=total)
    return total


def _same_place(a, b) -> bool:
    if _backend.is_cupy(a) != _backend.is_cupy(b):
        return False
    return not _backend.is_cupy(a) or a.device.id == b.device.id


def distributed(optimizer) -> bool:
    """``optimizer`` is a distributed wrapper on more than one rank (``DistributedOptimizer``,
    ``ShardedOptimizer``: their ``comm`` averages the grads inside the step)."""
    comm = getattr(optimizer, "comm", None)
    return comm is not None and getattr(comm, "size", 1) > 1 and callable(getattr(comm, "allreduce", None))


def agreed(optimizer, found, err: Exception | None = None):
    """``found`` made the same on every rank of a distributed wrapper: an inf on one rank reaches
    every rank's averaged grads, so every rank must skip. Each rank checked its own local grads; a
    rank that skipped alone left the others waiting in the step's gradient allreduce for ever. One
    max-allreduce of the 1-element flag, in place (on the device for CuPy flags: no host sync).

    ``err``: this rank refused its grads (``found`` a zeroed flag then): it is raised here after
    the allreduce, and every other rank raises a ValueError saying so (2 in the flag), where they
    waited alone in the allreduce before."""
    if not distributed(optimizer):
        if err is not None:
            raise err
        return found
    if err is not None:
        found[...] = 2
    optimizer.comm.allreduce(found, "max", ordered=False, check=False)
    if err is not None:
        raise err
    # NumPy flags only: a CuPy flag stays on the device (2 there skips the step as an inf would)
    if not _backend.is_cupy(found) and found[0] == 2:
        raise ValueError("grads: GradScaler.step was refused on another rank (see its error)")
    return found


_GRAD = re.compile(r"\bgrads\[(\d+)\]")


def renumbered(err: Exception, index: list[int] | None) -> Exception:
    """``err`` of a native call over some of the grads (``index``: the position in ``grads`` of
    each array passed; None: all of them, in order) naming each grad by its position in ``grads``:
    the call's own position named another grad (after a None entry, or across the format groups
    of a low-precision optimizer's grads)."""
    if index is None:
        return err

    def at(m: re.Match) -> str:
        k = int(m.group(1))
        return f"grads[{index[k]}]" if k < len(index) else m.group(0)

    return type(err)(_GRAD.sub(at, str(err)))
