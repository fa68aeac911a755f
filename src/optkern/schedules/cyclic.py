"""Cyclical learning rates (Smith 2017) and the one-cycle policy (Smith & Topin 2018)."""

from __future__ import annotations

import math

from .. import _backend, _hyper_scalars
from ..lowp import _option
from .base import Schedule, count, factor_rule, in_unit, nonneg, positive, power, span


class cyclic(Schedule):
    """Cyclical learning rate between ``base_lr`` and ``max_lr`` (torch CyclicLR).

    A cycle is ``step_size_up`` steps rising then ``step_size_down`` (default:
    the same; 0: a sawtooth) falling; both any positive numbers, as torch's (2.5: a 5-step cycle
    whose peak falls between two steps). The amplitude ``max_lr - base_lr`` is scaled by
    ``mode``: ``"triangular"`` 1; ``"triangular2"`` halved each cycle
    (``1 / 2 ** (cycle - 1)``); ``"exp_range"`` ``gamma ** t`` (any finite ``gamma > 0``: above 1 it
    grows, as torch's does). A ``base_lr`` above
    ``max_lr`` runs the triangle downward (from ``base_lr`` to ``max_lr`` and back), as torch's does.
    ``"triangular2"`` past 1024 cycles gives ``base_lr`` (its amplitude ``2 ** -1024`` and below),
    where torch's ``1 / 2 ** (cycle - 1)`` raises OverflowError; up to there, torch's values bit for bit.
    A cycle so short that ``t / (step_size_up + step_size_down)`` overflows float64 (subnormal step
    sizes) raises ValueError naming ``step_size_up`` at that step (torch: OverflowError).
    """

    _rules = (
        ("base_lr", nonneg),
        ("max_lr", positive),
        ("step_size_up", span),
        ("step_size_down", _backend.nonnegative),
        ("mode", lambda name, v: _option(name, v, ("triangular", "triangular2", "exp_range"))),
        ("gamma", factor_rule),
    )

    def __init__(self, base_lr=0.1, max_lr=1.0, step_size_up=2000, step_size_down=None, mode="triangular", gamma=1.0):
        self.base_lr = nonneg("base_lr", base_lr)
        # (base_lr > max_lr taken: torch's CyclicLR runs that triangle downward; it was refused here)
        self.max_lr = positive("max_lr", max_lr)
        # Any positive number, as torch's CyclicLR takes it (float(step_size_up)): 2.5 is a cycle of
        # 5 steps whose peak falls between two; whole numbers were required here. (> 0: 0 divides by
        # zero in torch at step 0.)
        self.step_size_up = span("step_size_up", step_size_up)
        # 0 is torch's sawtooth (rise over step_size_up steps, then back to base_lr at once); it
        # was refused here.
        self.step_size_down = (
            self.step_size_up if step_size_down is None else _backend.nonnegative("step_size_down", step_size_down)
        )
        # (_option: a NumPy array of strings made ``in`` raise an unnamed ValueError, or passed as one)
        self.mode = _option("mode", mode, ("triangular", "triangular2", "exp_range"))
        # (> 1 taken: torch's CyclicLR grows exp_range's amplitude then, and ignores gamma in the other modes)
        self.gamma = factor_rule("gamma", gamma)
        self._check_together()

    def _check_together(self) -> None:
        # (again before each value: a step size assigned later) the cycle's length is a float64: past
        # it t / total is 0 at every step, and the ratio up / total 0 / 0 or NaN
        if not math.isfinite(self.step_size_up + self.step_size_down):
            raise ValueError(
                f"step_size_down: step_size_up + step_size_down = {self.step_size_up!r} + "
                f"{self.step_size_down!r} overflows float64"
            )

    def _wave(self, t: int) -> tuple:
        """The triangle at ``t`` (0 at the cycle's ends, 1 at its peak) and the mode's amplitude,
        kept apart: torch multiplies the height by the first, then by the second."""
        total = float(self.step_size_up + self.step_size_down)
        ratio = self.step_size_up / total
        if t / total == math.inf:
            # (a subnormal cycle: the cycle count past float64 has no floor, Python's unnamed
            # OverflowError, as in torch's CyclicLR; a finite huge count is a whole number: its start)
            raise ValueError(
                f"step_size_up: step {t} / (step_size_up + step_size_down) = {t} / {total!r} overflows "
                "float64 (the cycle count at that step has no value)"
            )
        cycle = math.floor(1 + t / total)
        x = 1.0 + t / total - cycle
        scale = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
        if self.mode == "triangular":
            amp = 1.0
        elif self.mode == "triangular2":
            amp = 0.5 ** (cycle - 1)  # the same powers of two as 1 / 2 ** (cycle - 1), which overflowed
        else:
            amp = power(self.gamma, t)  # (inf past float64's range: refused naming the schedule)
        return scale, amp

    def value(self, t):
        # ((max - base) * scale) * amp in torch's order: (max - base) * (scale * amp) rounded
        # differently with exp_range (an ulp off in 23 of 300 lrs at gamma=0.97, 74 at 0.999).
        scale, amp = self._wave(t)
        return self.base_lr + (self.max_lr - self.base_lr) * scale * amp

    def momentum(self, base_momentum=0.8, max_momentum=0.9) -> Schedule:
        """The inverse momentum cycle of torch's ``CyclicLR(cycle_momentum=True)``: ``max_momentum``
        at the lr's low points, ``base_momentum`` at its peaks (drive it with
        :func:`~optkern.schedules.momentum_scheduler`, which picks ``momentum`` or Adam's ``betas[0]``).
        A ``base_momentum`` above ``max_momentum`` runs the cycle upward with the lr, as torch's does
        (it was refused here; the same formula, bit for bit)."""
        lo = in_unit("base_momentum", base_momentum)
        hi = in_unit("max_momentum", max_momentum)
        return _cyclic_momentum(self, lo, hi)


class _cyclic_momentum(Schedule):
    """``max_momentum - (max_momentum - base_momentum) * wave(t)`` of a :class:`cyclic` schedule."""

    _rules = (
        ("base_momentum", in_unit),
        ("max_momentum", in_unit),
    )

    def __init__(self, lr_cycle: cyclic, base_momentum: float, max_momentum: float):
        self._cycle, self.base_momentum, self.max_momentum = lr_cycle, base_momentum, max_momentum

    def _check_attributes(self) -> None:
        super()._check_attributes()
        self._cycle._check_attributes()  # (its wave, read here)

    def value(self, t):
        scale, amp = self._cycle._wave(t)  # torch's order, as in cyclic.value
        return self.max_momentum - (self.max_momentum - self.base_momentum) * scale * amp


class _phased(Schedule):
    """Piecewise annealing between phase end points (the machinery of one-cycle)."""

    #: the attributes the phases were computed from: assigned after construction they went stale
    #: (a ``total_steps`` raised moved the clamp past the last phase, which then extrapolated: a
    #: linear one below its final value, to negative rates), so they are refused then
    _FIXED: tuple[str, ...] = ("anneal", "total_steps")

    def __init__(self, phases, anneal, total_steps):
        self.anneal, self.total_steps = anneal, total_steps
        self._phases = phases  # (last: the attributes are fixed from here on)

    def __setattr__(self, name: str, value) -> None:
        if name in self._FIXED and "_phases" in vars(self):
            raise AttributeError(
                f"{name}: {type(self).__name__}'s phases were computed from it at construction; make a new schedule"
            )
        super().__setattr__(name, value)

    def _interp(self, start, end, pct):
        if self.anneal == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def value(self, t):
        t = min(t, self.total_steps - 1)
        begin, (end_step, lo, hi) = _phase_at(self._phases, t)
        return self._interp(lo, hi, (t - begin) / (end_step - begin))


def _phase_at(phases, t) -> tuple:
    """(the step the phase begins at, the phase) that torch's OneCycleLR interpolates in at step
    ``t``: the first whose end is not before ``t``, else the last (a phase ending before step 0,
    as a warm-up of pct_start * total_steps < 1 steps does, is never used)."""
    begin = 0.0
    for i, phase in enumerate(phases):
        if t <= phase[0] or i == len(phases) - 1:
            return begin, phase
        begin = phase[0]
    raise AssertionError("unreachable")


def _factor(name: str, v) -> float:
    """A one-cycle divisor: finite and > 0, else TypeError / ValueError naming it (and, for a negative
    one, why: torch's OneCycleLR takes it and runs negative lrs)."""
    _hyper_scalars.refuse_float16(name, v)  # (torch's OneCycleLR divides max_lr by it in float16)
    f = _backend.real(name, v)
    if f < 0:
        raise ValueError(
            f"{name}: must be > 0, got {f!r} (the lrs divided by it would be negative: gradient ascent, "
            "which torch's OneCycleLR runs without a word)"
        )
    return positive(name, f)


class one_cycle(_phased):
    """The one-cycle policy (torch OneCycleLR).

    Warm from ``max_lr / div_factor`` to ``max_lr`` over the first
    ``pct_start`` of ``total_steps``, then anneal to
    ``max_lr / (div_factor * final_div_factor)``; ``anneal`` is ``"cos"`` or
    ``"linear"``. ``three_phase=True`` comes back down to the initial value
    symmetrically before the final annihilation phase. Steps past the last
    (``total_steps - 1``) hold the final value (torch's value at ``total_steps``, after the
    last of ``total_steps`` scheduler steps, extrapolates the last phase; beyond it torch raises).
    :meth:`momentum` gives the matching inverse momentum cycle. Its arguments, kept as attributes,
    cannot be assigned afterwards (AttributeError): the phases are computed from them once.

    Degenerate arguments run as torch runs them (``total_steps=1``, ``pct_start=0``, a warm-up of
    less than one step, ``max_lr=0``); where torch divides by zero (``pct_start * total_steps == 1``,
    or ``pct_start=1`` without ``three_phase``) ValueError names ``pct_start``. ``div_factor`` and
    ``final_div_factor`` must be > 0: torch takes negative ones and runs negative lrs (ValueError
    naming them here).
    """

    _FIXED = ("anneal", "total_steps", "max_lr", "pct_start", "div_factor", "final_div_factor", "three_phase")

    def __init__(
        self,
        max_lr=1.0,
        total_steps=100,
        pct_start=0.3,
        anneal="cos",
        div_factor=25.0,
        final_div_factor=1e4,
        three_phase=False,
    ):
        # max_lr 0 (every lr 0), total_steps 1 and pct_start 0 taken: torch's OneCycleLR runs them;
        # they were refused here
        self.max_lr = nonneg("max_lr", max_lr)
        total_steps = count("total_steps", total_steps, 1)
        self.pct_start = in_unit("pct_start", pct_start)  # (torch: pct_start * total_steps, in float16 for one)
        anneal = _option("anneal", anneal, ("cos", "linear"))  # (as cyclic's mode)
        # (> 0: torch's OneCycleLR takes a negative one and runs negative lrs -- gradient ascent --
        # from max_lr / div_factor; 0 it divides by)
        self.div_factor = _factor("div_factor", div_factor)
        self.final_div_factor = _factor("final_div_factor", final_div_factor)
        self.three_phase = _backend.flag("three_phase", three_phase)  # bool("False") was True
        init = self.max_lr / self.div_factor
        low = init / self.final_div_factor
        # every value is interpolated between these: both must be finite (0 where they underflow,
        # as torch's are)
        for name, v, formula in (
            ("div_factor", init, "max_lr / div_factor"),
            ("final_div_factor", low, "max_lr / (div_factor * final_div_factor)"),
        ):
            if not v < math.inf:
                raise ValueError(f"{name}: {formula} = {v!r} is not a finite float64")
        up = float(self.pct_start * total_steps) - 1
        if three_phase:
            phases = [(up, init, self.max_lr), (2 * up, self.max_lr, init), (total_steps - 1, init, low)]
        else:
            phases = [(up, init, self.max_lr), (total_steps - 1, self.max_lr, low)]
        # Phases are torch's, empty ones and those ending before step 0 included (pct_start * total_steps
        # < 1: torch's lrs; they were refused). Where torch interpolates in a phase of no length it
        # divides by zero: at step 0 when pct_start * total_steps is 1, at its step total_steps (the
        # lr after the last) when the last phase is empty (pct_start 1 without three_phase).
        for t in (0, total_steps):
            begin, (end, _, _) = _phase_at(phases, t)
            if end == begin:
                raise ValueError(
                    f"pct_start: {self.pct_start!r} makes a phase of no length with total_steps={total_steps}, "
                    f"which torch's OneCycleLR divides by at step {t}"
                )
        super().__init__(phases, anneal, total_steps)

    def momentum(self, base_momentum=0.85, max_momentum=0.95) -> Schedule:
        """The momentum cycle torch's OneCycleLR runs beside the lr: from
        ``max_momentum`` down to ``base_momentum`` while the lr rises, back up
        while it falls (drive it with :func:`~optkern.schedules.momentum_scheduler`, which picks
        ``momentum`` or Adam's ``betas[0]`` as torch does)."""
        lo = in_unit("base_momentum", base_momentum)
        hi = in_unit("max_momentum", max_momentum)
        ends = [p[0] for p in self._phases]
        vals = [(hi, lo), (lo, hi), (hi, hi)] if self.three_phase else [(hi, lo), (lo, hi)]
        return _phased([(e, a, b) for e, (a, b) in zip(ends, vals)], self.anneal, self.total_steps)
