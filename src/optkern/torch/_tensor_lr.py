"""A float32 tensor ``lr`` (or a NumPy float32 one) as torch.optim's for-loop steps with it.

torch.optim takes ``lr`` as a tensor; where a step scalar is a quotient or product of it (Adam's and
AdamW's ``lr / bc1``, NAdam's two coefficients, Adagrad's ``lr / (1 + (t - 1) lr_decay)``, the
decoupled decay ``1 - lr * weight_decay``), torch computes it in float32 tensor ops, each of its
Python-float operands rounded to float32 first; the rules then compute it so (their ``float32_lr``).
An integer or bool tensor ``lr`` is divided by Python floats into tensors of torch's default dtype
(``lr_dtype``): a float32 one's scalars, or under a float64 default the Python float's.
SGD's, RMSprop's and Adadelta's step scalars are ``lr`` itself or a product torch takes as its
value: nothing to follow. A float64 tensor's ops round as the Python float's do; a half one's
are Adam's and AdamW's torch expressions (``_torch_scalars``), refused elsewhere (``_tensor_hypers``).
"""

from __future__ import annotations

import numpy as np
import torch

from ._host_values import array_lr

#: Whether NumPy keeps ``np.float32 op float`` in float32 (NEP 50, NumPy 2's promotion). NumPy 1.x
#: (pyproject allows >= 1.22) gives float64 there: torch's for-loop then computes an np.float32 lr's
#: scalars in double, as a Python float's. Read from the behaviour, not the version string.
NEP50_FLOAT32 = type(np.float32(1) * 1.0) is np.float32


#: The dtypes of tensor lr whose quotients the rules compute (float32: ``float32_lr``; float64: double).
FOLLOWED_LR = (torch.float32, torch.float64)


def lr_dtype(lr: torch.Tensor) -> torch.dtype:
    """The dtype torch.optim's for-loop computes the quotients and products of the tensor ``lr`` in:
    its own, or for an integer or bool tensor (promoted with a Python float: ``lr / bias_correction1``)
    torch's default dtype."""
    dtype = lr.dtype
    if dtype.is_floating_point or dtype.is_complex:
        return dtype
    return torch.get_default_dtype()


def lr_is_float32(group: dict, fused=False) -> bool:
    """Whether the group's lr is a float32 tensor (or an integer one: ``lr_dtype``) or a NumPy
    float32 that torch's step computes its scalars with in float32: torch's expressions keep the
    latter float32 too (NumPy 2's promotion, NEP 50: ``np.float32 op float`` is float32), so its
    for-loop and foreach steps compute these scalars as with a float32 tensor lr, bit for bit (not
    under NumPy 1.x's promotion: ``NEP50_FLOAT32`` false). Not for a ``fused`` group: torch's fused
    step takes lr (either kind) to C++ as a double: double scalars, as for a Python float."""
    if fused:
        return False
    lr = group["lr"]
    if array_lr("lr", lr):  # (a 0-d array: NumPy 2 promotes it as the scalar it holds)
        lr = lr[()]
    if isinstance(lr, np.float32):
        return NEP50_FLOAT32
    return isinstance(lr, torch.Tensor) and lr_dtype(lr) == torch.float32


def replaced(opt, hp, **changes):
    """``hp._replace(**changes)``, the same tuple while ``hp`` is (``_core_step`` memoizes its dtype
    check by the tuple's identity); a few kept, as a group's hyper-parameters change."""
    memo = opt.__dict__.setdefault("_replaced_hp", {})
    key = (id(hp), tuple(sorted(changes.items())))
    hit = memo.get(key)
    if hit is None or hit[0] is not hp:
        if len(memo) > 8:  # (an LR scheduler makes a new tuple every step)
            memo.clear()
        hit = memo[key] = (hp, hp._replace(**changes))
    return hit[1]


class Float32Lr:
    """The adapter's side: each run's native call told whether its group's lr is a float32 tensor
    (``_float32_lr``, read by ``_call``; ``float32_lr`` in the hyper-parameters ``_core_step`` takes)."""

    _float32_lr = False  # (the run's: set by _native_step, read by its native call)

    def _native_step(self, group, hp, core_run, pviews, grads, lists, t, first):
        # (fused: the group's own, as loaded from torch's state_dict, else the constructor's keyword)
        self._float32_lr = lr_is_float32(group, group.get("fused", self._impl.get("fused")))
        if self._float32_lr:
            hp = replaced(self, hp, float32_lr=True)
        return super()._native_step(group, hp, core_run, pviews, grads, lists, t, first)
