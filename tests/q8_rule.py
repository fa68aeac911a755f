"""The 8-bit quantizer's rule as the fused optimizer steps apply it, NaN and +-inf included (the
native ``lowp_quantize_blockwise`` of x's backend): ``optkern.lowp.quantize_blockwise`` refuses
non-finite input (hunt 42x), so the tests of the rule's special values call the binding itself."""

from __future__ import annotations

import numpy as np

from optkern import _backend, lowp


def quantize_rule(x, block: int = 256):
    """(codes, scales) of float32 ``x`` (NumPy or CuPy, C-contiguous) in blocks of ``block``, as
    ``lowp.quantize_blockwise`` makes them for finite input, without its check of the values."""
    xp, mod = lowp._native(x)
    codes = xp.empty(x.shape, np.uint8)
    scales = xp.empty(lowp.n_blocks(x.size, block), np.float32)
    with _backend._device_of(x):
        mod.lowp_quantize_blockwise(x, codes, scales, block)
    return codes, scales


def dequantize_rule(codes, scales, block: int = 256):
    """float32 values of ``codes`` (uint8, C-contiguous) with ``scales`` (float32, one per block),
    NumPy or CuPy, as the native ``lowp_dequantize_blockwise`` decodes them, NaN / inf scales
    included (``lowp.dequantize_blockwise`` refuses those: ``check_block_scales``)."""
    xp, mod = lowp._native(codes)
    out = xp.empty(codes.shape, np.float32)
    with _backend._device_of(codes):
        mod.lowp_dequantize_blockwise(codes, scales, out, block)
    return out
