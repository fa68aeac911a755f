"""NAdam (Dozat 2016; torch.optim.NAdam)."""

from __future__ import annotations

import numpy as np

from .. import _backend
from .. import functional as F
from . import _capturable
from .optimizer import Optimizer


class NAdam(Optimizer):
    """NAdam, torch.optim.NAdam's semantics and defaults.

    Momentum schedule ``mu_t = beta1 (1 - 0.96^(t momentum_decay) / 2)``; moments as in Adam;
    ``p <- p - lr (1 - mu_t) / (1 - prod mu) g' / d - lr mu_{t+1} / (1 - prod mu mu_{t+1}) m / d``,
    ``d = sqrt(v / bc2) + eps``. ``decoupled_weight_decay`` scales ``p`` by ``1 - lr wd`` instead
    of adding ``wd p`` to the gradient. State: ``step``, ``mu_product``, ``exp_avg``, ``exp_avg_sq``.
    ``capturable=True`` (CuPy arrays): ``step`` and ``mu_product`` are 0-d float64 device arrays
    and the momentum schedule is computed on the device, so a step can be captured in a CUDA
    graph (see :class:`~optkern.optim.Optimizer`).
    """

    _state_names = ("exp_avg", "exp_avg_sq")
    _scalar_names = ("mu_product",)
    _capturable = True

    def __init__(
        self,
        params,
        lr=2e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        momentum_decay=4e-3,
        decoupled_weight_decay=False,
        *,
        maximize=False,
        capturable=False,
    ):
        super().__init__(
            params,
            dict(
                lr=lr,
                betas=betas,
                eps=eps,
                weight_decay=weight_decay,
                momentum_decay=momentum_decay,
                decoupled_weight_decay=decoupled_weight_decay,
                maximize=maximize,
                capturable=capturable,
            ),
        )

    def _check(self, g, where):
        return F._check_nadam(
            where,
            g["lr"],
            g["betas"],
            g["eps"],
            g["weight_decay"],
            g["momentum_decay"],
            g["maximize"],
            g["decoupled_weight_decay"],
        )

    def _new_extra(self, run, hp):
        return {"mu_product": 1.0}

    def _update(self, run, grads, hp, t, dev=None):
        s = run.state
        mu_product = F._nadam_call(
            run.mod, run.params, grads, s["exp_avg"], s["exp_avg_sq"], hp, t, run.extra["mu_product"], dev
        )
        if dev is None:
            run.extra["mu_product"] = mu_product

    def _counter_values(self, run):
        return [run.step, run.extra.get("mu_product", 1.0)]

    def _counters_to_host(self, run, values):
        super()._counters_to_host(run, values)
        run.extra["mu_product"] = float(values[1])

    def _new_dev(self, run):
        dev = super()._new_dev(run)
        dev["mu_product"] = _capturable.scalar_view(dev["counters"], 1)
        return dev

    def _extra_to_state(self, run):
        if run.dev is not None:  # capturable: the live device scalar
            return {"mu_product": run.dev["mu_product"]}
        return {"mu_product": run.extra["mu_product"]}

    def _extra_from_state(self, entry, where):
        v = entry.get("mu_product")
        if v is None:
            raise ValueError(f"{where}: missing 'mu_product'")
        v = v.get() if _backend.is_cupy(v) else v
        return {"mu_product": _backend.in_range(f"{where}['mu_product']", float(np.asarray(v)), 0.0, 1.0, lo_open=True)}
