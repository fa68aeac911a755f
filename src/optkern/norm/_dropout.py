"""Inverted dropout with a counter-based (Philox) mask, regenerated in backward.

(Private name: a public submodule ``dropout`` would be shadowed by the function.)
"""

from __future__ import annotations

import numpy as np

from .. import _backend
from ..random import _seed_offset
from ._common import _native_name, _ndarray, _xp


@_backend.on_array_device
def dropout(x, p, seed: int, offset: int = 0, training=True, return_mask=False):
    """Inverted dropout: ``y = x * keep / (1 - p)`` with a counter-based mask.

    Element i is kept when the 32-bit word of the Philox4x32-10 stream ``(seed, offset + i)`` (see
    :mod:`optkern.random`; its top 24 bits are the float32 uniform) is >= ``round(p * 2**32)``: a
    keep probability within 2**-33 of ``1 - p``, as the scale ``1 / (1 - p)`` assumes (the float32
    uniform against p put it on a 2**-24 grid). The mask
    is the same on CPU and GPU and :func:`dropout_backward` regenerates it
    from ``(seed, offset)`` without storing it. Advance ``offset`` by
    ``x.size`` between calls to draw fresh masks from one seed.

    Args:
      x: input array (C-contiguous): float32, float64, float16 or bfloat16 (half types scale in
        float32 and round to nearest even; the mask is the float32 call's for the same seed).
      p: drop probability in [0, 1]; at 1 every element is dropped: ``x * 0`` (torch's: a NaN or
        inf input gives NaN, every other 0; none is kept -- nor for any p within 2**-33 of 1 -- and
        the infinite scale is never used).
      seed, offset: integers in [0, 2**64).
      training: when False, returns x unchanged (and an all-ones mask).
      return_mask: also return the uint8 keep mask.

    Returns:
      ``y``, or ``(y, mask)`` when ``return_mask``.
    """
    _ndarray("x", x)
    mod = _backend.backend(("x", x))
    p = _backend.in_range("p", p, 0.0, 1.0)
    seed, offset = _seed_offset(seed, offset, x.size, "x.size")
    training, return_mask = _backend.flag("training", training), _backend.flag("return_mask", return_mask)
    xp = _xp(x)
    if not training:
        _eval_input(x)
        return (x, xp.ones(x.shape, dtype=np.uint8)) if return_mask else x
    y = xp.empty_like(x)
    mask = xp.empty(x.shape, dtype=np.uint8) if return_mask else None
    mod.dropout_(x, y, p, seed, offset, mask)
    return (y, mask) if return_mask else y


@_backend.on_array_device
def dropout_backward(dy, p, seed: int, offset: int = 0):
    """Gradient of :func:`dropout` (training mode): ``dx = dy * keep / (1 - p)``, mask regenerated."""
    _ndarray("dy", dy)
    mod = _backend.backend(("dy", dy))
    p = _backend.in_range("p", p, 0.0, 1.0)
    seed, offset = _seed_offset(seed, offset, dy.size, "dy.size")
    dx = _xp(dy).empty_like(dy)
    try:
        mod.dropout_(dy, dx, p, seed, offset, None)
    except (TypeError, ValueError):
        with _native_name("x", "dy"):  # the native function calls its input x (renamed on the error path only)
            raise
    return dx


def _eval_input(x) -> None:
    """In eval mode no kernel runs, so x is checked here as the native kernel checks it, in its
    order and wording: an integer, complex or byte-swapped x, and a strided (non-C-contiguous) or
    misaligned one, was returned unchanged in eval and refused in training, so a pipeline checked
    in eval failed at its first training step."""
    if not _backend.is_float_dtype(x.dtype):
        raise TypeError(f"x: expected float16, bfloat16, float32 or float64, got {x.dtype}")
    _backend.check_read(x, x.dtype, "x")
    _backend.check_aligned(x, "x")
