"""Composing schedules: linear warm-up, products (chain), concatenation
(sequential, optax.join_schedules) and the batch-size scaling rule."""

from __future__ import annotations

import bisect
import math

from .. import _backend
from ..lowp import _option
from .base import (
    Schedule,
    as_schedule,
    count,
    derived_total_steps,
    in_unit,
    positive,
    schedule_list,
    schedules_rule,
    steps,
)
from .decay import cosine


class linear_warmup(Schedule):
    """Linear warm-up in front of any schedule (Goyal et al. 2017).

    For ``t < warmup_steps`` the value is ``schedule(t0)`` times a factor
    rising linearly from ``start_factor`` (at t=0) to 1 (at t=warmup_steps);
    afterwards it is ``schedule(t - warmup_steps)`` when ``shift=True`` (the
    wrapped schedule starts after the warm-up, as in optax's join) or
    ``schedule(t)`` when ``shift=False`` (the warm-up overlays the first
    steps of the schedule, as Goyal et al. did with epoch-based step decay).
    ``t0`` is 0 with ``shift=True`` and ``t`` otherwise.

    Raises ValueError when the wrapped schedule has a finite horizon
    (``total_steps``) shorter than the warm-up and ``shift=False``.
    """

    _rules = (
        ("schedule", lambda name, v: as_schedule(v, name)),
        ("warmup_steps", count),
        ("start_factor", in_unit),
        ("shift", _backend.flag),
    )

    def __init__(self, schedule, warmup_steps, start_factor=0.0, shift=False):
        self.schedule = as_schedule(schedule)
        self.warmup_steps = count("warmup_steps", warmup_steps, 0)
        self.start_factor = in_unit("start_factor", start_factor)
        self.shift = _backend.flag("shift", shift)  # bool("False") was True
        self._check_together()

    def __setattr__(self, name: str, value) -> None:
        # an assigned schedule converted as the constructor converts it: a number or a plain callable
        # raised "'float' object is not callable" (or, for total_steps, an AttributeError) when used
        super().__setattr__(name, as_schedule(value, name) if name == "schedule" else value)

    def _check_together(self) -> None:
        # (again before each value: warmup_steps, shift or the schedule's own horizon assigned later)
        total = self.schedule.total_steps
        if total is not None and not self.shift and self.warmup_steps > total:
            raise ValueError(f"warmup_steps: {self.warmup_steps} is longer than the schedule's total_steps {total}")

    @derived_total_steps("schedule, warmup_steps and shift")
    def total_steps(self) -> int | None:
        """The wrapped schedule's horizon (now: it may be reassigned, or its own follow its
        attributes), plus the warm-up when ``shift``."""
        total = self.schedule.total_steps
        return None if total is None else total + (self.warmup_steps if self.shift else 0)

    def value(self, t):
        w = self.warmup_steps
        # The part through its __call__, which checks what it returns: through .value a list or
        # None met Python's own "can't multiply sequence" and a bool passed as 1.0.
        if t >= w:
            return self.schedule(t - w if self.shift else t)
        f = self.start_factor + (1.0 - self.start_factor) * t / w
        return f * self.schedule(0 if self.shift else t)


class chain(Schedule):
    """The product of schedules: ``s1(t) * s2(t) * ...`` (torch ChainedScheduler). With
    ``Scheduler(..., relative=True)`` it is what torch's chainable schedulers (StepLR, MultiStepLR,
    ExponentialLR...) give when several step one optimizer: two optkern Schedulers on one entry do
    not multiply (the last one's value is written), so chain their schedules into one."""

    def __init__(self, *schedules):
        if not schedules:
            raise ValueError("schedules: need at least one schedule")
        self.schedules = schedules

    _rules = (("schedules", schedules_rule),)

    def __setattr__(self, name: str, value) -> None:
        # the schedules (assigned later too) converted as the constructor's are: a number or a plain
        # callable assigned raised "'float' object is not callable" at the next value
        super().__setattr__(name, schedule_list(name, value) if name == "schedules" else value)

    def _check_together(self) -> None:
        if not self.schedules:  # (assigned [] afterwards: every value was 1.0)
            raise ValueError("schedules: need at least one schedule")

    def _check_attributes(self) -> None:
        ss = self.schedules  # (valid without the rules' full pass, as sequential's)
        if type(ss) is list and ss and all(isinstance(x, Schedule) for x in ss):
            return
        super()._check_attributes()

    @derived_total_steps("schedules")
    def total_steps(self) -> int | None:
        """The longest horizon of the schedules (None when one has none), as they are now."""
        totals = [s.total_steps for s in self.schedules]
        return None if None in totals else max(totals)

    def __repr__(self) -> str:  # (its schedules are positional: ``chain(s1, s2)``)
        return f"chain({', '.join(map(repr, self.schedules))})"

    def value(self, t):
        v = 1.0
        for s in self.schedules:
            v *= s(t)  # checked by its __call__, as linear_warmup's part is
        return v


class sequential(Schedule):
    """Schedules joined at boundaries (optax.join_schedules, torch SequentialLR).

    ``schedules[i]`` runs from ``boundaries[i-1]`` (0 for the first) with its
    own step counter restarted there: ``schedules[i](t - boundaries[i-1])``.
    ``boundaries`` are strictly increasing positive steps, one fewer than
    the schedules.
    """

    def __init__(self, schedules, boundaries):
        self.schedules = schedules
        if not self.schedules:
            raise ValueError("schedules: need at least one schedule")
        self.boundaries = steps("boundaries", boundaries)
        self._check_together()

    # Checked again before each value (assigned afterwards, unsorted boundaries ran the wrong schedules
    # silently, one too many raised IndexError); the schedules are converted when assigned.
    _rules = (("schedules", schedules_rule), ("boundaries", steps))

    def _check_together(self) -> None:
        b, n = self.boundaries, len(self.schedules)
        if not n:
            raise ValueError("schedules: need at least one schedule")
        if len(b) != n - 1:
            want = _backend.counted(n - 1, "entry", "entries")
            raise ValueError(f"boundaries: expected {want} for {n} schedules, got {len(b)}")
        for i in range(1, len(b)):
            if b[i] <= b[i - 1]:
                raise ValueError(f"boundaries: must be strictly increasing, got {b[i - 1]} then {b[i]}")

    def __setattr__(self, name: str, value) -> None:
        super().__setattr__(name, schedule_list(name, value) if name == "schedules" else value)

    def _check_attributes(self) -> None:
        # (the rules' answer for valid lists without them: lists are not cached as immutable values,
        # and the full pass cost ~6 us per value)
        b, ss = self.boundaries, self.schedules
        if (
            type(b) is list
            and type(ss) is list
            and len(b) == len(ss) - 1
            and all(type(x) is int for x in b)
            and (not b or (1 <= b[0] and b[-1] <= _backend.INT64_MAX))
            and all(x < y for x, y in zip(b, b[1:]))
            and all(isinstance(x, Schedule) for x in ss)
        ):
            return
        super()._check_attributes()

    @derived_total_steps("schedules and boundaries")
    def total_steps(self) -> int | None:
        """The last schedule's horizon after the last boundary (None when it has none), as now."""
        last = self.schedules[-1].total_steps
        return None if last is None else (self.boundaries[-1] if self.boundaries else 0) + last

    def value(self, t):
        i = bisect.bisect_right(self.boundaries, t)
        start = self.boundaries[i - 1] if i > 0 else 0
        return self.schedules[i](t - start)  # checked by its __call__, as linear_warmup's part is


def scale_lr(base_lr, batch, base_batch, rule: str = "linear") -> float:
    """Learning rate for batch size ``batch`` given one tuned at ``base_batch``.

    ``rule="linear"``: ``base_lr * batch / base_batch`` (Goyal et al. 2017,
    for SGD; pair it with :class:`linear_warmup`). ``rule="sqrt"``:
    ``base_lr * sqrt(batch / base_batch)`` (keeps the gradient-noise variance
    per step; often used for Adam-type methods).
    """
    base_lr = positive("base_lr", base_lr)
    batch = count("batch", batch, 1)
    base_batch = count("base_batch", base_batch, 1)
    # (_option: a NumPy array of strings made ``in`` raise an unnamed ValueError, or passed as one)
    rule = _option("rule", rule, ("linear", "sqrt"))
    try:
        lr = base_lr * batch / base_batch if rule == "linear" else base_lr * math.sqrt(batch / base_batch)
    except OverflowError:  # batch / base_batch beyond float's range
        lr = math.inf
    if not 0.0 < lr < math.inf:
        raise ValueError(f"batch: base_lr * ({rule} of batch / base_batch) = {lr!r} is not a positive finite float64")
    return lr


def warmup_cosine(lr=1.0, warmup_steps=0, total_steps=1, eta_min=0.0, start_factor=0.0) -> Schedule:
    """Linear warm-up to ``lr`` then cosine decay to ``eta_min``, ``total_steps`` in all
    (optax.warmup_cosine_decay_schedule). ValueError if warm-up exceeds the total."""
    warmup_steps = count("warmup_steps", warmup_steps, 0)
    total_steps = count("total_steps", total_steps, 1)
    if warmup_steps >= total_steps:
        raise ValueError(f"warmup_steps: {warmup_steps} must be shorter than total_steps {total_steps}")
    return linear_warmup(
        cosine(lr, total_steps - warmup_steps, eta_min), warmup_steps, start_factor=start_factor, shift=True
    )
