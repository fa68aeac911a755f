"""CUDA kernels on edge inputs no other CUDA test reaches (hunt 32):

- dropout_ / random_uniform_ / random_rademacher_ (cuda/dropout.cu) with a Philox offset whose
  offset + size passes 2**64 (the native call, below the Python wrappers' check): the kernels'
  block count wrapped to ~2**62 and every thread looped for ever (a hang on the GPU and in the
  emulator); now refused with the wrappers' ValueError. Offsets that end exactly at 2**64 still
  run, with the CPU's bits.

Skipped without CuPy / the CUDA module / a device; tools/cuda_emu runs it on the CPU.
"""

import numpy as np
import pytest

from gpu import require_gpu, same_bits
from optkern import _backend

cp, _cuda = require_gpu()
_cpu = _backend.cpu
TOP = 1 << 64


@pytest.mark.parametrize("n", [2, 5, 33])
def test_philox_offset_past_2_64_is_refused_not_a_hang(n):
    x = cp.ones(n, cp.float32)
    for off in (TOP - n + 1, TOP - 1):  # offset + n: 2**64 + 1, 2**64 + n - 1
        with pytest.raises(ValueError, match="offset"):
            _cuda.dropout_(x, cp.empty_like(x), 0.5, 7, off, None)
        with pytest.raises(ValueError, match="offset"):
            _cuda.random_uniform_(cp.empty(n, cp.float64), 3, off)
        with pytest.raises(ValueError, match="offset"):
            _cuda.random_rademacher_(cp.empty(n, cp.float32), 3, off)


@pytest.mark.parametrize("n", [1, 5, 33])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_philox_offset_ending_at_2_64_matches_the_cpu(n, dtype):
    off = TOP - n  # the last n words of the counter: allowed
    x = np.linspace(-1, 1, n).astype(dtype)
    y, m = np.empty_like(x), np.empty(n, np.uint8)
    _cpu.dropout_(x, y, 0.5, 7, off, m)
    xd = cp.asarray(x)
    yd, md = cp.empty_like(xd), cp.empty(n, cp.uint8)
    _cuda.dropout_(xd, yd, 0.5, 7, off, md)
    same_bits(cp.asnumpy(yd), y, "dropout")
    same_bits(cp.asnumpy(md), m, "mask")
    for fill in ("random_uniform_", "random_rademacher_"):
        a, ad = np.empty(n, dtype), cp.empty(n, dtype)
        getattr(_cpu, fill)(a, 3, off)
        getattr(_cuda, fill)(ad, 3, off)
        same_bits(cp.asnumpy(ad), a, fill)
