"""Gradient clipping of float16 / bfloat16 gradients (a half model's grads, a ZeRO-1 slice with
``master_weights``): the grads widened exactly to float32 copies, the float32 native calls run on
those (the norm accumulated in float64, the factor ``rules::clip_coef<float>``), and the results
rounded back into the grads to nearest even (``lowp_to_half``: rules/lowp.hpp's bits on the CPU and
the GPU). Each is a native call on the grads' backend, as AdaGrad-Norm's low-precision step is
composed (optim/_lowp_norm.py); the cost is a float32 copy of the grads while the call runs.

torch takes a half grad's norm in its dtype (past 65504 a float16 norm is inf, the factor 0: the
grads zeroed) and the factor rounded to it (11 or 8 bits); here both are float32 or wider, and each
clipped element is the float32 product ``g * c`` rounded once to the half type."""

from __future__ import annotations

import numpy as np

from . import _array_checks, _backend
from ._clip_checks import _names
from .optim._lowp_config import _half_fmt


def half_format(grads: list) -> str | None:
    """'float16' / 'bfloat16' when ``grads`` (checked to be of one kind, non-empty) are 16-bit."""
    return _half_fmt(grads[0].dtype) if grads else None


def check_read(grads: list, index: list | None) -> None:
    """What a read of half ``grads`` needs (get_total_norm: read-only ones are fine), naming
    ``grads[i]`` before any work: one dtype, C-contiguous."""
    for name, g in zip(_names(index, len(grads)), grads):
        _array_checks.check_read(g, grads[0].dtype, name)


def widened(mod, grads: list, fmt: str) -> list:
    """Float32 copies of the half ``grads`` (exact: every half value is a float32)."""
    wide = []
    for g in grads:
        w = _backend.zeros(g, g.shape, np.float32)
        with _backend._device_of(g):
            mod.lowp_from_half(g.view(np.uint16), w, fmt)
        wide.append(w)
    return wide


def store(mod, wide: list, grads: list, fmt: str) -> None:
    """``grads[i] <- wide[i]`` rounded to the half type, to nearest even."""
    for w, g in zip(wide, grads):
        with _backend._device_of(g):
            mod.lowp_to_half(w, g.view(np.uint16), fmt, False, 0, 0, 0)
