"""torch.nn.utils.clip_grad_norm_ / clip_grad_value_ on optkern's deterministic fused kernels."""

from __future__ import annotations

import contextlib
import math
import numbers
import re
import sys

import numpy as np
import torch

from .. import clip as _clip
from .._foreign import zero_d_real
from ..optim._given import _bump_torch_versions
from . import _inference, _views


def _params(parameters) -> list:
    """``parameters`` as a list (a generator such as ``model.parameters()`` is read once here, so
    that torch's implementation, where it takes over, still sees every tensor)."""
    if isinstance(parameters, torch.Tensor):
        return [parameters]
    try:
        params = list(parameters)
    except TypeError:
        raise TypeError(
            f"parameters: expected a tensor or an iterable of tensors, got {type(parameters).__name__}"
        ) from None
    for i, p in enumerate(params):
        if not isinstance(p, torch.Tensor):
            raise TypeError(f"parameters[{i}]: expected a torch.Tensor, got {type(p).__name__}")
    return params


def _grads(params: list, real_view: bool = False) -> list | None:
    """The grads of ``params`` (None skipped), checked; None when torch's own implementation
    should run instead: grads of several devices or dtypes, or of a dtype optkern does not
    update (float16, bfloat16; complex ones unless ``real_view``: what is clipped is then their
    real views, with the real grads of their dtype, except conjugated views). Outside inference
    mode an inference grad is refused first, as torch's clipping refuses it (which, on torch's
    path, may have written others first)."""
    _inference.refuse_tensors([p.grad for p in params], "parameters[{}].grad".format)
    grads = [p.grad for p in params if p.grad is not None]
    kinds = {(g.device, g.dtype) for g in grads}
    if real_view and any(dt.is_complex for _, dt in kinds):
        if any(g.is_conj() for g in grads):
            return None
        kinds = {(d, _views.real_dtype(dt)) for d, dt in kinds}
    if len(kinds) > 1 or any(dt not in _views._FLOATS for _, dt in kinds):
        return None
    for i, p in enumerate(params):
        if p.grad is not None:
            _views.check_tensor(p.grad, f"parameters[{i}].grad")
    return grads


_GRAD_NAME = re.compile(r"\bgrads(?:\[(\d+)\])?(?=[\[:\s])")


@contextlib.contextmanager
def _named(params: list):
    """Errors of optkern.clip name ``grads[k]``, the k-th grad it was handed (None grads left out)
    and ``grads``, which this function has no argument called: named here as its caller knows them,
    ``parameters[i].grad`` and ``parameters`` ("grads[1]: contains non-finite values" was
    parameters[2].grad behind a parameter without a grad)."""
    try:
        yield
    except (TypeError, ValueError) as e:
        index = [i for i, p in enumerate(params) if p.grad is not None]

        def name(m: re.Match) -> str:
            k = m.group(1)
            return "parameters" if k is None else f"parameters[{index[int(k)]}].grad"

        msg = _GRAD_NAME.sub(name, str(e))
        if msg == str(e):
            raise
        raise type(e)(msg) from None


def _number(v):
    """A one-element real tensor or a 0-d real NumPy array as the number it holds (torch reads
    ``max_norm``, ``norm_type`` and ``clip_value`` with ``float()``: both pass; a tensor's is one read,
    a host sync on a GPU); anything else as it is, for the checks to name."""
    if isinstance(v, torch.Tensor) and v.numel() == 1 and not v.is_complex() and v.dtype is not torch.bool:
        return v.item()
    if zero_d_real(v):
        return v[()]
    return v


def _order(norm_type):
    """``norm_type`` as a number where it is a string ``float()`` reads, as torch's
    ``clip_grad_norm_`` reads it (``"-inf"`` and ``"2"`` were TypeErrors here, where torch runs
    them); one it cannot read is refused naming ``norm_type`` (torch's bare ValueError does not).
    Anything else as it is (``_number``'s to read)."""
    if not isinstance(norm_type, str):
        return _number(norm_type)
    try:
        return float(norm_type)
    except ValueError:
        raise ValueError(f"norm_type: expected a number, got the string {norm_type!r}") from None


def _torch_only_order(norm_type) -> bool:
    """Whether ``norm_type`` is an order torch's ``vector_norm`` takes but optkern's kernels do not
    (0 <= p < 1, a negative p, -inf): torch's own implementation runs it, as a drop-in must (they
    were refused with a ValueError). NaN and non-numbers stay optkern's to refuse."""
    if isinstance(norm_type, bool) or not isinstance(norm_type, numbers.Real):
        return False
    p = float(norm_type)
    return p < 1.0 and not math.isnan(p)


def _is_two(v) -> bool:
    """Whether ``norm_type`` is 2 (the one order whose norm of a complex vector, torch's ``|z|``,
    is its real view's)."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and float(v) == 2.0


def _is_pos_inf(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and float(v) == math.inf


def _refuse_empty_inf(tensors: list, norm_type, foreach, name) -> None:
    """torch's RuntimeError where ``norm_type`` is inf and one of ``tensors`` has no elements (their
    max has no identity: torch's ``_foreach_norm``, or ``linalg.vector_norm`` with ``foreach=False``,
    refuse it, whatever the other tensors hold), before anything is written; ``name(i)``: how the
    i-th is named. (optkern's kernels took the empty max as 0 and clipped by the others' norm.)"""
    if not _is_pos_inf(norm_type):
        return
    for i, t in enumerate(tensors):
        if t is not None and t.numel() == 0:
            what = (
                "linalg.vector_norm cannot compute the inf"
                if foreach is False
                else "_foreach_norm cannot compute the infinity"
            )
            raise RuntimeError(
                f"{name(i)}: {what} norm on an empty tensor because the operation does not have an identity"
            )


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None) -> torch.Tensor:
    """torch.nn.utils.clip_grad_norm_: scale the gradients in place so their total norm is at most
    ``max_norm``; returns the total norm before clipping as a 0-d tensor (the grads' dtype and device).

    The norm is accumulated in float64 with a fixed blocking (the same bits for any thread count);
    on CUDA it runs on torch's current stream without a host synchronization. ``foreach`` is
    accepted for signature compatibility (every call is fused). Gradients of several dtypes or
    devices, or of dtypes other than float32 / float64, and orders below 1 (0, 0.5, -inf), are
    handled by torch's own implementation; complex gradients' 2-norm is their real views' (torch's
    ``|z|``), other orders of them are torch's. ``max_norm=inf`` (torch's idiom for measuring the norm
    without clipping) leaves finite-norm gradients as they are and, as torch, makes them NaN when
    the norm is infinite (``inf / inf``). A string ``norm_type`` is read with ``float()``, as torch
    reads it (``"2"``, ``"-inf"``). Finite float32 gradients whose norm overflows float32 are clipped
    by it (taken in float64: torch's inf norm zeroes them) and the norm returned is inf, as torch's;
    with ``error_if_nonfinite`` that is refused before anything is written, as torch refuses it.
    """
    params = _params(parameters)
    max_norm, norm_type = _number(max_norm), _order(norm_type)
    grads = _grads(params, real_view=_is_two(norm_type))
    if grads is None or _torch_only_order(norm_type):
        return torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type, error_if_nonfinite, foreach)
    _refuse_empty_inf([p.grad for p in params], norm_type, foreach, "parameters[{}].grad".format)
    if not grads:
        return torch.tensor(0.0)
    # optkern.clip_grad_norm_ refuses an infinite max_norm (its contract); the largest float clips
    # every finite norm by min(1, huge) = 1 too, and torch's NaN for an infinite norm comes after
    unbounded = _is_pos_inf(max_norm)
    limit = sys.float_info.max if unbounded else max_norm
    g0 = grads[0]
    dtype = _views.real_dtype(g0.dtype)  # (torch's norm of complex grads is real)
    # (the norm is returned in that dtype: one finite in float64 may be inf there, which torch refuses)
    args = (limit, norm_type, error_if_nonfinite, None, None, _returned(dtype))
    if g0.device.type == "cpu":
        with _named(params):
            total = _clip._clip_grad_norm(_views.views(grads), *args)
        _bump_torch_versions(grads)  # (written through views: as torch's mul_, a saved graph refuses them)
        if unbounded and total == math.inf:
            for g in grads:
                g.fill_(complex(math.nan, math.nan) if g.is_complex() else math.nan)  # torch: g * (inf / inf)
        return torch.tensor(total, dtype=dtype)
    with _views.on_stream(g0), _named(params):
        total = _clip._clip_grad_norm(_views.views(grads), *args)
        _bump_torch_versions(grads)
        # (taken on the stream that wrote it: no cross-stream wait is asked of CuPy)
        norm = torch.from_dlpack(total).reshape(())
        if unbounded:  # on the device, without a host synchronization
            coef = torch.where(torch.isposinf(norm), math.nan, 1.0)
            torch._foreach_mul_(grads, coef)
        return norm.to(dtype)


def _returned(dtype: torch.dtype):
    """The NumPy dtype of a norm returned as a ``dtype`` tensor, float32's (float64's is as
    computed): ``error_if_nonfinite`` refuses a norm it holds as inf, as torch's does."""
    return np.float32 if _views.real_dtype(dtype) is torch.float32 else None


def clip_grad_value_(parameters, clip_value, foreach=None) -> None:
    """torch.nn.utils.clip_grad_value_ on optkern's fused clamp (torch's own for mixed or
    other-dtype gradients, as ``clip_grad_norm_``)."""
    params = _params(parameters)
    grads = _grads(params)
    clip_value = _number(clip_value)
    if grads is None:
        torch.nn.utils.clip_grad_value_(params, clip_value, foreach)
        return
    if _is_pos_inf(clip_value):  # clamping to [-inf, inf] changes nothing (NaN stays NaN), as in torch
        return
    if grads:
        with _views.on_stream(grads[0]), _named(params):
            _clip.clip_grad_value_(_views.views(grads), clip_value)
        _bump_torch_versions(grads)


def _tensors(tensors) -> list:
    """``tensors`` (get_total_norm's: the tensors themselves, not their grads) as a list, each checked."""
    if isinstance(tensors, torch.Tensor):
        return [tensors]
    try:
        tensors = list(tensors)
    except TypeError:
        raise TypeError(f"tensors: expected a tensor or an iterable of tensors, got {type(tensors).__name__}") from None
    for i, t in enumerate(tensors):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"tensors[{i}]: expected a torch.Tensor, got {type(t).__name__}")
    return tensors


@contextlib.contextmanager
def _named_tensors():
    """optkern.clip's ``grads[k]`` / ``grads`` as get_total_norm's caller knows them: ``tensors[k]``."""
    try:
        yield
    except (TypeError, ValueError) as e:
        msg = re.sub(r"\bgrads\b", "tensors", str(e))
        if msg == str(e):
            raise
        raise type(e)(msg) from None


def get_total_norm(tensors, norm_type=2.0, error_if_nonfinite=False, foreach=None) -> torch.Tensor:
    """torch.nn.utils.get_total_norm (torch >= 2.6): the total norm of ``tensors`` as one vector, a
    0-d tensor of their dtype and device, by optkern.clip's deterministic kernels (the norm
    :func:`clip_grad_norm_` clips by). ``foreach`` is accepted for compatibility. Tensors of several
    dtypes or devices, or of dtypes other than float32 / float64, tensors that autograd records
    (the norm would be differentiable in torch), and orders below 1 run torch's own implementation.
    A non-finite norm with ``error_if_nonfinite`` raises optkern's ``NonFiniteNormError``, a
    RuntimeError as torch's, naming the first tensor holding a NaN or inf."""
    tensors, norm_type = _tensors(tensors), _order(norm_type)
    kinds = {(t.device, t.dtype) for t in tensors}
    recorded = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    if len(kinds) > 1 or any(dt not in _views._FLOATS for _, dt in kinds) or recorded or _torch_only_order(norm_type):
        return torch.nn.utils.get_total_norm(tensors, norm_type, error_if_nonfinite, foreach)
    if not tensors:
        return torch.tensor(0.0)
    for i, t in enumerate(tensors):
        _views.check_tensor(t, f"tensors[{i}]")
    _refuse_empty_inf(tensors, norm_type, foreach, "tensors[{}]".format)
    t0 = tensors[0]
    if t0.device.type == "cpu":
        with _named_tensors():
            returned = _returned(t0.dtype)
            total = _clip._get_total_norm(_views.views(tensors), norm_type, error_if_nonfinite, None, returned)
        return torch.tensor(total, dtype=t0.dtype)
    with _views.on_stream(t0), _named_tensors():
        total = _clip._get_total_norm(_views.views(tensors), norm_type, error_if_nonfinite, None, _returned(t0.dtype))
        return torch.from_dlpack(total).reshape(()).to(t0.dtype)


def clip_grads_with_norm_(parameters, max_norm, total_norm, foreach=None) -> None:
    """torch.nn.utils.clip_grads_with_norm_ (torch >= 2.6): multiply every gradient by
    ``min(1, max_norm / (total_norm + 1e-6))`` in place, rounded as torch rounds it in
    ``total_norm``'s dtype, on optkern's fused kernel (on CUDA without a host synchronization).
    ``total_norm`` is a 1-element tensor (what :func:`get_total_norm` returns). Gradients of several
    dtypes or devices or of other dtypes, a ``total_norm`` of another dtype or device than theirs
    or one autograd records, run torch's own implementation. ``max_norm`` >= 0 (inf: nothing
    clipped, NaN gradients for an infinite norm, as torch)."""
    params = _params(parameters)
    max_norm = _number(max_norm)
    if not isinstance(total_norm, torch.Tensor):
        raise TypeError(f"total_norm: expected a torch.Tensor, got {type(total_norm).__name__}")
    if total_norm.numel() != 1:
        raise ValueError(f"total_norm: expected one element, got shape {tuple(total_norm.shape)}")
    grads = _grads(params)
    own = grads is not None and (
        not grads or (total_norm.dtype, total_norm.device) == (grads[0].dtype, grads[0].device)
    )
    if not own or (torch.is_grad_enabled() and total_norm.requires_grad):
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, total_norm, foreach)
        return
    if not grads:
        _clip.clip_grads_with_norm_([], max_norm, 0.0)  # (max_norm still checked)
        return
    g0 = grads[0]
    if g0.device.type == "cpu":
        with _named(params):
            _clip.clip_grads_with_norm_(_views.views(grads), max_norm, total_norm.item())
        _bump_torch_versions(grads)
        return
    with _views.on_stream(g0), _named(params):
        _clip.clip_grads_with_norm_(_views.views(grads), max_norm, _views.view(total_norm.detach().reshape(1)))
    _bump_torch_versions(grads)
