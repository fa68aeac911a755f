"""The SWA learning-rate schedule (Izmailov et al. 2018; torch.optim.swa_utils.SWALR)."""

from __future__ import annotations

import math

from ..lowp import _option
from .base import Schedule, count, derived_total_steps, nonneg


class swalr(Schedule):
    """Anneal from ``initial_lr`` to ``swa_lr`` over ``anneal_epochs`` steps, then hold ``swa_lr``.

    ``value(t) = swa_lr a + initial_lr (1 - a)``, ``a = f(min(1, t / anneal_epochs))`` with
    ``f(x) = (1 - cos(pi x)) / 2`` (``anneal_strategy="cos"``) or ``f(x) = x`` (``"linear"``);
    ``anneal_epochs=0`` is ``swa_lr`` at every step. torch's ``SWALR(optimizer, swa_lr, anneal_epochs,
    anneal_strategy)`` gives the same sequence after its ``t``-th ``step()`` when the groups'
    ``lr`` was ``initial_lr`` at construction (torch reconstructs the start from the current ``lr``
    each step, which agrees to rounding). Step it once per epoch, as torch's, or per step.
    """

    def __init__(self, initial_lr, swa_lr, anneal_epochs=10, anneal_strategy="cos"):
        self.initial_lr = nonneg("initial_lr", initial_lr)
        self.swa_lr = nonneg("swa_lr", swa_lr)
        self.anneal_epochs = count("anneal_epochs", anneal_epochs, 0)
        # (_option: a NumPy array of strings made ``in`` raise an unnamed ValueError, or passed as one)
        self.anneal_strategy = _option("anneal_strategy", anneal_strategy, ("cos", "linear"))

    @derived_total_steps("anneal_epochs")
    def total_steps(self) -> int:
        """``anneal_epochs`` (checked, naming it): the value holds ``swa_lr`` from there on."""
        return count("anneal_epochs", self.anneal_epochs, 0)

    # The attributes checked before each value, by the constructor's rules, naming them
    # (Schedule._rules): they are assignable (swa_lr tuned mid-run), and an anneal_strategy of
    # 'foo' annealed linearly, a negative anneal_epochs extrapolated past swa_lr, and a NaN swa_lr
    # made every lr NaN, silently. Raised before the Scheduler writes any group.
    _rules = (
        ("initial_lr", nonneg),
        ("swa_lr", nonneg),
        ("anneal_epochs", count),
        ("anneal_strategy", lambda name, v: _option(name, v, ("cos", "linear"))),
    )

    def value(self, t):
        epochs = self.anneal_epochs
        if epochs == 0:
            return self.swa_lr
        x = min(1.0, t / epochs)
        a = (1.0 - math.cos(math.pi * x)) / 2.0 if self.anneal_strategy == "cos" else x
        return self.swa_lr * a + self.initial_lr * (1.0 - a)
