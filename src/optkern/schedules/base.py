"""The Schedule type (with the constant one), and the object that writes a schedule into an optimizer.

A schedule is a pure function of the step: ``sched(t) -> value`` for an
integer ``t >= 0``. It holds no state, so evaluating it at any step, in any
order, gives the same number. :class:`Scheduler` adds the one piece of state a
training loop needs (the step counter) and writes ``value`` into every param
group of an optimizer.
"""
from __future__ import annotations

import numbers

from .. import _backend


def check_step(step) -> int:
    """``step`` as a non-negative int, or TypeError / ValueError naming it."""
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise TypeError(f"step: expected an integer, got {type(step).__name__}")
    step = int(step)
    if step < 0:
        raise ValueError(f"step: must be >= 0, got {step}")
    return step


class Schedule:
    """A learning-rate (or multiplier) schedule: a pure function of the step.

    Subclasses implement :meth:`value` for an already validated ``int`` step.
    ``total_steps`` is the horizon after which the schedule stops changing
    (``None`` when it has none); :func:`linear_warmup` checks against it.
    """

    total_steps: int | None = None

    def __call__(self, step) -> float:
        """The value at ``step`` (an integer >= 0)."""
        return float(self.value(check_step(step)))

    def value(self, t: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def attach(self, optimizer, *, mode: str = "multiplier", key: str = "lr") -> Scheduler:
        """A :class:`Scheduler` driving ``optimizer``'s param groups with this schedule."""
        return Scheduler(optimizer, self, mode=mode, key=key)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class constant(Schedule):
    """``value`` at every step."""

    def __init__(self, value=1.0):
        self.lr = _backend.real("value", value)

    def value(self, t):
        return self.lr


class FunctionSchedule(Schedule):
    """Wrap any callable ``f(step) -> float`` as a :class:`Schedule`."""

    def __init__(self, fn, total_steps: int | None = None):
        if not callable(fn):
            raise TypeError(f"fn: expected a callable, got {type(fn).__name__}")
        self.fn = fn
        self.total_steps = total_steps

    def value(self, t: int) -> float:
        return float(self.fn(t))


def as_schedule(s, name: str = "schedule") -> Schedule:
    """A Schedule from a Schedule, a plain callable or a constant number."""
    if isinstance(s, Schedule):
        return s
    if isinstance(s, numbers.Real) and not isinstance(s, bool):
        return constant(s)
    if callable(s):
        return FunctionSchedule(s)
    raise TypeError(f"{name}: expected a Schedule, a callable or a number, got {type(s).__name__}")


def _scalar(v) -> float:
    """A group value as a float: a number, or a 1-element (device) array."""
    return float(v.item()) if hasattr(v, "item") else float(v)


class Scheduler:
    """Drive the hyper-parameter ``key`` (default ``'lr'``) of every param group.

    Args:
      optimizer: any object with ``param_groups``, a list of dicts holding a
        mutable ``key`` entry (optkern.optim optimizers, torch.optim ones).
      schedule: a :class:`Schedule` or callable ``step -> float``.
      mode: ``"multiplier"`` (default): group value = the group's base value
        times ``schedule(t)``, so per-group learning rates keep their ratios
        (build the schedule with peak/initial value 1.0). ``"absolute"``: every
        group gets ``schedule(t)`` itself.
      key: which group entry to write (``"lr"``, ``"momentum"``, ``"weight_decay"``...).

    Like torch.optim.lr_scheduler: the base value of each group is read once
    (stored as ``group['initial_<key>']``), construction writes the value at
    step 0, and every :meth:`step` advances one step and writes its value.
    :meth:`state_dict` / :meth:`load_state_dict` hold the step and the base
    values, so a resumed run writes exactly the values of an uninterrupted one.
    """

    def __init__(self, optimizer, schedule, *, mode: str = "multiplier", key: str = "lr"):
        groups = getattr(optimizer, "param_groups", None)
        if not isinstance(groups, (list, tuple)) or not all(isinstance(g, dict) for g in groups):
            raise TypeError("optimizer: expected an object with param_groups, a list of dicts")
        if mode not in ("multiplier", "absolute"):
            raise ValueError(f"mode: expected 'multiplier' or 'absolute', got {mode!r}")
        if not isinstance(key, str):
            raise TypeError(f"key: expected a str, got {type(key).__name__}")
        for i, g in enumerate(groups):
            if key not in g:
                raise ValueError(f"optimizer.param_groups[{i}]: has no {key!r} entry")
        self.optimizer = optimizer
        self.schedule = as_schedule(schedule)
        self.mode = mode
        self.key = key
        init = "initial_" + key
        self.base_values = [_scalar(g.setdefault(init, g[key])) for g in groups]
        self.last_step = 0
        self._write()

    def values(self, step: int | None = None) -> list:
        """The per-group values at ``step`` (default: the current step)."""
        t = self.last_step if step is None else check_step(step)
        v = self.schedule(t)
        if self.mode == "absolute":
            return [v for _ in self.base_values]
        return [b * v for b in self.base_values]

    def _write(self) -> None:
        for g, v in zip(self.optimizer.param_groups, self.values()):
            cur = g[self.key]
            if hasattr(cur, "fill") and getattr(cur, "size", 0) == 1:
                # A device-resident value (a capturable GPU optimizer's lr): update it in
                # place, so a captured CUDA graph reads the new value at its next replay.
                cur.fill(v)
            else:
                g[self.key] = v

    def step(self) -> None:
        """Advance one step and write the new value into every param group."""
        self.last_step += 1
        self._write()

    def get_last_lr(self) -> list:
        """The values last written, one per group (torch's name)."""
        return [g[self.key] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        """Step counter, base values, mode and key (the schedule itself is pure)."""
        return {"last_step": self.last_step, "base_values": list(self.base_values),
                "mode": self.mode, "key": self.key}

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state`` (from :meth:`state_dict`); rewrites the groups' values."""
        if not isinstance(state, dict):
            raise TypeError(f"state: expected a dict, got {type(state).__name__}")
        for k in ("last_step", "base_values"):
            if k not in state:
                raise ValueError(f"state: missing {k!r}")
        base = [float(b) for b in state["base_values"]]
        if len(base) != len(self.optimizer.param_groups):
            raise ValueError(f"state['base_values']: has {len(base)} entries but the optimizer has "
                             f"{len(self.optimizer.param_groups)} param groups")
        self.last_step = check_step(state["last_step"])
        self.base_values = base
        self.mode = state.get("mode", self.mode)
        self.key = state.get("key", self.key)
        for g, b in zip(self.optimizer.param_groups, base):
            g["initial_" + self.key] = b
        self._write()


def positive(name, v):
    return _backend.positive(name, v)


def nonneg(name, v):
    return _backend.nonnegative(name, v)


def count(name, v, lo=0):
    return _backend.integer(name, v, lo)
