"""optkern.torch.hessian_operator: the loss Hessian (or Gauss-Newton matrix) of a torch model as an
optkern curvature operator.

PyHessian's measurements (top eigenvalues, trace, spectral density) for any torch model, on
optkern's estimators (:mod:`optkern.hessian`: block Lanczos, Hutch++, stochastic Lanczos
quadrature), and the operator Newton-CG solves with: the products are exact, by double backward
(Pearlmutter's trick as torch's autograd does it; the Gauss-Newton product ``J^T H_z J v`` by three
backward passes through the kept graph, ``J v`` by the double-vjp trick), the vectors NumPy arrays
for CPU params and CuPy arrays for CUDA ones, passed to torch zero-copy.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..hessian.operators import CurvatureOperator, _operator_class
from . import _views


def hessian_operator(
    loss_fn, params, batches=None, kind: str = "hessian", name: str | None = None
) -> CurvatureOperator:
    """The ``n x n`` Hessian of a loss in ``params`` (n: their total size) as a CurvatureOperator,
    or (``kind="ggn"``) its generalized Gauss-Newton matrix ``J^T H_z J``.

    Args:
      loss_fn: without ``batches``, ``loss_fn()`` returns the (scalar) loss tensor; its gradient
        graph is built once, here, and every product is one double backward through it (the
        operator is the Hessian at the params' values now; make a new one after changing them).
        With ``batches`` (an iterable of tuples, e.g. a list of ``(x, y)`` or a re-iterable
        DataLoader), ``loss_fn(*batch)`` returns one batch's mean loss and a product is the average
        of the batches' products weighted by their sizes (the first entry's ``len``; a dict's first
        value's; 1 for a scalar; an empty batch is skipped): the Hessian
        of the mean loss over all samples, one forward and two backward passes per batch and
        product, at the params' values when the product is taken.
      params: the tensors to differentiate in (``model.parameters()``; requiring grad), of one
        float dtype (float32/float64) and one device. Their order is the operator's: the vectors
        are the params flattened and concatenated.
      kind: ``"hessian"``, or ``"ggn"``: ``loss_fn`` then returns ``(outputs, loss)``, the loss
        computed from the outputs (``z = model(x); return z, F.cross_entropy(z, y)``), and the
        operator is ``J^T H_z J`` (J: the outputs' Jacobian in the params, H_z: the loss's Hessian
        in the outputs) -- positive semi-definite for a loss convex in the outputs, the Hessian
        itself for a model linear in its params.

    Params the loss does not depend on get zero rows and columns. Errors (TypeError / ValueError)
    name ``loss_fn``, ``params[i]``, ``batches`` or ``kind``; a non-finite loss is refused.

    Model mode: ``loss_fn`` runs the model as it is. With ``batches``, every product re-runs the
    forward pass (an estimator makes tens to hundreds of products), so a model in ``train()`` mode
    updates its batch norm running statistics (``running_mean``, ``running_var``,
    ``num_batches_tracked``) on each product as a training step would, and dropout draws new masks
    (as with ``torch.autograd.functional.hvp`` or PyHessian); without ``batches`` the forward pass
    runs once, here. The operator is the Hessian of the loss in the mode it runs in: call
    ``model.eval()`` first for the eval-mode loss (and unchanged buffers), or save the buffers
    (``{k: b.clone() for k, b in model.named_buffers()}``) and restore them after the estimates
    when the train-mode Hessian is wanted.
    """
    if not callable(loss_fn):
        raise TypeError(f"loss_fn: expected a callable returning the loss tensor, got {type(loss_fn).__name__}")
    if kind not in _PRODUCTS:
        raise ValueError(f"kind: expected 'hessian' or 'ggn', got {kind!r}")
    make = _PRODUCTS[kind]
    params = _params(params)
    p0 = params[0]
    n = sum(p.numel() for p in params)
    xp = np if p0.is_cpu else _cupy()
    if batches is None:
        product = make(loss_fn, (), params, "loss_fn()")

        def hvp(v):
            return _flat(product(_split(v, params)), params)

    else:
        if not hasattr(batches, "__iter__"):
            raise TypeError(f"batches: expected an iterable of tuples (a DataLoader), got {type(batches).__name__}")

        def hvp(v):
            return _batched(make, loss_fn, batches, params, _split(v, params))

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

    # (the products checked as from_hvp's, named loss_fn: a finite loss whose Hessian is not -- |w|^1.5
    # at 0 -- was refused naming from_hvp's `fn` / `into`, which the caller never passed)
    dtype = _views._NAMES[p0.dtype]
    return _operator_class(xp)(matvec, n, dtype, xp, None, name or f"torch-{kind}", into, check=("loss_fn",) * 3)


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
        _views.check_tensor(p, f"params[{i}]", _views._FLOATS, "in a Hessian operator")
        if not p.requires_grad:
            raise ValueError(f"params[{i}]: does not require grad (nothing to differentiate in)")
        if any(q is p for q in params[:i]):
            raise ValueError(f"params[{i}]: the same tensor as an earlier entry")
    names = [f"params[{i}]" for i in range(len(params))]
    _views.check_one_kind(params, names, "the operator's vectors are all params flattened: one dtype, one device")
    return params


def _call(loss_fn, args: tuple):
    with torch.enable_grad():
        return loss_fn(*args)


def _checked_loss(loss, what: str) -> torch.Tensor:
    """``loss`` (what ``what`` returned), checked: a finite real scalar tensor with a graph."""
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or loss.is_complex():
        kind = f"a tensor of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise TypeError(f"loss_fn: {what} must return a real scalar tensor, got {kind}")
    if not loss.requires_grad:
        raise ValueError(f"loss_fn: {what} returned a loss that does not depend on the params (no graph)")
    value = float(loss.detach())
    if not math.isfinite(value):
        raise ValueError(f"loss_fn: {what} returned a non-finite loss ({value})")
    with torch.enable_grad():  # (the caller may run under no_grad: an optimizer's step)
        return loss.reshape(())


def _grads_of(outputs, inputs, **kw) -> list:
    """``torch.autograd.grad`` with ``allow_unused``; an input the outputs do not reach gets None."""
    with torch.enable_grad():
        return list(torch.autograd.grad(outputs, inputs, allow_unused=True, **kw))


def _live(ts: list) -> list:
    """The indices of ``ts`` that carry a graph (None, or a constant: a zero derivative)."""
    return [i for i, t in enumerate(ts) if t is not None and t.requires_grad]


def _hessian_product(loss_fn, args: tuple, params: list, what: str):
    """``vs -> H v`` (per param; None: zero) by double backward through the kept gradient graph."""
    loss = _checked_loss(_call(loss_fn, args), what)
    grads = _grads_of(loss, params, create_graph=True)
    live = _live(grads)

    def product(vs: list) -> list:
        if not live:
            return [None] * len(params)
        return _grads_of([grads[i] for i in live], params, grad_outputs=[vs[i] for i in live], retain_graph=True)

    return product


def _ggn_product(loss_fn, args: tuple, params: list, what: str):
    """``vs -> J^T H_z J v``: ``J v`` by the double-vjp trick (the vjp ``J^T u`` is linear in a dummy
    ``u``; its vjp with ``v`` is ``J v``), ``H_z`` by double backward in the outputs, ``J^T`` by one
    more backward; the graphs are kept for the next product."""
    out = _call(loss_fn, args)
    if not isinstance(out, tuple) or len(out) != 2 or not isinstance(out[0], torch.Tensor):
        raise TypeError(f"loss_fn: {what} must return (outputs, loss) for kind='ggn', got {type(out).__name__}")
    z, loss = out[0], _checked_loss(out[1], what)
    if not z.requires_grad or z.dtype is not params[0].dtype:
        raise ValueError(f"loss_fn: {what}'s outputs must depend on the params and be {params[0].dtype}, got {z.dtype}")
    (gz,) = _grads_of(loss, [z], create_graph=True)
    if gz is None:
        raise ValueError(f"loss_fn: {what}'s loss does not depend on its outputs")
    with torch.enable_grad():
        u = torch.zeros_like(z, requires_grad=True)
    jtu = _grads_of(z, params, grad_outputs=u, create_graph=True)
    live = _live(jtu)

    def product(vs: list) -> list:
        if not live:
            return [None] * len(params)
        (jv,) = _grads_of([jtu[i] for i in live], [u], grad_outputs=[vs[i] for i in live], retain_graph=True)
        if jv is None or not gz.requires_grad:  # (a loss linear in the outputs: H_z = 0)
            return [None] * len(params)
        (hjv,) = _grads_of(gz, [z], grad_outputs=jv, retain_graph=True)
        if hjv is None:
            return [None] * len(params)
        return _grads_of(z, params, grad_outputs=hjv, retain_graph=True)

    return product


_PRODUCTS = {"hessian": _hessian_product, "ggn": _ggn_product}


def _split(v: torch.Tensor, params: list) -> list:
    """The flat vector ``v`` as views shaped like ``params``."""
    vs, o = [], 0
    for p in params:
        vs.append(v[o : o + p.numel()].view(p.shape))
        o += p.numel()
    return vs


def _flat(hv: list, params: list) -> list:
    """A product's per-param parts, flat, zeros where a part is None."""
    return [(torch.zeros_like(p) if h is None else h).reshape(-1) for p, h in zip(params, hv)]


def _size(batch: tuple) -> int:
    """A batch's weight: the ``len`` of its first entry (of a dict's first value: a DataLoader over
    a dataset of dicts collates each key along the samples; its own ``len`` counts keys), 1 for an
    entry without one (a number, a 0-d tensor or array, whose ``len`` raises TypeError)."""
    first: Any = batch[0] if len(batch) else None
    if isinstance(first, Mapping) and len(first):
        first = next(iter(first.values()))
    if not hasattr(first, "__len__"):
        return 1
    try:
        return len(first)
    except TypeError:
        return 1


def _batched(make, loss_fn, batches, params: list, vs: list) -> list:
    """The batches' products averaged, weighted by batch size (flat parts). An empty batch weighs
    nothing and is skipped (its mean loss is NaN: it was refused as a non-finite loss)."""
    total, count = None, 0
    for b, batch in enumerate(batches):
        if not isinstance(batch, (tuple, list)):
            batch = (batch,)
        size = _size(batch)
        if size == 0:
            continue
        hv = _flat(make(loss_fn, tuple(batch), params, f"loss_fn(*batches[{b}])")(vs), params)
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
    """A NumPy / CuPy vector as a tensor over the same memory.

    A read-only NumPy vector (``matvec`` passes the caller's own array through when it already has
    the operator's dtype and layout) is only read here; torch's "not writable" UserWarning -- an
    error under ``-W error`` -- is silenced for it rather than copying the vector at every product.
    """
    if not isinstance(a, np.ndarray):
        return torch.from_dlpack(a)
    if a.flags.writeable:
        return torch.from_numpy(a)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)
        return torch.from_numpy(a)
