"""Gradient clipping over lists of arrays, in place (torch.nn.utils.clip_grad_*_ semantics)."""
from __future__ import annotations

import math

import numpy as np

from . import _backend

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def _norm_type(norm_type) -> float:
    if isinstance(norm_type, str) and norm_type.lower() in ("inf", "+inf"):
        return math.inf
    if isinstance(norm_type, bool) or not isinstance(norm_type, (int, float, np.floating, np.integer)):
        raise TypeError(f"norm_type: expected a number or 'inf', got {type(norm_type).__name__}")
    p = float(norm_type)
    if not (p >= 1.0):
        raise ValueError(f"norm_type: must be >= 1 or inf, got {p}")
    return p


def _norm_out(out, like, xp):
    """The caller's 1-element float64 buffer for the norm, checked."""
    if type(out) is not type(like):
        raise TypeError(f"out: expected a {type(like).__module__}.{type(like).__name__} like grads, "
                        f"got {type(out).__name__}")
    if out.dtype != np.float64 or out.size != 1 or not out.flags.c_contiguous:
        raise ValueError(f"out: expected a contiguous 1-element float64 array, got {out.dtype} of shape "
                         f"{tuple(out.shape)}")
    if not out.flags.writeable:
        raise ValueError("out: array is read-only")
    if xp is not np and out.device != like.device:
        raise ValueError(f"out: on device {out.device.id}, grads on device {like.device.id}")
    return out.reshape(1)


def clip_grad_norm_(grads, max_norm, norm_type=2.0, error_if_nonfinite=False, out=None):
    """Scale ``grads`` in place so that their total norm is at most ``max_norm``.

    The total norm is ``(sum_i ||g_i||_p^p)^(1/p)`` over every array (``max |g|`` for
    ``norm_type=inf``), accumulated in float64 with a fixed blocking (bitwise the same for
    any thread count). Every gradient is multiplied by ``min(1, max_norm / (norm + 1e-6))``
    (NaN when the norm is NaN, as in PyTorch).

    Args:
      grads: an array or a list of arrays (NumPy or CuPy, one dtype).
      max_norm: the largest allowed norm, >= 0.
      norm_type: p >= 1, or ``inf`` / ``"inf"``.
      error_if_nonfinite: raise ValueError (naming the first offending array) instead of
        clipping when the total norm is NaN or infinite.
      out: optional 1-element float64 array (the grads' kind and device) that receives the
        norm. On the GPU pass one to capture the call in a CUDA graph: the buffer must
        outlive the graph, which a fresh allocation per call does not.

    Returns:
      The total norm before clipping: a Python float for NumPy input; for CuPy input a
      1-element float64 CuPy array (``out`` when given; no host synchronisation, unless
      ``error_if_nonfinite``).
    """
    grads = _backend.as_list(grads, "grads")
    mod = _backend.backend(("grads", grads))
    max_norm = _backend.nonnegative("max_norm", max_norm)
    p = _norm_type(norm_type)
    if not grads:
        return 0.0
    xp = _backend.array_module(grads[0])
    buf = xp.empty(1, dtype=np.float64) if out is None else _norm_out(out, grads[0], xp)
    total = mod.grad_norm(grads, p, buf)
    if error_if_nonfinite:
        value = float(buf[0]) if total is None else total
        if not math.isfinite(value):
            flag = xp.empty(1, dtype=np.float64)
            for i, g in enumerate(grads):
                mod.all_finite([g], flag)
                if float(flag[0]) == 0.0:
                    raise ValueError(f"grads[{i}]: contains non-finite values; the total norm of order {p} "
                                     f"is {value} (pass error_if_nonfinite=False to clip anyway)")
            raise ValueError(f"grads: the total norm of order {p} is {value}")
    mod.clip_scale_(grads, max_norm, buf)
    return (buf if out is None else out) if total is None else total


def clip_grad_value_(grads, clip_value) -> None:
    """Clamp every gradient element to ``[-clip_value, clip_value]`` in place (NaN stays NaN).

    Args:
      grads: an array or a list of arrays (NumPy or CuPy, one dtype).
      clip_value: >= 0.
    """
    grads = _backend.as_list(grads, "grads")
    mod = _backend.backend(("grads", grads))
    clip_value = _backend.nonnegative("clip_value", clip_value)
    mod.clamp_(grads, clip_value)
