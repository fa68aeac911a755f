"""torch.optim.Adagrad, RMSprop and Adadelta on optkern's fused step: per-coordinate step sizes from
a running sum or average of squared gradients. What every class of :mod:`optkern.torch.optimizers`
shares (torch's state names, checkpoints, tensor hyper-parameters) is said there."""

from __future__ import annotations

import numbers

import torch

from .. import functional as F
from .. import optim as _optim
from ..optim._lowp_config import lowp_keywords
from . import _views
from ._fused import _Fused
from ._impl_keywords import impl_keywords
from ._tensor_hypers import refuse_half_lr, refuse_one_minus, refuse_tensor
from ._tensor_lr import Float32Lr

__all__ = ["Adagrad", "RMSprop", "Adadelta"]


@impl_keywords
@lowp_keywords
class Adagrad(Float32Lr, _Fused):
    """torch.optim.Adagrad (state created at construction, as torch does), and the low-precision
    keywords (see :mod:`optkern.torch`).

    One difference, deliberate: a param group's own ``initial_accumulator_value`` (given in the
    group's dict, or by ``add_param_group``) starts that group's sums. torch 2.x reads the
    constructor's value for every group, its own key ignored."""

    _core = _optim.Adagrad
    _BOOL_LR = True  # (torch's lr / (1 + (t - 1) lr_decay) promotes it as an integer one: lr_dtype)
    _impl_names = ("foreach", "differentiable", "fused")  # (torch.optim.Adagrad has no capturable)
    _sparse_coalesce = True  # (torch's: its update is not linear in the grad)

    def __init__(
        self,
        params,
        lr=1e-2,
        lr_decay=0.0,
        weight_decay=0.0,
        initial_accumulator_value=0.0,
        eps=1e-10,
        foreach=None,
        *,
        maximize=False,
        **lowp,
    ):
        lowp["foreach"] = foreach  # (positional in torch's signature: checked with the keyword ones)
        super().__init__(
            params,
            dict(
                lr=lr,
                lr_decay=lr_decay,
                weight_decay=weight_decay,
                eps=eps,
                initial_accumulator_value=initial_accumulator_value,
                maximize=maximize,
            ),
            lowp,
        )
        for i, group in enumerate(self.param_groups):
            for j, p in enumerate(group["params"]):  # (a lazy param has no shape yet: torch's refuses it too)
                if _views.is_lazy(p):
                    raise ValueError(f"param_groups[{i}]['params'][{j}]: Adagrad makes its state here: {_views.LAZY}")
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(p, self.state[p], group)

    def _sparse_check(self, group, gi, names) -> None:
        # torch.optim.Adagrad's rules for sparse grads (_sparse), in its order
        if group.get("fused", self._impl.get("fused")):
            raise RuntimeError("`fused` does not support sparse grad or complex param")
        if group["weight_decay"] != 0:
            raise RuntimeError("weight_decay option is not compatible with sparse gradients")

    def _refuse_tensor_hypers(self, group: dict, where: str) -> None:
        lr_decay = group["lr_decay"]
        if isinstance(lr_decay, torch.Tensor):  # (torch's lr / (1 + (t - 1) lr_decay): reciprocal * lr)
            refuse_tensor(where, "lr_decay", lr_decay, "whose decayed lr torch computes as a reciprocal times lr")
        if float(lr_decay) != 0.0:
            refuse_half_lr(group, where, "which torch's decayed lr is divided in")

    def _call(self, group, params, grads, lists, t, *, first):
        F.adagrad_(
            params,
            grads,
            lists.get("sum", []),
            step=t,
            lr=group["lr"],
            lr_decay=group["lr_decay"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=group["maximize"],
            float32_lr=self._float32_lr,
        )


@impl_keywords
@lowp_keywords
class RMSprop(_Fused):
    """torch.optim.RMSprop (centered, momentum), plus ``nesterov`` momentum (not in torch), and the
    low-precision keywords (see :mod:`optkern.torch`)."""

    _core = _optim.RMSprop
    _sparse_refusal = "RMSprop does not support sparse gradients"  # (torch's)
    _impl_names = ("capturable", "foreach", "differentiable")  # (torch.optim.RMSprop has no fused)

    def __init__(
        self,
        params,
        lr=1e-2,
        alpha=0.99,
        eps=1e-8,
        weight_decay=0.0,
        momentum=0.0,
        centered=False,
        capturable=False,
        foreach=None,
        maximize=False,
        differentiable=False,
        *,
        nesterov=False,
        **lowp,
    ):
        # (positional in torch's signature: checked with the keyword ones)
        lowp.update(capturable=capturable, foreach=foreach, differentiable=differentiable)
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
            ),
            lowp,
        )

    def _refuse_tensor_hypers(self, group: dict, where: str) -> None:
        refuse_one_minus(group, where, "alpha")

    def _call(self, group, params, grads, lists, t, *, first):
        # (a momentum that is not a number gets the buffers' list, for the call's checks to name it:
        # compared here first, Python's TypeError named nothing)
        momentum = group["momentum"]
        buffers = not isinstance(momentum, numbers.Real) or momentum > 0
        F.rmsprop_(
            params,
            grads,
            lists.get("square_avg", []),
            lists.get("grad_avg", []) if group["centered"] else None,
            lists.get("momentum_buffer", []) if buffers else None,
            lr=group["lr"],
            alpha=group["alpha"],
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            momentum=group["momentum"],
            nesterov=group["nesterov"],
            maximize=group["maximize"],
        )


@impl_keywords
@lowp_keywords
class Adadelta(_Fused):
    """torch.optim.Adadelta, and the low-precision keywords (see :mod:`optkern.torch`)."""

    _core = _optim.Adadelta
    _sparse_refusal = "Adadelta does not support sparse gradients"  # (torch's)
    _impl_names = ("foreach", "capturable", "differentiable")  # (torch.optim.Adadelta has no fused)

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, foreach=None, *, maximize=False, **lowp):
        lowp["foreach"] = foreach  # (positional in torch's signature: checked with the keyword ones)
        hp = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, hp, lowp)

    def _refuse_tensor_hypers(self, group: dict, where: str) -> None:
        refuse_one_minus(group, where, "rho")

    def _call(self, group, params, grads, lists, t, *, first):
        F.adadelta_(
            params,
            grads,
            lists.get("square_avg", []),
            lists.get("acc_delta", []),
            lr=group["lr"],
            rho=group["rho"],
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            maximize=group["maximize"],
        )
