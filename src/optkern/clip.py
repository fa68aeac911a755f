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


def clip_grad_norm_(grads, max_norm, norm_type=2.0, error_if_nonfinite=False):
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

    Returns:
      The total norm before clipping: a Python float for NumPy input; for CuPy input a
      1-element float64 CuPy array (no host synchronisation, unless ``error_if_nonfinite``).
    """
    grads = _backend.as_list(grads, "grads")
    mod = _backend.backend(("grads", grads))
    max_norm = _backend.nonnegative("max_norm", max_norm)
    p = _norm_type(norm_type)
    if not grads:
        return 0.0
    xp = _backend.array_module(grads[0])
    buf = xp.empty(1, dtype=np.float64)
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
    return buf if total is None else total


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
