"""Losses of the built-in MLP: softmax cross-entropy (native, fused) and MSE.

Softmax cross-entropy with label smoothing ``eps`` and confidence penalty
``beta`` (Pereyra et al. 2017): per row, with ``p = softmax(z)`` and
``q = (1 - eps) one_hot(y) + eps / C``,

    l = -sum_c q_c log p_c - beta * H(p),    H(p) = -sum_c p_c log p_c.

The native kernels compute the loss, ``log p`` and ``dl/dz`` in one pass
over each row, and the R-forward ``R{dl/dz} = (d^2 l / dz^2) r``: the
product of the loss Hessian w.r.t. the logits with a direction ``r``, which
both the exact Hessian-vector product and the Gauss-Newton product need.
With ``beta = 0`` that Hessian is ``diag(p) - p p^T`` (PSD) whatever ``eps``.
"""

from __future__ import annotations

import numpy as np

from .. import _backend


def _labels(labels, n: int, c: int, xp, name: str = "labels"):
    """``labels`` checked as ``n`` integer class indices in ``[0, c)``, as a C-contiguous int64 array."""
    if not hasattr(labels, "dtype") or labels.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer array, got {getattr(labels, 'dtype', type(labels).__name__)}")
    if labels.shape != (n,):
        raise ValueError(f"{name}: expected shape ({n},), got {tuple(labels.shape)}")
    if n and labels.dtype == xp.uint64 and int(labels.max()) > _backend.INT64_MAX:
        raise ValueError(f"{name}: values must be in [0, {c}), got up to {int(labels.max())}")
    # (a misaligned view is copied too, on NumPy: the kernel reads aligned int64 only, and would
    # refuse it under its own name for the argument, not the caller's)
    y = np.require(labels, np.int64, ("C", "A")) if xp is np else xp.ascontiguousarray(labels, dtype=xp.int64)
    if n:
        lo, hi = xp.stack([y.min(), y.max()]).tolist()  # one transfer (on a GPU, one host sync)
        if lo < 0 or hi >= c:
            raise ValueError(f"{name}: values must be in [0, {c}), got [{lo}, {hi}]")
    return y


def _check_logits(logits) -> None:
    _backend.check_one_array(logits, "logits")


def _hp(label_smoothing, confidence_penalty):
    eps = _backend.in_range("label_smoothing", label_smoothing, 0.0, 1.0)
    beta = _backend.real("confidence_penalty", confidence_penalty)
    return eps, beta


def _in_dtype(a, **coefs):
    """``coefs`` checked finite in the float dtype of ``a`` (the kernel rounds them to it): float32
    logits with scale 1e39 wrote inf * 0 = NaN where the gradient or the R-operator is 0. Another
    dtype is left for the kernel to refuse, naming its array."""
    dt = getattr(a, "dtype", None)
    if dt not in (np.float32, np.float64):
        return list(coefs.values())
    return [_backend.finite_in(name, v, dt) for name, v in coefs.items()]


@_backend.on_array_device
def xent_forward(
    logits, labels, *, label_smoothing=0.0, confidence_penalty=0.0, scale=1.0, need_logp=True, need_grad=True
):
    """Per-row loss, log-probabilities and ``scale * dl/dlogits`` in one native pass.

    Args:
      logits: ``(N, C)`` float32/float64, C-contiguous.
      labels: ``(N,)`` integer class indices in ``[0, C)``.
      label_smoothing: ``eps`` in ``[0, 1]``.
      confidence_penalty: ``beta`` (finite; 0 disables it).
      scale: multiplies the gradient (``1 / N`` for a batch mean).
      need_logp, need_grad: whether to return those arrays (else None).

    Returns:
      ``(loss_rows (N,), logp (N, C) | None, dlogits (N, C) | None)``.
    """
    eps, beta = _hp(label_smoothing, confidence_penalty)
    scale = _backend.real("scale", scale)
    _check_logits(logits)
    beta, scale = _in_dtype(logits, confidence_penalty=beta, scale=scale)
    if not (isinstance(labels, np.ndarray) or _backend.is_cupy(labels)):
        raise TypeError(f"labels: expected an integer array, got {type(labels).__name__}")
    mod = _backend.backend(("logits", logits), ("labels", labels))
    xp = _backend.array_module(logits)
    if logits.ndim != 2:
        raise ValueError(f"logits: expected a 2-D array (rows, classes), got shape {tuple(logits.shape)}")
    n, c = logits.shape
    y = _labels(labels, n, c, xp)
    loss = xp.empty((n,), dtype=logits.dtype)
    logp = xp.empty_like(logits) if need_logp else None
    grad = xp.empty_like(logits) if need_grad else None
    mod.softmax_xent_fwd(logits, y, loss, logp, grad, eps, beta, scale)
    return loss, logp, grad


@_backend.on_array_device
def xent_rop(logp, r, *, confidence_penalty=0.0, scale=1.0):
    """``scale * (d^2 l / dz^2) r`` per row, from saved log-probabilities ``logp``.

    Label smoothing does not enter: it shifts the gradient by a constant.
    """
    beta = _backend.real("confidence_penalty", confidence_penalty)
    scale = _backend.real("scale", scale)
    beta, scale = _in_dtype(logp, confidence_penalty=beta, scale=scale)
    _backend.check_one_array(logp, "logp")
    _backend.check_one_array(r, "r")
    mod = _backend.backend(("logp", logp), ("r", r))
    xp = _backend.array_module(logp)
    out = xp.empty_like(logp)
    mod.softmax_xent_rop(logp, r, out, beta, scale)
    return out


def _row_mean(loss):
    """``loss.mean()`` of the per-row (or per-element) losses; NaN for none, as torch's ``cross_entropy``
    and ``mse_loss`` (NumPy's mean first warns "Mean of empty slice": an error under ``-W error``, the
    project's tests' setting)."""
    if loss.size == 0:
        return _backend.array_module(loss).full((), float("nan"), dtype=loss.dtype)[()]
    with np.errstate(over="ignore", invalid="ignore"):  # (a sum past the max: inf, as torch's, no warning)
        return loss.mean()


@_backend.on_array_device
def softmax_cross_entropy(logits, labels, *, label_smoothing=0.0, confidence_penalty=0.0, reduction="mean"):
    """Softmax cross-entropy of ``logits`` (N, C) against integer ``labels`` (N,).

    Matches ``torch.nn.functional.cross_entropy(logits, labels,
    label_smoothing=eps)`` for ``confidence_penalty = 0``; a penalty ``beta``
    subtracts ``beta * H(softmax(logits))`` per row.

    Args:
      reduction: ``"mean"`` (scalar), ``"sum"`` (scalar) or ``"none"`` (per row).
    """
    if not isinstance(reduction, str) or reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction: expected 'mean', 'sum' or 'none', got {reduction!r}")
    loss, _, _ = xent_forward(
        logits,
        labels,
        label_smoothing=label_smoothing,
        confidence_penalty=confidence_penalty,
        need_logp=False,
        need_grad=False,
    )
    if reduction == "none":
        return loss
    if reduction == "sum":
        with np.errstate(over="ignore", invalid="ignore"):  # (IEEE: inf past the max, without NumPy's warning)
            return loss.sum()
    return _row_mean(loss)


@_backend.on_array_device
def softmax_cross_entropy_grad(logits, labels, *, label_smoothing=0.0, confidence_penalty=0.0):
    """Mean loss and its gradient w.r.t. ``logits`` (one native pass)."""
    _check_logits(logits)
    n = logits.shape[0] if logits.ndim == 2 else 0
    loss, _, grad = xent_forward(
        logits,
        labels,
        label_smoothing=label_smoothing,
        confidence_penalty=confidence_penalty,
        scale=1.0 / max(n, 1),
        need_logp=False,
    )
    return _row_mean(loss), grad


@_backend.on_array_device
def mse_forward(out, target):
    """Mean squared error ``mean((out - target)^2)`` (torch's ``MSELoss``) and its gradient.

    Returns ``(loss, dloss/dout, h)`` where ``h = 2 / out.size`` is the
    (constant, diagonal) Hessian of the loss w.r.t. ``out``.
    """
    for name, a in (("out", out), ("y", target)):  # (the MLP's names: out its output, y the targets)
        if not (isinstance(a, np.ndarray) or _backend.is_cupy(a)):
            raise TypeError(f"{name}: expected a numpy or cupy array, got {_backend.type_name(a)}")
    if out.dtype not in (np.float32, np.float64):
        raise TypeError(f"out: expected float32 or float64, got {out.dtype}")
    if target.dtype.kind not in "iuf":  # (objects, complex, strings are not targets)
        raise TypeError(f"y: expected real numbers, got {target.dtype}")
    if _backend.is_cupy(out) != _backend.is_cupy(target):
        raise TypeError(f"y: expected a {_backend.type_name(out)} like out, got {_backend.type_name(target)}")
    if tuple(target.shape) != tuple(out.shape):
        raise ValueError(f"y: expected shape {tuple(out.shape)} for the MSE loss, got {tuple(target.shape)}")
    h = 2.0 / max(out.size, 1)
    # (IEEE as torch's mse_loss: inf past the max, NaN for inf - inf, without NumPy's warnings --
    # errors under -W error; the MLP's passes ran it under their own errstate, a direct call did not)
    with np.errstate(over="ignore", invalid="ignore"):
        r = out - target
        return _row_mean(r * r), r * h, h
