"""The Schedule type (with the constant one) and the argument checks the schedules share.

A schedule is a pure function of the step: ``sched(t) -> value`` for an
integer ``t >= 0``. It holds no state, so evaluating it at any step, in any
order, gives the same number. :class:`.scheduler.Scheduler` adds the one piece of
state a training loop needs (the step counter) and writes ``value`` into every
param group of an optimizer.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Set
from typing import TYPE_CHECKING, Any, ClassVar

from .. import _backend, _hyper_scalars
from .._checked_values import cached, remember
from .._words import article
from ._group_values import _item

if TYPE_CHECKING:
    from .scheduler import Scheduler


def check_step(step) -> int:
    """``step`` as an int in [0, 2**63), or TypeError / ValueError naming it (a larger one would
    overflow the schedules' float arithmetic, ``gamma ** t``)."""
    return _backend.integer("step", step, 0, _backend.INT64_MAX)


class Schedule:
    """A learning-rate (or multiplier) schedule: a pure function of the step.

    Subclasses implement :meth:`value` for an already validated ``int`` step.
    ``total_steps`` is the horizon after which the schedule stops changing
    (``None`` when it has none); :func:`linear_warmup` checks against it.
    """

    total_steps: int | None = None

    #: (attribute, its constructor's rule) pairs, ``rule(name, value)`` raising TypeError / ValueError
    #: naming it: the attributes are assignable (an lr tuned mid-run), and are checked by the
    #: same rules before each value (assigned unchecked, a gamma of 2 grew the lr, a step_size of
    #: 0 raised ZeroDivisionError, unsorted milestones were counted wrong)
    _rules: ClassVar[tuple[tuple[str, Callable[[str, Any], Any]], ...]] = ()

    def __call__(self, step) -> float:
        """The value at ``step`` (an integer >= 0); TypeError / ValueError naming the schedule if it
        is no real number or not finite (arguments whose arithmetic overflows float64), or naming
        an attribute assigned a value its constructor refuses."""
        t = check_step(step)
        self._check_attributes()
        return _real(self.value(t), t, self)

    def _check_attributes(self) -> None:
        """Each attribute by its rule, unless every one still holds the very immutable object that
        passed when last checked (``_checked_values``: a rule reads only the value)."""
        values = {name: getattr(self, name) for name, _ in self._rules}
        cache = self.__dict__.get("_attributes_checked", {})
        if cached(cache, "rules", values):
            return
        for (name, rule), v in zip(self._rules, values.values()):
            rule(name, v)
        self._check_together()
        remember(cache, "rules", values, True)
        if cache:
            self.__dict__["_attributes_checked"] = cache  # (not through a subclass's __setattr__)

    def _check_together(self) -> None:
        """ValueError naming an attribute whose value the others rule out (each passed its own
        rule): the constructor's cross-checks, run again before each value, as the rules are."""

    def value(self, t: int) -> float:  # pragma: no cover - abstract
        """The value at step ``t``, unchecked: the subclasses' formula. Call the schedule
        (``sched(t)``) instead: it checks ``t`` and the result."""
        raise NotImplementedError

    def attach(self, optimizer, *, relative: bool = False, key: str = "lr", index: int | None = None) -> Scheduler:
        """A :class:`Scheduler` driving ``optimizer``'s param groups with this schedule."""
        from .scheduler import Scheduler  # (that module imports this one)

        return Scheduler(optimizer, self, relative=relative, key=key, index=index)

    #: (attribute, the constructor's name for it) pairs where they differ (cosine keeps ``T_max`` as
    #: its horizon ``total_steps``): the repr is the call that builds the schedule, and an overflow error
    #: shows it as the arguments that overflowed (``cosine(total_steps=10)`` raised TypeError)
    _init_names: ClassVar[tuple[tuple[str, str], ...]] = ()

    def __repr__(self) -> str:
        names = dict(self._init_names)
        args = ", ".join(f"{names.get(k, k)}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class constant(Schedule):
    """``value`` at every step."""

    _rules = (("lr", lambda name, v: _hyper_scalars.real(name, v)),)
    _init_names = (("lr", "value"),)  # (the method is ``value``)

    def __init__(self, value=1.0):
        self.lr = _hyper_scalars.real("value", value)

    def __setattr__(self, name: str, v) -> None:
        # ``value`` assigned (the constructor's name) is ``lr``, checked: the float replaced the
        # method every schedule has, and the next call raised "'float' object is not callable"
        if name == "value":
            name, v = "lr", _hyper_scalars.real("value", v)
        super().__setattr__(name, v)

    def value(self, t):
        return self.lr


class FunctionSchedule(Schedule):
    """Wrap any callable ``f(step) -> float`` as a :class:`Schedule`."""

    # (assigned afterwards: fn = 5 raised Python's unnamed "'int' object is not callable", and a
    # total_steps of -3 was taken)
    _rules = (
        ("fn", lambda name, v: _callable(name, v)),
        ("total_steps", lambda name, v: None if v is None else count(name, v, 0)),
    )

    def __init__(self, fn, total_steps: int | None = None):
        self.fn = _callable("fn", fn)
        # Checked: "x" or NaN failed later in the Scheduler with int()'s message; -1, 2.5 were taken.
        self.total_steps = None if total_steps is None else count("total_steps", total_steps, 0)

    def _check_attributes(self) -> None:
        # (the rules' answer for valid values without them: a function is no immutable value the
        # rules' cache keeps, and the full check cost ~2.5 us per call, as much as the call itself)
        n = self.total_steps
        if callable(self.fn) and (n is None or (type(n) is int and 0 <= n <= _backend.INT64_MAX)):
            return
        super()._check_attributes()

    def value(self, t: int) -> float:
        return self.fn(t)


def _callable(name: str, fn):
    if not callable(fn):
        raise TypeError(f"{name}: expected a callable, got {type(fn).__name__}")
    return fn


def as_schedule(s, name: str = "schedule") -> Schedule:
    """A Schedule from a Schedule, a plain callable or a constant number."""
    if isinstance(s, Schedule):
        return s
    if isinstance(s, numbers.Real) and not isinstance(s, bool):
        return constant(_hyper_scalars.real(name, s))  # a NaN / inf is the caller's argument, not constant's value
    if callable(s):
        return FunctionSchedule(s)
    raise TypeError(f"{name}: expected a Schedule, a callable or a number, got {type(s).__name__}")


def _real(v, t: int, schedule=None) -> float:
    """A schedule's value as a finite float (a real number or a 1-element array), else TypeError /
    ValueError naming the schedule (a built-in one's arguments too: they are what overflowed)."""
    if type(v) is not float:  # (a float has no item(): the failed look-up cost ~0.2 us)
        v = _item(v)
    kind = type(v)  # (an exact float / int skips numbers.Real's ABC check; a bool takes it)
    if kind is not float and kind is not int and (isinstance(v, bool) or not isinstance(v, numbers.Real)):
        raise TypeError(f"schedule: returned {type(v).__name__} at step {t}, expected a real number")
    try:
        f = float(v)
    except OverflowError:  # an int beyond float's range
        f, v = math.inf, "an integer beyond float64's range"
    if not math.isfinite(f):
        why = "" if schedule is None or isinstance(schedule, FunctionSchedule) else f"; {schedule!r} overflows there"
        raise ValueError(f"schedule: returned {v} at step {t}, expected a finite number{why}")
    return f


def horizon_alias(name: str, rule: Callable[[str, Any], int] | None = None):
    """A property ``name`` (the constructor's argument, e.g. cosine's ``T_max``) for the horizon
    ``total_steps``: assigned under that name, torch's (``CosineAnnealingLR.T_max``), the horizon was a
    new attribute the schedule never read, and the old values went on silently. Checked as the
    constructor checks it (``rule``, default :func:`count1`: >= 1), naming it, before anything changes."""
    check = count1 if rule is None else rule

    def get(self) -> int:
        return self.total_steps

    def set_(self, value) -> None:
        self.total_steps = check(name, value)

    return property(get, set_, doc=f"``total_steps`` under the constructor's name ``{name}``.")


def schedule_list(name: str, values) -> list:
    """``values`` (a sequence) as a list of Schedules (numbers and callables converted, as
    :func:`as_schedule` does), each named ``name[i]`` when it is none of these."""
    return [as_schedule(v, f"{name}[{i}]") for i, v in enumerate(sequence(name, values))]


def schedules_rule(name: str, values) -> None:
    """A rule (``Schedule._rules``) for a list of schedules changed in place (assignment converts):
    each entry must be a Schedule, named ``name[i]``, not Python's "'float' object is not callable"."""
    for i, v in enumerate(sequence(name, values)):
        if not isinstance(v, Schedule):
            raise TypeError(f"{name}[{i}]: expected a Schedule, got {type(v).__name__} (assign it to convert it)")


def derived_total_steps(follows: str):
    """A ``total_steps`` property (its getter decorated) for a schedule whose horizon follows its
    other attributes (``follows``): computed when read, so that it follows their assignment (a
    value stored at construction went stale: ``swalr``'s after ``anneal_epochs = 20``, a warm-up's
    after its wrapped schedule's), and refused when assigned itself (it would be overwritten)."""

    def wrap(getter):
        def refuse(self, value) -> None:
            raise AttributeError(f"total_steps: follows {follows} of {type(self).__name__}; assign that instead")

        return property(getter, refuse, doc=getter.__doc__)

    return wrap


def positive(name, v):
    """A finite value > 0, a NumPy float16 refused (``optkern._hyper_scalars``)."""
    return _hyper_scalars.positive(name, v)


def nonneg(name, v):
    """A finite value >= 0, a NumPy float16 refused (``optkern._hyper_scalars``)."""
    return _hyper_scalars.nonnegative(name, v)


def count(name, v, lo=0):
    # At most INT64_MAX, as a step is (check_step): a larger count (10**400) was accepted and then
    # raised OverflowError ("int too large to convert to float") at the first value.
    return _backend.integer(name, v, lo, _backend.INT64_MAX)


def count0(name, v):
    """A count >= 0 (a rule of ``Schedule._rules``)."""
    return count(name, v, 0)


def count1(name, v):
    """A count >= 1 (a rule of ``Schedule._rules``)."""
    return count(name, v, 1)


def in_unit(name, v):
    """A real in [0, 1] (a rule of ``Schedule._rules``), a NumPy float16 refused: a factor or a
    momentum, a value torch's schedulers compute with (``optkern._hyper_scalars``)."""
    return _hyper_scalars.in_range(name, v, 0.0, 1.0)


def span(name, v):
    """A length in steps > 0, any finite real (torch's CyclicLR takes ``float(step_size_up)``): a
    count, so ``_backend``'s check, a NumPy float16 taken as torch's ``float()`` takes it. (The
    split: values a scheduler computes with refuse a float16, ``_hyper_scalars``; counts do not.)"""
    return _backend.positive(name, v)


def factor_rule(name, v):
    """A finite factor > 0 (a rule of ``Schedule._rules``): torch's ExponentialLR / StepLR /
    MultiStepLR take a gamma > 1 (an lr range test grows the lr 1, 1.5, 2.25, ...), and so does
    CyclicLR (exp_range's amplitude grows); refused here it was. 0 (torch: lr 0 from the first
    decay on, training stopped), < 0 (a sign-flipping lr) and NaN / inf stay refused by name; a
    ``gamma ** t`` past float64's range (:func:`power`) is refused naming the schedule at that step.
    A NumPy float16 refused (``optkern._hyper_scalars``): torch's ExponentialLR computes
    ``lr * gamma`` in float16 with one (0.1 * np.float16(0.9): 0.08997, not 0.0899902)."""
    return _hyper_scalars.positive(name, v)


def power(gamma: float, n: int) -> float:
    """``gamma ** n``, inf past float64's range (a gamma > 1 grows it: Python's OverflowError named
    nothing; the inf is refused by ``Schedule.__call__`` naming the schedule and the step)."""
    try:
        return gamma**n
    except OverflowError:
        return math.inf


def sequence(name: str, values) -> list:
    """``values`` (milestones, boundaries, schedules) as a list, or TypeError naming ``name``.
    Iterables in order (lists, tuples, arrays, generators); not a set or a dict, whose order is
    not the caller's: ``sequential({a, b}, [3])`` ran b before a."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name}: expected a sequence, got {type(values).__name__}")
    if getattr(values, "ndim", None) == 0:  # has __iter__, but iterating raised NumPy's unnamed TypeError
        raise TypeError(f"{name}: expected a sequence, got a 0-d {type(values).__name__}")
    if isinstance(values, (Set, Mapping)):
        raise TypeError(f"{name}: expected a sequence in order (a list or tuple), got {article(type(values).__name__)}")
    return list(values)


def steps(name: str, values, lo: int = 1) -> list:
    """A sequence of steps >= ``lo``, each checked as ``name[i]``."""
    return [count(f"{name}[{i}]", v, lo) for i, v in enumerate(sequence(name, values))]


def steps0(name: str, values) -> list:
    """A sequence of steps >= 0, each checked as ``name[i]`` (a rule of ``Schedule._rules``)."""
    return steps(name, values, 0)
