"""NAdam (Dozat 2016; torch.optim.NAdam): the functional form ``nadam_`` and the class."""

from __future__ import annotations

from typing import NamedTuple

from . import _capturable, _state_checks
from ._hyper import (  # (in_range ...: a float16 NumPy scalar refused)
    _check_params_dtype,
    _flag,
    _lists,
    _namer,
    _native,
    _step_count,
    in_range,
    nonnegative,
)
from ._lowp import LowPrecisionMixin, lowp_keywords
from .adam import _BETA_KEYWORDS, _check_adam
from .optimizer import Optimizer


class NAdamHyper(NamedTuple):
    lr: float
    beta1: float
    beta2: float
    eps: float
    weight_decay: float
    momentum_decay: float
    decoupled_weight_decay: bool
    maximize: bool
    # mu_product kept in float64 whatever the params' dtype (torch.optim.NAdam's float64 state, under a
    # float64 default dtype); else rounded to the params' dtype (float32: torch's float32 state)
    float64_product: bool = False
    float32_lr: bool = False  # (as AdamHyper's)


def _check_nadam(
    where: str, lr, betas, eps, weight_decay, momentum_decay, maximize, decoupled_weight_decay, beta_names=None
) -> NAdamHyper:
    a = _check_adam(where, lr, betas, eps, weight_decay, False, maximize, decoupled_weight_decay, beta_names)
    return NAdamHyper(
        a.lr,
        a.beta1,
        a.beta2,
        a.eps,
        a.weight_decay,
        nonnegative(_namer(where)("momentum_decay"), momentum_decay),
        a.decoupled_weight_decay,
        a.maximize,
    )


def _nadam_call(mod, params, grads, exp_avgs, exp_avg_sqs, hp: NAdamHyper, step, mu_product, dev=None):
    """One NAdam step; returns the new mu_product (None with device counters)."""
    return _native(mod, "nadam", (params, grads, exp_avgs, exp_avg_sqs, *hp, step, mu_product), dev)


def nadam_(
    params,
    grads,
    exp_avgs,
    exp_avg_sqs,
    *,
    step,
    mu_product=1.0,
    lr=2e-3,
    beta1=0.9,
    beta2=0.999,
    eps=1e-8,
    weight_decay=0.0,
    momentum_decay=4e-3,
    decoupled_weight_decay=False,
    maximize=False,
    float64_product=False,
    float32_lr=False,
):
    """NAdam (Dozat 2016; torch.optim.NAdam's update), in place. Returns the new ``mu_product``.

    ``mu_t = beta1 (1 - 0.96^(t psi) / 2)`` with ``psi = momentum_decay``; ``mu_product`` is
    the product of ``mu_1 .. mu_{t-1}`` (1.0 before the first step) and the returned value
    includes ``mu_t``: pass it back on the next step. Moments as in Adam; then
    ``p <- p - lr (1 - mu_t) / (1 - prod_t) g' / d - lr mu_{t+1} / (1 - prod_t mu_{t+1}) m / d``,
    ``d = sqrt(v / bc2) + eps``. The new ``mu_product`` is rounded to the arrays' dtype (torch's
    float32 state for float32 arrays), or with ``float64_product`` kept in float64 (torch's state
    under a float64 default dtype). ``float32_lr``: the two lr coefficients and ``1 - lr wd`` computed
    in float32 ops, as torch.optim computes them from a float32 tensor ``lr``.
    """
    mod, params, grads, st = _lists(params, grads, exp_avgs=exp_avgs, exp_avg_sqs=exp_avg_sqs)
    hp = _check_nadam(
        "", lr, (beta1, beta2), eps, weight_decay, momentum_decay, maximize, decoupled_weight_decay, _BETA_KEYWORDS
    )
    _check_params_dtype(hp, params)
    # (0 is a product this returns: underflowed, or with beta1 = 0; _state_checks.SCALARS)
    mu_product = in_range("mu_product", mu_product, 0.0, 1.0)
    hp = hp._replace(
        float64_product=_flag("float64_product", float64_product), float32_lr=_flag("float32_lr", float32_lr)
    )
    return _nadam_call(mod, params, grads, st["exp_avgs"], st["exp_avg_sqs"], hp, _step_count(step), mu_product)


@lowp_keywords
class NAdam(LowPrecisionMixin, Optimizer):
    """NAdam, torch.optim.NAdam's semantics and defaults.

    Momentum schedule ``mu_t = beta1 (1 - 0.96^(t momentum_decay) / 2)``; moments as in Adam;
    ``p <- p - lr (1 - mu_t) / (1 - prod mu) g' / d - lr mu_{t+1} / (1 - prod mu mu_{t+1}) m / d``,
    ``d = sqrt(v / bc2) + eps``. ``decoupled_weight_decay`` scales ``p`` by ``1 - lr wd`` instead
    of adding ``wd p`` to the gradient. State: ``step``, ``mu_product``, ``exp_avg``, ``exp_avg_sq``.
    ``capturable=True`` (CuPy arrays): ``step`` and ``mu_product`` are 0-d float64 device arrays
    and the momentum schedule is computed on the device, so a step can be captured in a CUDA
    graph (see :class:`~optkern.optim.Optimizer`). Low precision: the keywords of
    :class:`~optkern.optim.Adam` (``mu_product`` kept in float32, as the float32 step keeps it).
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
        **lowp,
    ):
        self._lowp_init(capturable, **lowp)
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

    def _check(self, g: dict, where: str) -> NAdamHyper:
        return _check_nadam(
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
        if self._lowp is not None:
            x = [hp.lr, hp.beta1, hp.beta2, hp.eps, hp.weight_decay, hp.momentum_decay, run.extra["mu_product"]]
            flags = [hp.maximize, hp.decoupled_weight_decay, hp.float32_lr]
            mu_product = self._lowp_update(run, grads, "nadam", x, flags, NAdam._state_names)
            if mu_product is not None:
                run.extra["mu_product"] = mu_product
            return
        s = run.state
        mu_product = _nadam_call(
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
        lo, hi, lo_open = _state_checks.SCALARS["mu_product"]
        return {"mu_product": _state_checks.check_scalar(v, f"{where}['mu_product']", lo, hi, lo_open)}
