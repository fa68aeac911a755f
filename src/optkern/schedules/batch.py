"""Batch-size schedules: "Don't decay the learning rate, increase the batch
size" (Smith, Kindermans, Ying & Le, ICLR 2018)."""

from __future__ import annotations

import bisect
import math

from .. import _hyper_scalars
from .base import Schedule, check_step, count, count1, positive, steps


def _milestones(values, name: str = "milestones") -> list:
    ms = steps(name, values)
    for i in range(1, len(ms)):
        if ms[i] < ms[i - 1]:
            raise ValueError(f"{name}: must be non-decreasing, got {ms[i - 1]} before {ms[i]}")
    return ms


class batch_size_schedule(Schedule):
    """Grow the batch size where a step decay would cut the learning rate.

    A step decay multiplies the lr by ``1 / factor`` at every milestone. This
    schedule multiplies the batch size by ``factor`` there instead, keeping
    the SGD noise scale ``lr / B`` of the step decay. Once the batch would
    exceed ``max_batch_size`` it stays at ``max_batch_size`` and the lr decays
    by the remaining ratio, so ``lr(t) / batch_size(t)`` always equals the
    step decay's ``lr * factor ** -c / base_batch_size`` (c = milestones passed).

    Args:
      base_batch_size: batch size before the first milestone.
      milestones: non-decreasing positive steps (usually epochs) where the
        batch grows; a repeat counts twice.
      factor: growth per milestone, > 1 (Smith et al. used 5).
      max_batch_size: cap (default: none, the lr never decays).
      lr: learning rate (or multiplier) before the cap is reached.

    ``sched(t)`` is the lr at step t (so the object drives an optimizer like
    any schedule); :meth:`batch_size` gives the batch size (an int).
    """

    _rules = (
        ("base_batch_size", count1),
        ("milestones", lambda name, v: _milestones(v, name)),
        ("factor", lambda name, v: _hyper_scalars.in_range(name, v, 1.0, None, lo_open=True)),
        ("max_batch_size", lambda name, v: None if v is None else count1(name, v)),
        ("lr", positive),
    )

    def __init__(self, base_batch_size, milestones, factor=5.0, max_batch_size=None, lr=1.0):
        self.base_batch_size = count("base_batch_size", base_batch_size, 1)
        self.milestones = _milestones(milestones)
        self.factor = _hyper_scalars.in_range("factor", factor, 1.0, None, lo_open=True)
        self.max_batch_size = None if max_batch_size is None else count("max_batch_size", max_batch_size, 1)
        self._check_together()
        self.lr = positive("lr", lr)

    def _check_together(self) -> None:
        # (again before each value and batch size: assigned afterwards, a cap below the base gave that
        # batch and a divided lr silently, a factor past float64 Python's unnamed OverflowError)
        base, ms = self.base_batch_size, self.milestones
        # the largest nominal batch (after the last milestone) must be a float64: every value is computed from it
        try:
            top = base * self.factor ** len(ms)
        except OverflowError:
            top = math.inf
        if not math.isfinite(top):
            raise ValueError(
                f"factor: base_batch_size * factor ** len(milestones) = {base} * {self.factor!r} ** {len(ms)} "
                "overflows float64"
            )
        if self.max_batch_size is not None and self.max_batch_size < base:
            raise ValueError(f"max_batch_size: {self.max_batch_size} is below base_batch_size {base}")

    def _nominal(self, t: int) -> float:
        return self.base_batch_size * self.factor ** bisect.bisect_right(self.milestones, t)

    def batch_size(self, step) -> int:
        """The batch size at ``step``."""
        step = check_step(step)
        self._check_attributes()
        b = self._nominal(step)
        if self.max_batch_size is not None and b > self.max_batch_size:
            return self.max_batch_size
        return int(round(b))

    def value(self, t):
        # scaled by the batch actually used over the nominal one: the cap, or the rounding of a
        # non-integer base * factor ** c (10.5 -> 10 kept the lr: lr / B 5% above the step decay's)
        b = self._nominal(t)
        if self.max_batch_size is not None and b > self.max_batch_size:
            return self.lr * self.max_batch_size / b
        size = round(b)
        return self.lr if size == b else self.lr * size / b
