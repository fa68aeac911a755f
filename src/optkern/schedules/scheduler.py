"""The object that writes a schedule into an optimizer's param groups (:class:`Scheduler`) and the
checks of the values it writes (the warning for a schedule of the wrong kind: :mod:`._scale_warning`).

A schedule is stateless (:mod:`.base`); the Scheduler holds the one piece of state a training loop
needs, the step counter, and writes ``value`` into every param group.
"""

from __future__ import annotations

import math
import numbers

from .. import _backend, _hyper_scalars
from .._foreign import array_pair
from .._words import article
from ._group_values import _detached, _item, _put, _scalar, check_put, param_groups, still_takes
from ._scale_warning import ScheduleScaleWarning, _value, warn_if_suspect
from .base import Schedule, as_schedule, check_step

__all__ = ["Scheduler", "ScheduleScaleWarning", "momentum_scheduler"]

#: The values the optimizers (optkern's and torch's) accept in the group entries whose meaning
#: they fix: a Scheduler writes nothing else there. Any other entry only needs a finite value.
_RANGES: dict = {
    "lr": dict(lo=0.0),
    "weight_decay": dict(lo=0.0),
    "momentum": dict(lo=0.0),
    "eps": dict(lo=0.0, lo_open=True),
    "betas": dict(lo=0.0, hi=1.0, hi_open=True),
}


#: ``_RANGES`` as (lo, hi, lo_open, hi_open), unbounded ends as infinities (``Scheduler._values``'
#: test of a float before it calls in_range)
_BOUNDS: dict = {
    k: (r.get("lo", -math.inf), r.get("hi", math.inf), r.get("lo_open", False), r.get("hi_open", False))
    for k, r in _RANGES.items()
}
_NO_BOUNDS = (-math.inf, math.inf, False, False)


class Scheduler:
    """Drive the hyper-parameter ``key`` (default ``'lr'``) of every param group.

    Args:
      optimizer: any object with ``param_groups``, a list of dicts holding a
        mutable ``key`` entry (optkern.optim optimizers, torch.optim ones).
      schedule: a :class:`Schedule` or callable ``step -> float``.
      relative: ``False`` (default): every group's value is ``schedule(t)``
        itself, the schedule states the lr in absolute terms, as torch's
        ``OneCycleLR(max_lr=...)`` does: ``Scheduler(SGD(lr=0.1), one_cycle(0.1, ...))``
        peaks at 0.1. ``True``: the value is the group's base value times
        ``schedule(t)`` (build such a schedule with peak/initial value 1.0),
        so per-group learning rates keep their ratios as torch's ``StepLR`` /
        ``LambdaLR`` do; ``eta_min`` and the like are then multipliers too.
      key: which group entry to write (``"lr"``, ``"momentum"``, ``"weight_decay"``,
        ``"betas"``...).
      index: for a tuple-valued entry (``"betas"``), which element to drive
        (0 for Adam's beta1, as torch's one-cycle momentum does).

    Mixing the two kinds up is loud: a :class:`ScheduleScaleWarning` when an
    absolute schedule peaks more than 100x above a group's configured value,
    when a multiplier schedule peaks below 1/100, or when an absolute schedule
    would give groups with different configured values the same value.

    Like torch.optim.lr_scheduler: the base value of each group is read once
    (stored as ``group['initial_<key>']``), construction writes the value at
    step 0, and every :meth:`step` advances one step and writes its value.
    :meth:`state_dict` / :meth:`load_state_dict` hold the step and the base
    values, so a resumed run writes exactly the values of an uninterrupted one.

    Unlike torch: two Schedulers driving one entry do not chain (torch's
    chainable schedulers multiply the current value; a Scheduler writes
    ``schedule(t)``, or the base value times it, so the last one to step
    wins). Drive the entry with one Scheduler over :func:`chain` of the
    schedules (their product, relative=True for torch's StepLR / ExponentialLR
    pair). A second Scheduler built on an entry replaces the first (a new
    phase, a rebuilt run), which is why it is not refused.
    """

    def __init__(self, optimizer, schedule, *, relative: bool = False, key: str = "lr", index: int | None = None):
        groups = param_groups(optimizer)
        # (the flag rule every step reads ``relative`` by: a NumPy bool, taken when assigned, was
        # refused here as "expected a bool, got bool", and by load_state_dict in the state it wrote)
        relative = _backend.flag("relative", relative)
        index = _check_target_types(key, index)
        for i, g in enumerate(groups):
            if key not in g:
                # (names key, the wrong argument, and what it could be: the group's entries)
                entries = ", ".join(repr(k) for k in g if k != "params")
                raise ValueError(f"key: optimizer.param_groups[{i}] has no {key!r} entry (its entries: {entries})")
            _check_entry(g[key], key, index, i)
        if index is not None and index < 0 and groups:  # (one element, one name: 'initial_betas1' for -1 too)
            sizes = {len(g[key]) for g in groups}
            if len(sizes) > 1:
                raise ValueError(
                    f"index: {index} names different elements of groups' {key!r} of lengths {sorted(sizes)}"
                )
            index += sizes.pop()
        self.optimizer = optimizer
        self.schedule = as_schedule(schedule)
        self.relative = relative
        self.key = key
        self.index = index
        self._target = (key, index)  # (what base_values and 'initial_<key>' belong to)
        init = "initial_" + self._label
        # named by the entry read: a bad 'lr' of a group without 'initial_lr' was called 'initial_lr'
        self.base_values = [
            self._checked(
                f"optimizer.param_groups[{i}][{init!r}]" if init in g else self._where(i),
                g.get(init, self._get(g)),
            )
            for i, g in enumerate(groups)
        ]
        self.last_step = 0
        self._last_values: list = []
        values = self._values(0, self.base_values, relative)  # every check before the groups change
        self._check_writes()
        warn_if_suspect(self.schedule, self.base_values, relative, self._label)
        for g in groups:
            g.setdefault(init, _detached(self._get(g)))
        self._write(values)

    @property
    def _label(self) -> str:
        return self.key if self.index is None else f"{self.key}{self.index}"

    def _get(self, g):
        v = g[self.key]
        return v if self.index is None else v[self.index]

    def values(self, step: int | None = None) -> list:
        """The per-group values at ``step`` (default: the current step)."""
        self._check_target()
        t = self._last_step() if step is None else check_step(step)
        return self._values(t, self.base_values, self._relative())

    # The attributes a step reads, checked by name first (assignable, as torch's ``last_epoch``): a
    # ``relative`` of "no" read as True and scaled every value silently, a ``last_step`` of None raised
    # Python's unnamed TypeError, one of 2.5 or -5 was blamed on "step".
    def _relative(self) -> bool:
        r = self.relative
        return r if type(r) is bool else _backend.flag("relative", r)

    def _last_step(self) -> int:
        t = self.last_step
        return t if type(t) is int and 0 <= t < _backend.INT64_MAX else _backend.integer("last_step", t, 0)

    def _values(self, t: int, base: list, relative: bool) -> list:
        """The values to write at step ``t``, each checked (finite, in the entry's range) or
        TypeError / ValueError naming the schedule."""
        s = self.schedule
        # (one assigned after construction, converted as the constructor converts it: a number is a
        # constant, None raised Python's unnamed "'NoneType' object is not callable")
        v = _value(s if isinstance(s, Schedule) else as_schedule(s), t)
        values = [b * v for b in base] if relative else [v for _ in base]
        lo, hi, lo_open, hi_open = _BOUNDS.get(self.key, _NO_BOUNDS)
        for i, x in enumerate(values):
            # the common case without building the error's name: a finite float inside the range
            # (in_range's answer for it; anything else takes in_range itself)
            if type(x) is float and -math.inf < x < math.inf and (lo < x if lo_open else lo <= x):
                if x < hi if hi_open else x <= hi:
                    continue
            self._checked(f"schedule (step {t}, {self._where(i)})", x)
        return values

    def _checked(self, name: str, v) -> float:
        """``v`` as a float if it is a finite value the driven entry accepts (``_RANGES``)."""
        # (a NumPy float16 refused before _item makes it a float: torch's schedulers scale it in float16)
        _hyper_scalars.refuse_float16(name, v)
        return _backend.in_range(name, _item(v), **_RANGES.get(self.key, {}))

    def _where(self, i: int) -> str:
        return f"optimizer.param_groups[{i}][{self.key!r}]" + ("" if self.index is None else f"[{self.index}]")

    def _check_target(self) -> None:
        """``key`` and ``index`` are still the entry the base values were read from: one assigned
        afterwards raised Python's unnamed KeyError (``key = 5``) or "'float' object is not
        iterable" (``index = 0`` on 'lr'), or replaced Adam's betas tuple by a float (``key =
        'betas'``), silently. Checked as the constructor checks them, then refused by name."""
        key, index = self.key, self.index
        if key is self._target[0] and index is self._target[1]:
            return
        index = _check_target_types(key, index)
        if (key, index) != self._target:
            name = "key" if key != self._target[0] else "index"
            raise ValueError(
                f"{name}: this Scheduler was built to drive {self._target[0]!r}[{self._target[1]}] (its base "
                f"values are that entry's), not {key!r}[{index}]; build a new Scheduler for another entry"
            )

    def _check_groups(self) -> None:
        """The optimizer still has the groups it was built for: zip() dropped a group added later
        (``add_param_group``), left unscheduled without a word (torch's LambdaLR raises there)."""
        n, m = len(self.optimizer.param_groups), len(self.base_values)
        if n != m:
            raise ValueError(
                f"optimizer: has {n} param groups, this Scheduler was built for {m}; a group added or "
                "removed after it is not scheduled: build a new Scheduler (load_state_dict with one "
                "base value per group continues the step count)"
            )

    def _check_writes(self) -> None:
        """Every group's entry written in place can take its value (``check_put``), before any is.
        An entry checked before and still the same object is only read for what one object can
        change (``still_takes``): the whole check at every step was ~40% of a step's time with
        array lrs (22 of 53 us over 10 groups)."""
        if self.index is not None:
            return
        groups, key = self.optimizer.param_groups, self.key
        passed = self.__dict__.get("_writes_checked", ())  # (an unpickled Scheduler's: none)
        checked = False
        for i, g in enumerate(groups):
            v = g[key]
            if type(v) is float:  # (the common case: no name built, ~0.3 us a group)
                continue
            if i < len(passed) and passed[i] is v and still_takes(v):
                continue
            check_put(v, self._where(i))
            checked = True
        if checked:
            self._writes_checked = [g[key] for g in groups]

    def _write(self, values: list) -> None:
        groups, key = self.optimizer.param_groups, self.key
        for g, v in zip(groups, values):
            if self.index is not None:
                cur = g[key]
                seq = list(cur)
                seq[self.index] = v
                # (a tuple subclass as itself; a 1-D array as a tuple, as torch's schedulers write betas)
                g[key] = seq if isinstance(cur, list) else type(cur)(seq) if isinstance(cur, tuple) else tuple(seq)
            else:
                _put(g, key, v)
        # Kept as read back (a float32 tensor's rounding included): get_last_lr read the groups, so
        # an lr set by hand or by another scheduler was reported as this one's (torch: its own).
        if self.index is None:  # (a float read back is itself: _scalar's look-up for item() skipped)
            self._last_values = [v if type(v) is float else _scalar(v) for v in [g[key] for g in groups]]
        else:
            self._last_values = [_scalar(self._get(g)) for g in groups]

    def step(self) -> None:
        """Advance one step and write the new value into every param group (on an error, neither happens)."""
        self._check_target()
        self._check_groups()
        t = self._last_step()
        if t == _backend.INT64_MAX:  # (the step after it is past int64: "step" was blamed, no argument here)
            raise ValueError(f"last_step: must be <= {_backend.INT64_MAX - 1} to step, got {t}")
        t += 1
        values = self._values(t, self.base_values, self._relative())
        self._check_writes()
        self._write(values)
        self.last_step = t

    def get_last_lr(self) -> list:
        """The values last written, one per group (torch's name)."""
        return list(self._last_values)

    def state_dict(self) -> dict:
        """Step counter, base values, relative flag, key and index (the schedule itself is pure)."""
        self._check_target()
        return {
            "last_step": self.last_step,
            "base_values": list(self.base_values),
            "relative": self._relative(),  # (checked, a Python bool: what the file keeps as written)
            "key": self.key,
            "index": self.index,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state`` (from :meth:`state_dict`); rewrites the groups' values. All of
        ``state`` and the values it leads to are checked before anything changes."""
        self._check_target()
        # (an unknown key refused: a typo'd 'relatve': True loaded as this scheduler's relative=False)
        _backend.state_keys(state, ("last_step", "base_values"), ("relative", "key", "index"), "a Scheduler's")
        raw = state["base_values"]
        if not isinstance(raw, (list, tuple)):
            raise TypeError(f"state['base_values']: expected a list of numbers, got {type(raw).__name__}")
        if len(raw) != len(self.optimizer.param_groups):
            raise ValueError(
                f"state['base_values']: has {len(raw)} entries but the optimizer has "
                f"{len(self.optimizer.param_groups)} param groups"
            )
        base = [self._checked(f"state['base_values'][{i}]", b) for i, b in enumerate(raw)]
        relative = _backend.flag("state['relative']", state["relative"]) if "relative" in state else self._relative()
        key, index = state.get("key", self.key), state.get("index", self.index)
        # Compared as a str and an integer (or None): a NumPy array compared element by element, so
        # != raised NumPy's unnamed "truth value is ambiguous", or a 1-element one passed.
        same_index = (
            index is None
            if self.index is None
            else isinstance(index, numbers.Integral) and not isinstance(index, bool) and index == self.index
        )
        if not (isinstance(key, str) and key == self.key and same_index):
            raise ValueError(
                f"state: drives {state.get('key')!r}[{state.get('index')}], this scheduler {self.key!r}[{self.index}]"
            )
        # named as the caller wrote it (check_step said "step:")
        last_step = _backend.integer("state['last_step']", state["last_step"], 0, _backend.INT64_MAX)
        values = self._values(last_step, base, relative)
        self._check_writes()
        self.last_step, self.base_values, self.relative = last_step, base, relative
        for g, b in zip(self.optimizer.param_groups, base):
            g["initial_" + self._label] = b
        self._write(values)

    def _restore_point(self):
        """A callable putting back what :meth:`load_state_dict` changes, as it is now: this scheduler's
        state and its groups' entries (``optkern.load``'s undo when a later target fails: a reload of
        the state dict wrote the schedule's value over an entry set by hand or by another scheduler)."""
        self._check_target()  # (a key assigned since: named, as load_state_dict names it, not a KeyError)
        init = "initial_" + self._label
        state = (self.last_step, list(self.base_values), self.relative, list(self._last_values))
        entries = [(_scalar(self._get(g)), g.get(init, _ABSENT)) for g in self.optimizer.param_groups]

        def restore() -> None:
            self._write([v for v, _ in entries])  # (as a step writes: a tensor lr filled in place)
            for g, (_, b) in zip(self.optimizer.param_groups, entries):
                if b is _ABSENT:
                    g.pop(init, None)
                else:
                    g[init] = b
            self.last_step, self.base_values, self.relative, self._last_values = state

        return restore


_ABSENT = object()  # (a group's 'initial_<key>' entry that was not there)


def _check_target_types(key, index) -> int | None:
    """``index`` as a Python int (or None) once ``key`` and ``index`` are of the right types. A NumPy
    integer is one (as every integer argument of the library takes it; it was refused as "expected an
    int, got int64"); a bool is not."""
    if not isinstance(key, str):
        raise TypeError(f"key: expected a str, got {type(key).__name__}")
    if index is None or type(index) is int:
        return index
    if isinstance(index, bool) or not isinstance(index, numbers.Integral):
        raise TypeError(f"index: expected an int or None, got {type(index).__name__}")
    return int(index)


def _check_entry(v, key: str, index, i: int) -> None:
    """A group's ``key`` entry is a number (index None) or a sequence with element ``index``."""
    where = f"optimizer.param_groups[{i}][{key!r}]"
    if index is None:
        if isinstance(v, (tuple, list)):
            raise TypeError(f"{where}: is a {type(v).__name__}; pass index= to drive one element (index=0 for beta1)")
        return
    if not (isinstance(v, (tuple, list)) or array_pair(v)):  # (betas as a 1-D array: torch.optim's Adams take it)
        raise TypeError(f"index: {where} is {article(type(v).__name__)}, not a tuple or list")
    if not -len(v) <= index < len(v):
        raise ValueError(f"index: {index} is out of range for {where} of length {len(v)}")


def momentum_scheduler(optimizer, schedule) -> Scheduler:
    """An absolute :class:`Scheduler` cycling momentum as torch's ``cycle_momentum=True`` does: the
    groups' ``momentum`` entry, or ``betas[0]`` for Adam-like optimizers (torch's rule)."""
    groups = param_groups(optimizer)
    if not groups:  # (a list of dicts, but none to pick the entry from)
        raise ValueError("optimizer: has no param groups, so neither 'momentum' nor 'betas' to drive")
    if "betas" in groups[0]:
        return Scheduler(optimizer, schedule, key="betas", index=0)
    if "momentum" in groups[0]:
        return Scheduler(optimizer, schedule, key="momentum")
    raise ValueError("optimizer: has neither 'momentum' nor 'betas' in its param groups")
