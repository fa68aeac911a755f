"""RMSprop, centered and with (Nesterov) momentum (torch.optim.RMSprop + Goodfellow Alg. 8.6):
the functional form ``rmsprop_`` and the class."""

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


class RMSpropHyper(NamedTuple):
    lr: float
    alpha: float
    eps: float
    weight_decay: float
    momentum: float
    nesterov: bool
    maximize: bool
    centered: bool


def _check_rmsprop(
    where: str, lr, alpha, eps, weight_decay, momentum, maximize, nesterov=False, centered=False
) -> RMSpropHyper:
    n = _namer(where)
    lr = nonnegative(n("lr"), lr)
    alpha = in_range(n("alpha"), alpha, 0.0, 1.0)
    eps = positive(n("eps"), eps)
    weight_decay = nonnegative(n("weight_decay"), weight_decay)
    momentum = nonnegative(n("momentum"), momentum)
    maximize = _flag(n("maximize"), maximize)
    nesterov = _flag(n("nesterov"), nesterov)
    centered = _flag(n("centered"), centered)
    if nesterov and momentum <= 0:
        raise ValueError(f"{n('nesterov')}: Nesterov momentum requires momentum > 0, got momentum={momentum}")
    return RMSpropHyper(lr, alpha, eps, weight_decay, momentum, nesterov, maximize, centered)


def _rmsprop_call(mod, params, grads, square_avgs, grad_avgs, bufs, hp: RMSpropHyper, dev=None) -> None:
    _native(
        mod,
        "rmsprop",
        (
            params,
            grads,
            square_avgs,
            grad_avgs if hp.centered else None,
            bufs if hp.momentum > 0 else None,
            hp.lr,
            hp.alpha,
            hp.eps,
            hp.weight_decay,
            hp.momentum,
            hp.nesterov,
            hp.maximize,
        ),
        dev,
    )


def rmsprop_(
    params,
    grads,
    square_avgs,
    grad_avgs=None,
    momentum_buffers=None,
    *,
    lr=1e-2,
    alpha=0.99,
    eps=1e-8,
    weight_decay=0.0,
    momentum=0.0,
    nesterov=False,
    maximize=False,
):
    """RMSprop, in place (torch.optim.RMSprop's update, plus Nesterov momentum).

    ``v <- alpha v + (1 - alpha) g'^2``; centered (``grad_avgs`` given):
    ``a <- lerp(a, g', 1 - alpha)``, ``avg = sqrt(max(v - a^2, 0)) + eps`` (rounding can take
    ``v - a^2`` below 0, where torch gives NaN), else ``sqrt(v) + eps``.
    Without momentum ``p <- p - lr g'/avg``; with momentum ``b <- momentum b + g'/avg``,
    ``p <- p - lr b``, or with ``nesterov`` ``p <- p - lr (g'/avg + momentum b)``
    (Goodfellow et al., Alg. 8.6, in the look-ahead form SGD's Nesterov also uses).

    Args:
      grad_avgs: state list for the centered variant, or None.
      momentum_buffers: state list, required when ``momentum > 0``.
    """
    mod, params, grads, st = _lists(
        params, grads, square_avgs=square_avgs, grad_avgs=grad_avgs, momentum_buffers=momentum_buffers
    )
    hp = _check_rmsprop("", lr, alpha, eps, weight_decay, momentum, maximize, nesterov, grad_avgs is not None)
    _check_params_dtype(hp, params)
    if hp.momentum > 0 and st["momentum_buffers"] is None:
        raise ValueError("momentum_buffers: required when momentum > 0")
    _rmsprop_call(mod, params, grads, st["square_avgs"], st["grad_avgs"], st["momentum_buffers"], hp)


@lowp_keywords
class RMSprop(LowPrecisionMixin, Optimizer):
    """RMSprop, torch.optim.RMSprop's semantics and defaults, plus ``nesterov``.

    ``v <- alpha v + (1 - alpha) g'^2``; centered: ``a <- lerp(a, g', 1 - alpha)``,
    ``avg = sqrt(max(v - a^2, 0)) + eps`` (clamped: rounding can take ``v - a^2`` below 0, where
    torch gives NaN; else ``sqrt(v) + eps``); ``p <- p - lr g'/avg``, or with
    momentum ``b <- momentum b + g'/avg``, ``p <- p - lr b``; ``nesterov=True`` (needs
    momentum > 0) steps ``p <- p - lr (g'/avg + momentum b)`` (Goodfellow et al., Alg. 8.6,
    look-ahead form). State: ``step``, ``square_avg``, ``momentum_buffer``, ``grad_avg``.
    ``capturable=True`` (CuPy arrays): a step that can be captured in a CUDA graph (see
    :class:`~optkern.optim.Optimizer`). Low precision (``master_weights``, ``stochastic_rounding``,
    ``state_dtype``, ``seed``, ``block_size``): as :class:`~optkern.optim.Adam`'s.
    """

    _state_names = ("square_avg", "momentum_buffer", "grad_avg")
    _capturable = True

    def __init__(
        self,
        params,
        lr=1e-2,
        alpha=0.99,
        eps=1e-8,
        weight_decay=0.0,
        momentum=0.0,
        centered=False,
        *,
        maximize=False,
        nesterov=False,
        capturable=False,
        **lowp,
    ):
        self._lowp_init(capturable, **lowp)
        super().__init__(
            params,
            dict(
                lr=lr,
                alpha=alpha,
                eps=eps,
                weight_decay=weight_decay,
                momentum=momentum,
                centered=centered,
                maximize=maximize,
                nesterov=nesterov,
                capturable=capturable,
            ),
        )

    def _check(self, g: dict, where: str) -> RMSpropHyper:
        return _check_rmsprop(
            where,
            g["lr"],
            g["alpha"],
            g["eps"],
            g["weight_decay"],
            g["momentum"],
            g["maximize"],
            g["nesterov"],
            g["centered"],
        )

    def _needed(self, hp):
        return (
            ("square_avg",) + (("momentum_buffer",) if hp.momentum > 0 else ()) + (("grad_avg",) if hp.centered else ())
        )

    def _update(self, run, grads, hp, t, dev=None):
        if self._lowp is not None:  # the native rule's state order: square_avg, grad_avg, momentum_buffer
            names = (
                ("square_avg",)
                + (("grad_avg",) if hp.centered else ())
                + (("momentum_buffer",) if hp.momentum > 0 else ())
            )
            x = [hp.lr, hp.alpha, hp.eps, hp.weight_decay, hp.momentum]
            return self._lowp_update(run, grads, "rmsprop", x, [hp.nesterov, hp.maximize, hp.centered], names)
        s = run.state
        _rmsprop_call(run.mod, run.params, grads, s["square_avg"], s.get("grad_avg"), s.get("momentum_buffer"), hp, dev)
