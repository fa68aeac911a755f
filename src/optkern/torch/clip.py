"""torch.nn.utils.clip_grad_norm_ / clip_grad_value_ on optkern's deterministic fused kernels."""

from __future__ import annotations

import torch

from .. import clip as _clip
from . import _views


def _grads(parameters) -> list:
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    for i, g in enumerate(grads):
        _views.check_tensor(g, f"parameters[{i}].grad")
    return grads


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None) -> torch.Tensor:
    """torch.nn.utils.clip_grad_norm_: scale the gradients in place so their total norm is at most
    ``max_norm``; returns the total norm before clipping as a 0-d tensor (the grads' dtype and device).

    The norm is accumulated in float64 with a fixed blocking (the same bits for any thread count);
    on CUDA it runs on torch's current stream without a host synchronization. ``foreach`` is
    accepted for signature compatibility (every call is fused). Gradients of several dtypes or
    devices are handled by torch's own implementation.
    """
    grads = _grads(parameters)
    if not grads:
        return torch.tensor(0.0)
    kinds = {(g.device, g.dtype) for g in grads}
    if len(kinds) > 1:
        return torch.nn.utils.clip_grad_norm_(parameters, max_norm, norm_type, error_if_nonfinite, foreach)
    g0 = grads[0]
    with _views.on_stream(g0):
        total = _clip.clip_grad_norm_(_views.views(grads), max_norm, norm_type, error_if_nonfinite)
    if g0.device.type == "cpu":
        return torch.tensor(total, dtype=g0.dtype)
    return torch.from_dlpack(total).reshape(()).to(g0.dtype)


def clip_grad_value_(parameters, clip_value, foreach=None) -> None:
    """torch.nn.utils.clip_grad_value_ on optkern's fused clamp."""
    grads = _grads(parameters)
    kinds = {(g.device, g.dtype) for g in grads}
    if len(kinds) > 1:
        torch.nn.utils.clip_grad_value_(parameters, clip_value, foreach)
        return
    if grads:
        with _views.on_stream(grads[0]):
            _clip.clip_grad_value_(_views.views(grads), clip_value)
