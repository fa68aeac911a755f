"""Adam, AMSGrad and AdamW (torch.optim.Adam / AdamW)."""

from __future__ import annotations

from .. import functional as F
from ._lowp import LowPrecisionMixin
from .optimizer import Optimizer


class Adam(LowPrecisionMixin, Optimizer):
    """Adam, torch.optim.Adam's semantics and defaults.

    ``m <- lerp(m, g', 1 - beta1)``, ``v <- beta2 v + (1 - beta2) g'^2``,
    ``p <- p - lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)``, ``bc_i = 1 - beta_i^t``;
    ``amsgrad`` uses ``vmax <- max(vmax, v)`` for ``v``. Weight decay is L2
    (``g' = ±g + wd p``) or, with ``decoupled_weight_decay``, AdamW's ``p <- p (1 - lr wd)``.
    State: ``step``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``. ``capturable=True`` (CuPy
    arrays): bias corrections computed on the device from a device step counter, so a step
    can be captured in a CUDA graph (see :class:`~optkern.optim.Optimizer`).

    Low precision (NumPy arrays; :mod:`optkern.optim._lowp`): ``master_weights=True`` takes
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
                betas=betas,
                eps=eps,
                weight_decay=weight_decay,
                amsgrad=amsgrad,
                maximize=maximize,
                decoupled_weight_decay=decoupled_weight_decay,
                capturable=capturable,
            ),
        )

    def _check(self, g, where):
        return F._check_adam(
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
            return self._lowp_update(run, grads, "adam", x, [hp.maximize, hp.decoupled_weight_decay], self._needed(hp))
        s = run.state
        F._adam_call(run.mod, run.params, grads, s["exp_avg"], s["exp_avg_sq"], s.get("max_exp_avg_sq"), hp, t, dev)


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
        master_weights=False,
        stochastic_rounding=False,
        state_dtype="float32",
        seed=0,
        block_size=256,
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
            master_weights=master_weights,
            stochastic_rounding=stochastic_rounding,
            state_dtype=state_dtype,
            seed=seed,
            block_size=block_size,
        )
