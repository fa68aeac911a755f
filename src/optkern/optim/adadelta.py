"""Adadelta (torch.optim.Adadelta)."""

from __future__ import annotations

from .. import functional as F
from .optimizer import Optimizer


class Adadelta(Optimizer):
    """Adadelta, torch.optim.Adadelta's semantics and defaults.

    ``v <- rho v + (1 - rho) g'^2``, ``d = sqrt(u + eps) / sqrt(v + eps) g'``,
    ``u <- rho u + (1 - rho) d^2``, ``p <- p - lr d``. State: ``step``, ``square_avg``, ``acc_delta``.
    ``capturable=True`` (CuPy arrays): a step that can be captured in a CUDA graph (see
    :class:`~optkern.optim.Optimizer`).
    """

    _state_names = ("square_avg", "acc_delta")
    _capturable = True

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, *, maximize=False, capturable=False):
        super().__init__(
            params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize, capturable=capturable)
        )

    def _check(self, g, where):
        return F._check_adadelta(where, g["lr"], g["rho"], g["eps"], g["weight_decay"], g["maximize"])

    def _update(self, run, grads, hp, t, dev=None):
        F._adadelta_call(run.mod, run.params, grads, run.state["square_avg"], run.state["acc_delta"], hp, dev)
