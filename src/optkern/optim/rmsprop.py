"""RMSprop, centered and with (Nesterov) momentum (torch.optim.RMSprop + Goodfellow Alg. 8.6)."""

from __future__ import annotations

from .. import functional as F
from ._lowp import LowPrecisionMixin
from .optimizer import Optimizer


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
        master_weights=False,
        stochastic_rounding=False,
        state_dtype="float32",
        seed=0,
        block_size=256,
    ):
        self._lowp_init(master_weights, stochastic_rounding, state_dtype, seed, block_size, capturable)
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

    def _check(self, g, where):
        return F._check_rmsprop(
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
        F._rmsprop_call(
            run.mod, run.params, grads, s["square_avg"], s.get("grad_avg"), s.get("momentum_buffer"), hp, dev
        )
