"""Decay schedules: linear, step, multi-step, exponential,
inverse-time, polynomial, cosine annealing and cosine with warm restarts.

Every schedule's first argument is its value at step 0 (``lr``, default 1.0
so that it reads as a multiplier of each param group's base lr).
"""

from __future__ import annotations

from .. import _hyper_scalars
from ._range_safe import between, cos_between, inverse_power, scaled_power, scaled_real_power
from .base import (
    Schedule,
    check_step,
    count,
    count0,
    count1,
    factor_rule,
    horizon_alias,
    nonneg,
    positive,
    steps0,
)


class linear(Schedule):
    """Linear from ``init`` to ``end`` over ``steps`` steps, then ``end`` (optax.linear_schedule).

    ``steps=0`` is optax's schedule without a transition (its ``transition_steps <= 0``): ``init`` at
    every step, not ``end``. A negative ``steps`` is refused (ValueError naming it)."""

    _rules = (
        ("init", _hyper_scalars.real),
        ("end", _hyper_scalars.real),
        ("total_steps", count0),
    )
    _init_names = (("total_steps", "steps"),)
    steps = horizon_alias("steps", count0)

    def __init__(self, init, end, steps):
        self.init = _hyper_scalars.real("init", init)
        self.end = _hyper_scalars.real("end", end)
        # 0 taken, as optax's linear_schedule takes it (a config's "no decay"); it was refused here
        self.total_steps = count0("steps", steps)

    def value(self, t):
        if self.total_steps == 0:  # (optax: no transition, init held; 0 / 0 otherwise)
            return self.init
        return between(self.init, self.end, min(t, self.total_steps) / self.total_steps)


def _gamma(gamma):
    return factor_rule("gamma", gamma)


class step_decay(Schedule):
    """``lr * gamma ** (t // step_size)`` (torch StepLR). gamma > 0, finite (> 1 grows the lr, as in torch)."""

    _rules = (
        ("lr", positive),
        ("step_size", count1),
        ("gamma", factor_rule),
    )

    def __init__(self, lr=1.0, step_size=1, gamma=0.1):
        self.lr = positive("lr", lr)
        self.step_size = count("step_size", step_size, 1)
        self.gamma = _gamma(gamma)

    def value(self, t):
        return scaled_power(self.lr, self.gamma, t // self.step_size)


class multi_step(Schedule):
    """``lr * gamma ** (number of milestones <= t)`` (torch MultiStepLR).

    ``milestones``: step indices >= 0 in any order; a milestone 0 applies ``gamma``
    from step 0 and a repeated milestone once per repetition, as in PyTorch (its Counter).
    """

    _rules = (
        ("lr", positive),
        ("milestones", steps0),
        ("gamma", factor_rule),
    )

    def __init__(self, lr=1.0, milestones=(), gamma=0.1):
        self.lr = positive("lr", lr)
        # Sorted, not refused: torch's MultiStepLR counts its milestones (a Counter), so [30, 10]
        # is [10, 30] there; a torch user's unsorted list raised ValueError here.
        # (0 taken: torch decays from step 0 then, [0.5, 0.5, 0.25] for [0, 2]; it was refused here)
        self.milestones = sorted(steps0("milestones", milestones))
        self.gamma = _gamma(gamma)

    def value(self, t):
        # (counted as torch's Counter counts them: milestones assigned in any order, as at construction)
        return scaled_power(self.lr, self.gamma, sum(1 for m in self.milestones if m <= t))


class exponential(Schedule):
    """``lr * gamma ** t`` (torch ExponentialLR). gamma > 0, finite (> 1 grows the lr: an lr range test)."""

    _rules = (
        ("lr", positive),
        ("gamma", factor_rule),
    )

    def __init__(self, lr=1.0, gamma=0.99):
        self.lr = positive("lr", lr)
        self.gamma = _gamma(gamma)

    def value(self, t):
        return scaled_power(self.lr, self.gamma, t)


class inverse_time(Schedule):
    """``lr / (1 + k t) ** power``.

    With ``0.5 < power <= 1`` the steps satisfy the Robbins–Monro conditions
    (sum lr_t = inf, sum lr_t^2 < inf) under which SGD converges; ``power=1``
    is the classic ``lr0 / (1 + k t)``.
    """

    _rules = (
        ("lr", positive),
        ("k", nonneg),
        ("power", positive),
    )

    def __init__(self, lr=1.0, k=1.0, power=1.0):
        self.lr = positive("lr", lr)
        self.k = nonneg("k", k)
        self.power = positive("power", power)

    def value(self, t):
        # (a negative exponent: 0 where the divisor would overflow; inverse_power keeps the product's own range)
        return inverse_power(self.lr, self.k, t, self.power)


class polynomial(Schedule):
    """``(lr - end) * (1 - min(t, T) / T) ** power + end`` (optax polynomial; torch PolynomialLR when end=0).

    ``power=0`` holds ``lr`` at every step (``0 ** 0`` is 1), as torch and optax run it."""

    _rules = (
        ("lr", positive),
        ("total_steps", count1),
        ("power", nonneg),
        ("end", nonneg),
    )

    def __init__(self, lr=1.0, total_steps=1, power=1.0, end=0.0):
        self.lr = positive("lr", lr)
        self.total_steps = count("total_steps", total_steps, 1)
        # 0 taken: torch's PolynomialLR and optax's polynomial_schedule define it (a constant lr)
        self.power = nonneg("power", power)
        self.end = nonneg("end", end)

    def value(self, t):
        frac = 1.0 - min(t, self.total_steps) / self.total_steps
        return scaled_real_power(self.lr - self.end, frac, self.power) + self.end


class cosine(Schedule):
    """Cosine annealing from ``lr`` to ``eta_min`` over ``T_max`` steps, then ``eta_min``.

    ``eta_min + (lr - eta_min) (1 + cos(pi t / T_max)) / 2`` for ``t <= T_max``
    (torch CosineAnnealingLR's closed form; torch keeps oscillating past
    T_max, this holds ``eta_min`` — use :class:`cosine_restarts` to restart).
    """

    _rules = (
        ("lr", positive),
        ("total_steps", count1),
        ("eta_min", nonneg),
    )
    _init_names = (("total_steps", "T_max"),)
    T_max = horizon_alias("T_max")

    def __init__(self, lr=1.0, T_max=1, eta_min=0.0):
        self.lr = positive("lr", lr)
        self.total_steps = count("T_max", T_max, 1)
        self.eta_min = nonneg("eta_min", eta_min)

    def value(self, t):
        if t == 0:
            # lr itself, as torch's CosineAnnealingLR leaves the optimizer's lr at step 0: the closed
            # form rounds lr - eta_min and adds eta_min back (an ulp off for ~3% of pairs)
            return self.lr
        return cos_between(self.eta_min, self.lr, min(t, self.total_steps), self.total_steps)


class cosine_restarts(Schedule):
    """SGDR (Loshchilov & Hutter 2017): cosine annealing restarted every cycle,
    the i-th cycle ``T_0 * T_mult ** i`` steps long (torch CosineAnnealingWarmRestarts)."""

    _rules = (
        ("lr", positive),
        ("T_0", count1),
        ("T_mult", count1),
        ("eta_min", nonneg),
    )

    def __init__(self, lr=1.0, T_0=1, T_mult=1, eta_min=0.0):
        self.lr = positive("lr", lr)
        self.T_0 = count("T_0", T_0, 1)
        self.T_mult = count("T_mult", T_mult, 1)
        self.eta_min = nonneg("eta_min", eta_min)

    def cycle(self, step) -> tuple:
        """(steps into the current cycle, its length) at ``step``, checked as a call checks it (and the
        attributes: a T_mult assigned 0 looped forever in the walk, a T_0 of 0 divided by zero)."""
        t = check_step(step)
        self._check_attributes()
        return self._cycle(t)

    def _cycle(self, t: int) -> tuple:
        if self.T_mult == 1:
            return t % self.T_0, self.T_0
        # Integer walk: exact where torch's log() can land on the wrong cycle.
        length = self.T_0
        while t >= length:
            t -= length
            length *= self.T_mult
        return t, length

    def value(self, t):
        cur, length = self._cycle(t)
        return cos_between(self.eta_min, self.lr, cur, length)
