"""Adam's and AdamW's step scalars as torch.optim computes them from tensor hyper-parameters.

torch.optim.Adam takes ``betas`` as two tensors, ``lr`` and ``weight_decay`` as tensors; its for-loop
(a CPU user's default) then computes the step scalars in tensor ops of those tensors' dtypes:
``1 - beta ** step`` with torch's pow (which takes exponents 2 and 3 as products and 0.5 as a
sqrt), ``lr / bias_correction1`` as ``bias_correction1.reciprocal() * lr`` (``Tensor.__rtruediv__``),
``1 - betas[0]`` in the params' dtype, ``1 - betas[1]`` in the betas', ``1 - lr * weight_decay``
and, from a float16 or bfloat16 ``lr``, every quotient rounded to that format. No double formula
follows them all (a float32 or float64 ``lr`` alone is followed by the rules' ``float32_lr``), so
a run whose group has such a hyper-parameter takes its scalars from torch's own expressions here,
evaluated with torch's ops on the group's very values, and steps with the native
``adam_given_`` (``rules::AdamGiven``: Adam's update, each given scalar rounded once to the
params' dtype, as torch's ops take a 0-d tensor operand or an ``.item()``). NAdam with tensor
betas likewise: ``nadam_scalars`` into ``nadam_given_`` (``rules::NAdamGiven``).
"""

from __future__ import annotations

import numpy as np
import torch

from .._foreign import array_pair
from ._tensor_lr import FOLLOWED_LR, lr_dtype

_NUMBERS = (float, int)


def _squeezed(x):
    """torch.optim's ``_to_scalar``: a one-element tensor as a 0-d one, anything else as is."""
    return x.squeeze() if isinstance(x, torch.Tensor) and x.dim() != 0 else x


def tensor_betas(betas) -> tuple | None:
    """``betas`` as torch's step reads them when one is a tensor (a pair with a tensor, or one 1-D
    tensor of two: torch iterates it), each tensor 0-d, a number as is; None when both are numbers.
    (Adam's and AdamW's constructors refuse one tensor beside a float, as torch's do, but a group's
    betas set later, and NAdam's, may be such a pair: torch's for-loop then computes with the tensor
    in tensor ops and with the number as a Python float.)"""
    if isinstance(betas, torch.Tensor):
        return tuple(betas) if betas.dim() == 1 and betas.numel() == 2 else None
    if array_pair(betas) and betas.dtype != np.float64:
        # (NumPy scalars narrower than float64, which NAdam's constructor takes: torch's step
        # computes its scalars with them in NumPy's float32 arithmetic, these expressions' too)
        return tuple(betas)
    # (no generator: any() over one cost ~5 us a step where two isinstance calls cost 0.2)
    if isinstance(betas, (tuple, list)) and len(betas) == 2:
        if isinstance(betas[0], torch.Tensor) or isinstance(betas[1], torch.Tensor):
            return (_squeezed(betas[0]), _squeezed(betas[1]))
    return None


def plain_numbers(group: dict) -> bool:
    """Whether ``group``'s lr, weight decay and two betas are plain Python numbers (every step of most
    runs), told by their types alone: cheaper than isinstance against torch.Tensor, whose metaclass
    checks it."""
    lr, wd, b = group["lr"], group["weight_decay"], group["betas"]
    return (
        type(lr) in _NUMBERS
        and type(wd) in _NUMBERS
        and type(b) in (tuple, list)
        and len(b) == 2
        and type(b[0]) in _NUMBERS
        and type(b[1]) in _NUMBERS
    )


def torch_computed_key(group: dict) -> str | None:
    """The entry of ``group`` whose step scalars torch.optim's Adam computes in tensor ops that the
    rules do not follow -- ``"betas"`` (a tensor beta), ``"lr"`` (a tensor lr computed in another dtype than
    float32 / float64: ``lr_dtype``), ``"weight_decay"`` (a tensor decoupled one; an L2 one is only read:
    ``grad.add(param, alpha=wd)``) -- or None."""
    if plain_numbers(group):
        return None
    lr, wd = group["lr"], group["weight_decay"]
    if tensor_betas(group["betas"]) is not None:
        return "betas"
    if isinstance(lr, torch.Tensor) and lr_dtype(lr) not in FOLLOWED_LR:
        return "lr"
    if isinstance(wd, torch.Tensor) and bool(group["decoupled_weight_decay"]):
        return "weight_decay"
    return None


def torch_computes(group: dict) -> bool:
    """Whether torch.optim's Adam computes a step scalar of ``group`` in tensor ops that the rules do
    not follow (``torch_computed_key``)."""
    return torch_computed_key(group) is not None


def _real(dtype: torch.dtype) -> torch.dtype:
    """A complex param's real view's dtype (torch steps ``view_as_real(param)``), else ``dtype``."""
    return {torch.complex64: torch.float32, torch.complex128: torch.float64}.get(dtype, dtype)


def _weight_decay(group: dict, lr, wd) -> tuple:
    """(decay, l2): torch's decoupled ``param.mul_(1 - lr * weight_decay)`` factor, or the L2
    coefficient of ``grad.add(param, alpha=weight_decay)``; (1, 0) without weight decay."""
    if wd == 0:
        return 1.0, 0.0
    if group["decoupled_weight_decay"]:
        return 1 - lr * wd, 0.0
    return 1.0, wd


def adam_scalars(group: dict, step: int, dtype: torch.dtype, device: torch.device) -> tuple:
    """(step_size, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay, bc2_sqrt) of a
    run of params of ``dtype`` on ``device`` at step ``step`` (from 1), as torch.optim's
    ``_single_tensor_adam`` (non-capturable) computes them, each a Python float (what its ops read
    from a 0-d tensor: the tensor's value). The expressions are torch 2.13's, in its order."""
    lr, wd, eps = _squeezed(group["lr"]), group["weight_decay"], group["eps"]
    pair = tensor_betas(group["betas"])
    beta1, beta2 = pair if pair is not None else tuple(map(_squeezed, group["betas"]))
    t = float(step)  # (torch: _get_value(step_t), a float step tensor's item())
    decay, l2 = _weight_decay(group, lr, wd)
    # exp_avg.lerp_(grad, 1 - device_beta1): betas[0] cast to the (real) params' dtype and device first
    device_beta1 = beta1.to(device=device, dtype=_real(dtype)) if isinstance(beta1, torch.Tensor) else beta1
    one_minus_beta1 = 1 - device_beta1
    one_minus_beta2 = 1 - beta2  # exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    bias_correction1 = 1 - beta1**t
    bias_correction2 = 1 - beta2**t
    step_size = lr / bias_correction1
    bias_correction2_sqrt = bias_correction2**0.5
    values = (step_size, one_minus_beta1, beta2, one_minus_beta2, eps, l2, decay, bias_correction2_sqrt)
    return tuple(float(v) for v in values)


def nadam_scalars(group: dict, step: int, mu_product: torch.Tensor) -> tuple:
    """((c_grad, c_avg, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay, bc2), new
        mu_product) of a NAdam run at step ``step`` (from 1) with tensor betas, as torch.optim's
        ``_single_tensor_nadam`` (non-capturable) computes them: ``mu = beta1 * (...)`` a tensor of the
        betas' dtype, ``mu_product *= mu`` on the state tensor ``mu_product`` (promoted: 0-d by 0-d), the
        coefficients from its ``.item()`` (nothing moved to the params' dtype or device, unlike Adam's
    ``betas[0]``). torch 2.13's expressions, in its order; ``mu_product`` left unchanged."""
    lr, wd, eps, md = _squeezed(group["lr"]), group["weight_decay"], group["eps"], group["momentum_decay"]
    pair = tensor_betas(group["betas"])
    beta1, beta2 = pair if pair is not None else tuple(map(_squeezed, group["betas"]))
    t = float(step)
    bias_correction2 = 1 - beta2**t
    decay, l2 = _weight_decay(group, lr, wd)
    mu = beta1 * (1.0 - 0.5 * (0.96 ** (t * md)))
    mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((t + 1) * md)))
    prod = mu_product.detach().clone()
    prod *= mu
    c_grad = -lr * (1.0 - mu) / (1.0 - prod.item())
    mu_product_next = prod.item() * mu_next
    c_avg = (-lr * mu_next) / (1.0 - mu_product_next)
    # (exp_avg.lerp_(grad, 1 - beta1), exp_avg_sq.mul_(beta2).addcmul_(..., value=1 - beta2))
    values = (c_grad, c_avg, 1 - beta1, beta2, 1 - beta2, eps, l2, decay, bias_correction2)
    return tuple(float(v) for v in values), prod
