"""SGD with momentum, dampening, Nesterov, weight decay (torch.optim.SGD)."""

from __future__ import annotations

from .. import functional as F
from ._lowp import LowPrecisionMixin
from .optimizer import Optimizer


class SGD(LowPrecisionMixin, Optimizer):
    """Stochastic gradient descent, torch.optim.SGD's semantics and defaults.

    ``g' = ±g + weight_decay p``; with momentum ``b <- momentum b + (1 - dampening) g'``
    (``b <- g'`` on the first step), ``d = g' + momentum b`` (Nesterov) or ``b``,
    ``p <- p - lr d``. ``momentum_form="textbook"`` uses ``v <- momentum v - lr g'``,
    ``p <- p + v`` instead (Goodfellow et al., Alg. 8.2/8.3), equal to PyTorch's form while
    ``lr`` is constant. State: ``momentum_buffer``. ``capturable=True`` (CuPy arrays): a step
    that can be captured in a CUDA graph (see :class:`~optkern.optim.Optimizer`).
    Low precision (``master_weights``, ``stochastic_rounding``, ``state_dtype``, ``seed``,
    ``block_size``): as :class:`~optkern.optim.Adam`'s, for the momentum buffer.
    """

    _state_names = ("momentum_buffer",)
    _has_step = False
    _capturable = True

    def __init__(
        self,
        params,
        lr=1e-3,
        momentum=0.0,
        dampening=0.0,
        weight_decay=0.0,
        nesterov=False,
        *,
        maximize=False,
        momentum_form="pytorch",
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
                momentum=momentum,
                dampening=dampening,
                weight_decay=weight_decay,
                nesterov=nesterov,
                maximize=maximize,
                momentum_form=momentum_form,
                capturable=capturable,
            ),
        )

    def _check(self, g, where):
        return F._check_sgd(
            where,
            g["lr"],
            g["momentum"],
            g["dampening"],
            g["weight_decay"],
            g["nesterov"],
            g["maximize"],
            g["momentum_form"],
        )

    def _needed(self, hp):
        return ("momentum_buffer",) if hp.momentum != 0 else ()

    def _host_step(self, run):
        # the buffers' step: 1 starts them from the gradient (baked into a captured step, which
        # has no device counter: capture after the buffers' first step)
        return 1 if "momentum_buffer" in run.fresh else max(run.step + 1, 2)

    def _update(self, run, grads, hp, t, dev=None):
        if self._lowp is not None:
            x = [hp.lr, hp.momentum, hp.dampening, hp.weight_decay]
            flags = [hp.nesterov, hp.maximize, t == 1, hp.textbook]
            return self._lowp_update(run, grads, "sgd", x, flags, self._needed(hp))
        F._sgd_call(run.mod, run.params, grads, run.state.get("momentum_buffer"), hp, t, dev)
