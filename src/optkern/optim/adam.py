"""Adam, AMSGrad and AdamW (torch.optim.Adam / AdamW): the functional forms ``adam_`` and
``adamw_`` and the classes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from .._serial import serialized
from ._hyper import (  # (in_range ...: a float16 NumPy scalar refused)
    _check_params_dtype,
    _flag,
    _lists,
    _namer,
    _native,
    _step_count,
    in_range,
    nonnegative,
    positive,
)
from ._lowp import LowPrecisionMixin, lowp_keywords
from .optimizer import Optimizer

_BETA_KEYWORDS = ("beta1", "beta2")  # the functional API's names for betas[0], betas[1]


class AdamHyper(NamedTuple):
    lr: float
    beta1: float
    beta2: float
    eps: float
    weight_decay: float
    decoupled_weight_decay: bool
    maximize: bool
    amsgrad: bool
    # lr is a float32 tensor (torch.optim's tensor lr): the step size and decay rounded as torch's
    # float32 tensor ops round them (rules::neg_lr_ratio); else computed in double
    float32_lr: bool = False


def _check_adam(
    where: str, lr, betas, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay, beta_names=None
) -> AdamHyper:
    """``beta_names``: how errors name the betas (default ``betas[0]``, ``betas[1]``)."""
    n = _namer(where)
    if not isinstance(betas, (Sequence, np.ndarray)):
        # (a set or a dict unpacked in its iteration order, not the caller's: {0.999, 0.9} gave
        # beta1 = 0.999, beta2 = 0.9; an iterator was used up by the first check)
        raise TypeError(f"{n('betas')}: expected a sequence (beta1, beta2), got {type(betas).__name__}")
    try:
        beta1, beta2 = betas
    except (TypeError, ValueError):
        raise ValueError(f"{n('betas')}: expected a pair (beta1, beta2), got {betas!r}") from None
    b1, b2 = beta_names or (n("betas") + "[0]", n("betas") + "[1]")
    return AdamHyper(
        nonnegative(n("lr"), lr),
        in_range(b1, beta1, 0.0, 1.0, hi_open=True),
        in_range(b2, beta2, 0.0, 1.0, hi_open=True),
        positive(n("eps"), eps),
        nonnegative(n("weight_decay"), weight_decay),
        _flag(n("decoupled_weight_decay"), decoupled_weight_decay),
        _flag(n("maximize"), maximize),
        _flag(n("amsgrad"), amsgrad),
    )


def _adam_call(mod, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, hp: AdamHyper, step, dev=None) -> None:
    _native(
        mod,
        "adam",
        (
            params,
            grads,
            exp_avgs,
            exp_avg_sqs,
            max_exp_avg_sqs if hp.amsgrad else None,
            hp.lr,
            hp.beta1,
            hp.beta2,
            hp.eps,
            hp.weight_decay,
            hp.decoupled_weight_decay,
            hp.maximize,
            hp.float32_lr,
            step,
        ),
        dev,
    )


def adam_(
    params,
    grads,
    exp_avgs,
    exp_avg_sqs,
    max_exp_avg_sqs=None,
    *,
    step,
    lr=1e-3,
    beta1=0.9,
    beta2=0.999,
    eps=1e-8,
    weight_decay=0.0,
    decoupled_weight_decay=False,
    maximize=False,
    float32_lr=False,
):
    """Adam / AMSGrad, in place (torch.optim.Adam's update).

    ``m <- lerp(m, g', 1 - beta1)``, ``v <- beta2 v + (1 - beta2) g'^2``,
    ``p <- p - lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)`` with ``bc_i = 1 - beta_i^step``
    (``step`` counts from 1, this step included). AMSGrad when ``max_exp_avg_sqs`` is given
    (``vmax <- max(vmax, v)`` replaces ``v``). Weight decay is L2 (``g' = ±g + wd p``), or
    decoupled (``p <- p (1 - lr wd)`` first, AdamW) with ``decoupled_weight_decay``.
    ``float32_lr``: ``lr / bc1`` and ``1 - lr wd`` computed in float32 ops, each operand rounded to
    float32 first, as torch.optim computes them from a float32 tensor ``lr``.
    """
    mod, params, grads, st = _lists(
        params, grads, exp_avgs=exp_avgs, exp_avg_sqs=exp_avg_sqs, max_exp_avg_sqs=max_exp_avg_sqs
    )
    hp = _check_adam(
        "",
        lr,
        (beta1, beta2),
        eps,
        weight_decay,
        max_exp_avg_sqs is not None,
        maximize,
        decoupled_weight_decay,
        _BETA_KEYWORDS,
    )
    _check_params_dtype(hp, params)
    hp = hp._replace(float32_lr=_flag("float32_lr", float32_lr))
    _adam_call(mod, params, grads, st["exp_avgs"], st["exp_avg_sqs"], st["max_exp_avg_sqs"], hp, _step_count(step))


def adamw_(
    params,
    grads,
    exp_avgs,
    exp_avg_sqs,
    max_exp_avg_sqs=None,
    *,
    step,
    lr=1e-3,
    beta1=0.9,
    beta2=0.999,
    eps=1e-8,
    weight_decay=1e-2,
    maximize=False,
):
    """AdamW, in place: :func:`adam_` with decoupled weight decay (default 1e-2)."""
    adam_(
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        max_exp_avg_sqs,
        step=step,
        lr=lr,
        beta1=beta1,
        beta2=beta2,
        eps=eps,
        weight_decay=weight_decay,
        decoupled_weight_decay=True,
        maximize=maximize,
    )


@lowp_keywords
class Adam(LowPrecisionMixin, Optimizer):
    """Adam, torch.optim.Adam's semantics and defaults.

    ``m <- lerp(m, g', 1 - beta1)``, ``v <- beta2 v + (1 - beta2) g'^2``,
    ``p <- p - lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)``, ``bc_i = 1 - beta_i^t``;
    ``amsgrad`` uses ``vmax <- max(vmax, v)`` for ``v``. Weight decay is L2
    (``g' = ±g + wd p``) or, with ``decoupled_weight_decay``, AdamW's ``p <- p (1 - lr wd)``.
    State: ``step``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``. ``capturable=True`` (CuPy
    arrays): bias corrections computed on the device from a device step counter, so a step
    can be captured in a CUDA graph (see :class:`~optkern.optim.Optimizer`).

    Rounding (float32 and float64, CPU): bit for bit torch.optim.Adam's for-loop implementation
    (``foreach=False``, torch's CPU default) with torch's ``Tensor.sqrt`` replaced by the correctly
    rounded one (``tests/torch_ieee_sqrt.py``). Against torch's own for-loop or foreach step an
    element can differ by 1 ulp where torch's CPU sqrt of ``v`` (or ``vmax``) is not correctly
    rounded (measured: 4 of 300 random single steps with the defaults; more with a small ``eps``);
    torch's ``fused=True`` CPU step agreed on all 600 random single steps measured but rounds its
    own way over several (4 of 30 runs of 20 steps differed): it is not the reference.

    Low precision (NumPy or CuPy arrays; :mod:`optkern.optim._lowp`): ``master_weights=True`` takes
    float16 / ``ml_dtypes.bfloat16`` params and grads and keeps a float32 master copy in the state
    (``master_param``), updated bit for bit as the fp32 optimizer would, and rounded into the params
    (to nearest even, or stochastically with ``stochastic_rounding=True``: Philox stream ``step``
    of ``seed``). ``state_dtype="bfloat16"`` (stochastic rounding) or ``"int8"`` (blockwise dynamic
    8-bit, ``block_size`` values per float32 scale) stores the moments compactly.
    """

    _state_names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _capturable = True

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        amsgrad=False,
        *,
        maximize=False,
        decoupled_weight_decay=False,
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
                amsgrad=amsgrad,
                maximize=maximize,
                decoupled_weight_decay=decoupled_weight_decay,
                capturable=capturable,
            ),
        )

    def _check(self, g: dict, where: str) -> AdamHyper:
        return _check_adam(
            where,
            g["lr"],
            g["betas"],
            g["eps"],
            g["weight_decay"],
            g["amsgrad"],
            g["maximize"],
            g["decoupled_weight_decay"],
        )

    def _needed(self, hp):
        return ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if hp.amsgrad else ("exp_avg", "exp_avg_sq")

    def _update(self, run, grads, hp, t, dev=None):
        if self._lowp is not None:
            x = [hp.lr, hp.beta1, hp.beta2, hp.eps, hp.weight_decay]
            flags = [hp.maximize, hp.decoupled_weight_decay, hp.float32_lr]
            return self._lowp_update(run, grads, "adam", x, flags, self._needed(hp))
        s = run.state
        _adam_call(run.mod, run.params, grads, s["exp_avg"], s["exp_avg_sq"], s.get("max_exp_avg_sq"), hp, t, dev)


@lowp_keywords
class AdamW(Adam):
    """AdamW: :class:`Adam` with decoupled weight decay (torch.optim.AdamW's defaults, wd 1e-2)."""

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=1e-2,
        amsgrad=False,
        *,
        maximize=False,
        capturable=False,
        **lowp,
    ):
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            decoupled_weight_decay=True,
            capturable=capturable,
            **lowp,
        )

    @serialized
    def load_state_dict(self, state_dict: dict, strict: bool = True) -> None:
        """As :meth:`Adam.load_state_dict`; the groups stay decoupled, as torch's AdamW keeps them for
        any state it loads (an Adam state dict's ``decoupled_weight_decay`` False made it L2 Adam)."""
        super().load_state_dict(state_dict, strict)
        keep_decoupled(self.param_groups)


def keep_decoupled(param_groups: list) -> None:
    """AdamW's groups after a load (optkern.optim's and optkern.torch's): decoupled whatever the
    state said, as torch's AdamW keeps them (an Adam state dict's False made it L2 Adam)."""
    for group in param_groups:
        group["decoupled_weight_decay"] = True
