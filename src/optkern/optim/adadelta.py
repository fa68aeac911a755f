"""Adadelta (torch.optim.Adadelta): the functional form ``adadelta_`` and the class."""

from __future__ import annotations

from typing import NamedTuple

from ._hyper import (  # (in_range ...: a float16 NumPy scalar refused)
    _check_params_dtype,
    _flag,
    _lists,
    _namer,
    _native,
    in_range,
    nonnegative,
    positive,
)
from ._lowp import LowPrecisionMixin, lowp_keywords
from .optimizer import Optimizer


class AdadeltaHyper(NamedTuple):
    lr: float
    rho: float
    eps: float
    weight_decay: float
    maximize: bool


def _check_adadelta(where: str, lr, rho, eps, weight_decay, maximize) -> AdadeltaHyper:
    n = _namer(where)
    return AdadeltaHyper(
        nonnegative(n("lr"), lr),
        in_range(n("rho"), rho, 0.0, 1.0),
        positive(n("eps"), eps),
        nonnegative(n("weight_decay"), weight_decay),
        _flag(n("maximize"), maximize),
    )


def _adadelta_call(mod, params, grads, square_avgs, acc_deltas, hp: AdadeltaHyper, dev=None) -> None:
    _native(mod, "adadelta", (params, grads, square_avgs, acc_deltas, *hp), dev)


def adadelta_(params, grads, square_avgs, acc_deltas, *, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False):
    """Adadelta, in place: ``v <- rho v + (1 - rho) g'^2``,
    ``d = sqrt(u + eps) / sqrt(v + eps) g'``, ``u <- rho u + (1 - rho) d^2``, ``p <- p - lr d``."""
    mod, params, grads, st = _lists(params, grads, square_avgs=square_avgs, acc_deltas=acc_deltas)
    hp = _check_adadelta("", lr, rho, eps, weight_decay, maximize)
    _check_params_dtype(hp, params)
    _adadelta_call(mod, params, grads, st["square_avgs"], st["acc_deltas"], hp)


@lowp_keywords
class Adadelta(LowPrecisionMixin, Optimizer):
    """Adadelta, torch.optim.Adadelta's semantics and defaults.

    ``v <- rho v + (1 - rho) g'^2``, ``d = sqrt(u + eps) / sqrt(v + eps) g'``,
    ``u <- rho u + (1 - rho) d^2``, ``p <- p - lr d``. State: ``step``, ``square_avg``, ``acc_delta``.
    ``capturable=True`` (CuPy arrays): a step that can be captured in a CUDA graph (see
    :class:`~optkern.optim.Optimizer`). Low precision: the keywords of :class:`~optkern.optim.Adam`.
    """

    _state_names = ("square_avg", "acc_delta")
    _capturable = True

    def __init__(
        self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, *, maximize=False, capturable=False, **lowp
    ):
        self._lowp_init(capturable, **lowp)
        super().__init__(
            params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize, capturable=capturable)
        )

    def _check(self, g: dict, where: str) -> AdadeltaHyper:
        return _check_adadelta(where, g["lr"], g["rho"], g["eps"], g["weight_decay"], g["maximize"])

    def _update(self, run, grads, hp, t, dev=None):
        if self._lowp is not None:
            x = [hp.lr, hp.rho, hp.eps, hp.weight_decay]
            return self._lowp_update(run, grads, "adadelta", x, [hp.maximize], Adadelta._state_names)
        _adadelta_call(run.mod, run.params, grads, run.state["square_avg"], run.state["acc_delta"], hp, dev)
