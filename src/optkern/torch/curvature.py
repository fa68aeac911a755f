"""optkern.torch.hessian_operator: the loss Hessian of a torch model as an optkern curvature operator.

PyHessian's measurements (top eigenvalues, trace, spectral density) for any torch model, on
optkern's estimators (:mod:`optkern.hessian`: block Lanczos, Hutch++, stochastic Lanczos
quadrature): the operator's products are exact Hessian-vector products by double backward
(Pearlmutter's trick as torch's autograd does it), its vectors NumPy arrays for CPU params and
CuPy arrays for CUDA ones, passed to torch zero-copy.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..hessian.operators import CurvatureOperator, from_hvp
from . import _views


def hessian_operator(loss_fn, params, batches=None, name: str = "torch-hessian") -> CurvatureOperator:
    """The ``n x n`` Hessian of a loss in ``params`` (n: their total size) as a CurvatureOperator.

    Args:
      loss_fn: without ``batches``, ``loss_fn()`` returns the (scalar) loss tensor; its gradient
        graph is built once, here, and every product is one double backward through it (the
        operator is the Hessian at the params' values now; make a new one after changing them).
        With ``batches`` (an iterable of tuples, e.g. a list of ``(x, y)`` or a re-iterable
        DataLoader), ``loss_fn(*batch)`` returns one batch's mean loss and a product is the average
        of the batches' products weighted by their sizes (the first entry's ``len``): the Hessian
        of the mean loss over all samples, one forward and two backward passes per batch and
        product, at the params' values when the product is taken.
      params: the tensors to differentiate in (``model.parameters()``; requiring grad), of one
        float dtype (float32/float64) and one device. Their order is the operator's: the vectors
        are the params flattened and concatenated.

    Params the loss does not depend on get zero rows and columns. Errors (TypeError / ValueError)
    name ``loss_fn``, ``params[i]`` or ``batches``; a non-finite loss is refused.
    """
    if not callable(loss_fn):
        raise TypeError(f"loss_fn: expected a callable returning the loss tensor, got {type(loss_fn).__name__}")
    params = _params(params)
    p0 = params[0]
    n = sum(p.numel() for p in params)
    xp = np if p0.is_cpu else _cupy()
    if batches is None:
        grads = _grad_graph(loss_fn, (), params, "loss_fn()")

        def hvp(v):
            return _hv(grads, params, v)

    else:
        if not hasattr(batches, "__iter__"):
            raise TypeError(f"batches: expected an iterable of tuples (a DataLoader), got {type(batches).__name__}")

        def hvp(v):
            return _batched_hv(loss_fn, batches, params, v)

    def into(v, out):
        # (torch.from_dlpack orders torch's stream after CuPy's for v and out; the sync orders the
        # estimator's next CuPy work after the product)
        torch.cat(hvp(_tensor(v)), out=_tensor(out))
        if p0.is_cuda:
            torch.cuda.current_stream(p0.device).synchronize()

    def matvec(v):
        out = xp.empty(n, dtype=v.dtype)
        into(v, out)
        return out

    return from_hvp(matvec, n, _views._NAMES[p0.dtype], xp=xp, name=name, into=into)


def _cupy():
    import cupy

    return cupy


def _params(params) -> list:
    """``params`` as a list of float32/float64 tensors requiring grad, one dtype and device."""
    if isinstance(params, torch.Tensor):
        params = [params]
    try:
        params = list(params)
    except TypeError:
        raise TypeError(f"params: expected an iterable of tensors, got {type(params).__name__}") from None
    if not params:
        raise ValueError("params: got an empty list")
    for i, p in enumerate(params):
        _views.check_tensor(p, f"params[{i}]")
        if not p.requires_grad:
            raise ValueError(f"params[{i}]: does not require grad (nothing to differentiate in)")
        if p.dtype is not params[0].dtype or p.device != params[0].device:
            raise TypeError(
                f"params[{i}]: {p.dtype} on {p.device}, params[0] is {params[0].dtype} on {params[0].device} "
                "(the operator's vectors are all params flattened: one dtype, one device)"
            )
        if any(q is p for q in params[:i]):
            raise ValueError(f"params[{i}]: the same tensor as an earlier entry")
    return params


def _loss(loss_fn, args: tuple, what: str) -> torch.Tensor:
    """``loss_fn(*args)`` (with grad enabled), checked: a finite real scalar tensor with a graph."""
    with torch.enable_grad():
        loss = loss_fn(*args)
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or loss.is_complex():
        kind = f"a tensor of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise TypeError(f"loss_fn: {what} must return a real scalar tensor, got {kind}")
    if not loss.requires_grad:
        raise ValueError(f"loss_fn: {what} returned a loss that does not depend on the params (no graph)")
    value = float(loss.detach())
    if not math.isfinite(value):
        raise ValueError(f"loss_fn: {what} returned a non-finite loss ({value})")
    return loss.reshape(())


def _grad_graph(loss_fn, args: tuple, params: list, what: str) -> list:
    """The loss's gradient in each param, with its graph (None where it is zero: a param the loss
    does not use, or one it is linear in)."""
    loss = _loss(loss_fn, args, what)
    with torch.enable_grad():
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    return [g if g is not None and g.requires_grad else None for g in grads]


def _hv(grads: list, params: list, v: torch.Tensor) -> list:
    """``H v`` by double backward through ``grads`` (kept for the next product), per param."""
    vs, o = [], 0
    for p in params:
        vs.append(v[o : o + p.numel()].view(p.shape))
        o += p.numel()
    live = [i for i, g in enumerate(grads) if g is not None]
    hv: tuple = (None,) * len(params)
    if live:
        hv = torch.autograd.grad(
            [grads[i] for i in live], params, grad_outputs=[vs[i] for i in live], retain_graph=True, allow_unused=True
        )
    return [(torch.zeros_like(p) if h is None else h).reshape(-1) for p, h in zip(params, hv)]


def _batched_hv(loss_fn, batches, params: list, v: torch.Tensor) -> list:
    """The batches' products ``H_b v`` averaged, weighted by batch size."""
    total, count = None, 0
    for b, batch in enumerate(batches):
        if not isinstance(batch, (tuple, list)):
            batch = (batch,)
        size = len(batch[0]) if len(batch) and hasattr(batch[0], "__len__") else 1
        hv = _hv(_grad_graph(loss_fn, tuple(batch), params, f"loss_fn(*batches[{b}])"), params, v)
        if total is None:
            total = [h * size for h in hv]
        else:
            for t, h in zip(total, hv):
                t.add_(h, alpha=size)
        count += size
    if total is None or count == 0:
        raise ValueError("batches: got no batches (or only empty ones)")
    return [t / count for t in total]


def _tensor(a) -> torch.Tensor:
    """A NumPy / CuPy vector as a tensor over the same memory."""
    return torch.from_numpy(a) if isinstance(a, np.ndarray) else torch.from_dlpack(a)
