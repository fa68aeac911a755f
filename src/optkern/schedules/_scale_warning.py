"""The warning for a schedule of the wrong kind (absolute vs multiplier) given to a :class:`Scheduler`,
and the checked evaluation of a schedule the Scheduler writes from."""

from __future__ import annotations

import warnings

from .base import _real


class ScheduleScaleWarning(UserWarning):
    """A schedule's values look like the wrong kind (absolute vs multiplier) for the optimizer."""


#: An absolute schedule whose peak is this many times the configured value (or a multiplier that
#: peaks below its inverse) is almost surely the other kind: warn.
_SCALE_SUSPECT = 100.0


def _value(schedule, t: int) -> float:
    """``schedule(t)`` as a finite float, or TypeError / ValueError naming the schedule."""
    return _real(schedule(t), t)


def _peak(schedule, steps: int | None) -> float:
    """The largest value over the schedule's horizon (sampled at <= 1001 steps, ends included)."""
    n = 1000 if steps is None else max(int(steps) - 1, 0)
    stride = max(1, -(-n // 1000))
    ts = list(range(0, n + 1, stride))
    if ts[-1] != n:
        ts.append(n)
    peak = _value(schedule, 0)  # checked strictly by the caller already
    for t in ts[1:]:
        # Only a warning rides on the peak: a callable that fails or overflows beyond the steps it
        # will run (torch's LambdaLR over a table of them) must not make the Scheduler refuse it.
        try:
            v = _value(schedule, t)
        except Exception:
            break
        peak = max(peak, v)
    return peak


def warn_if_suspect(schedule, base_values: list, relative: bool, label: str) -> None:
    """Warn (stacklevel: the Scheduler's caller) when ``schedule`` looks like the other kind for
    groups whose configured ``label`` values are ``base_values``."""
    peak = _peak(schedule, getattr(schedule, "total_steps", None))
    what = f"group {label!r}"
    if relative:
        if 0.0 < peak < 1.0 / _SCALE_SUSPECT and base_values:  # (base_values[0]: IndexError)
            warnings.warn(
                f"schedule: as a multiplier (relative=True) it peaks at {peak:g}, so the {what} "
                f"peaks at {peak:g} x {base_values[0]:g}; pass an absolute schedule without "
                "relative=True, or build the multiplier with peak 1.0",
                ScheduleScaleWarning,
                stacklevel=3,
            )
        return
    bases = [b for b in base_values if b > 0.0]
    if bases and peak > _SCALE_SUSPECT * max(bases):
        warnings.warn(
            f"schedule: peaks at {peak:g}, {peak / max(bases):.0f}x the optimizer's {what} "
            f"{max(bases):g}; schedules are absolute by default -- for a multiplier of the "
            "configured value pass relative=True",
            ScheduleScaleWarning,
            stacklevel=3,
        )
    if len(set(base_values)) > 1:
        warnings.warn(
            f"schedule: the param groups have different {what} values {base_values}; an "
            "absolute schedule gives them all the same value -- pass relative=True to keep their "
            "ratios",
            ScheduleScaleWarning,
            stacklevel=3,
        )
