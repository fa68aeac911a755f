"""The 8-bit states' block layout and the checks of their scales: the block size (a power of two in
[64, 4096]), the count of blocks of ``n`` codes, the one check of a state's scales (shared by
:func:`optkern.lowp.dequantize_blockwise` and the optimizers' state loaders) and the 256 values a
code byte stands for. ``optkern.lowp`` re-exports them (its quantizers and the loaders use them
through it); they need no native conversion, only the CPU module's map."""

from __future__ import annotations

import numpy as np

from . import _backend


def _block(block) -> int:
    b = _backend.integer("block", block, lo=1)
    if b < 64 or b > 4096 or b & (b - 1):
        raise ValueError(f"block: expected a power of two in [64, 4096], got {b}")
    return b


def block_scale_name(moment: str) -> str:
    """The state name of the 8-bit block scales of state ``moment`` (``<moment>_scale``): the one
    spelling that optkern.optim, optkern.torch, the checkpoint schema and ZeRO's shards read."""
    return f"{moment}_scale"


def is_block_scale_name(name: str) -> bool:
    """Whether state ``name`` is the block scales of a moment (:func:`block_scale_name`)."""
    return name.endswith(block_scale_name(""))


def n_blocks(n: int, block: int) -> int:
    return -(-n // block)


def check_block_scales(scales, n: int, block: int, where: str = "scales", nonnegative: bool = False) -> None:
    """ValueError naming ``where`` unless ``scales`` (NumPy or CuPy) are the 8-bit block scales of
    ``n`` codes in blocks of ``block``: float32 of shape (n_blocks,), as :func:`quantize_blockwise`
    returns them (another shape of that size is another layout, not these scales), none NaN / inf
    (they decode to non-finite values, silently), and, for a state that is never negative
    (``nonnegative``: stored in the unsigned map), none negative (the sign marks the signed map:
    its codes below 128 would decode as other, positive, magnitudes). The one check of the scales,
    shared by :func:`dequantize_blockwise` and the optimizers' state loaders (optkern.optim and
    optkern.torch), so that what one refuses the others refuse alike.

    On CuPy the values are read on the device and their two counts brought to the host together:
    one synchronization per call, which a device-side check cannot avoid -- an error raised by this
    call needs the host to see the values, and a check left on the device could only make the
    decoded values NaN, which non-finite scales already do, silently. The optimizers' steps never
    take it (their 8-bit states decode inside the fused kernel, from scales the kernel wrote; the
    loaders check on the host), so only a direct ``dequantize_blockwise`` of CuPy arrays waits."""
    nb = n_blocks(n, block)
    if scales.dtype != np.float32 or scales.shape != (nb,):
        got = f"{scales.size} of {scales.dtype}" if scales.ndim <= 1 else f"{scales.dtype} of shape {scales.shape}"
        want = _backend.counted(nb, "float32 block scale")
        raise ValueError(f"{where}: expected {want} (shape ({nb},)), got {got}")
    xp = _backend.array_module(scales)
    counts = xp.stack([xp.count_nonzero(~xp.isfinite(scales)), xp.count_nonzero(scales < 0)])
    bad, neg = (int(c) for c in _backend.to_numpy(counts))  # (one device -> host copy on CuPy)
    if bad:
        raise ValueError(f"{where}: {_backend.counted(bad, 'non-finite block scale')} (NaN or inf)")
    neg = neg if nonnegative else 0
    if neg:
        raise ValueError(
            f"{where}: {_backend.counted(neg, 'negative block scale')} (a negative scale marks the signed map; "
            "this state is never negative: stored in the unsigned one)"
        )


def decode_map(signed: bool) -> np.ndarray:
    """The 256 values (fractions of the block scale) a code byte stands for."""
    return _backend.cpu.lowp_decode_map(_backend.flag("signed", signed))
