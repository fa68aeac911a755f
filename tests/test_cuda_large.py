"""CUDA kernels on arrays of more than 2^31 elements: an index or offset held in 32 bits anywhere
(block * threads, a chunk's start, a block's first element) wraps there, and no smaller test can
see it. Each case computes the tail of a huge array on the GPU and compares it with the CPU module
on those same elements alone (the kernels are element- or block-local: the tail's result does
not depend on what precedes it, except for the norm, which is exact here).

Needs a real GPU with the memory each case names (8.6 to 35 GB; an H200 has 139 GB); skipped
otherwise, and under the CPU emulation of the CUDA module (tools/cuda_emu), where the arrays
would be host memory.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from gpu import require_gpu, same_bits
from optkern import clip_grad_norm_, lowp, optim

cp, _cuda = require_gpu()

BIG = 2**31 + 77  # elements: past int32's range, and not a multiple of any block or vector width


def need(gigabytes: float) -> None:
    """Skip unless the device has this much free memory (and a margin)."""
    free, _ = cp.cuda.Device().mem_info
    if free < gigabytes * 1.15e9:
        pytest.skip(f"needs {gigabytes:.1f} GB of free GPU memory, {free / 1e9:.1f} GB free")


@pytest.fixture(autouse=True)
def _release():
    yield
    cp.get_default_memory_pool().free_all_blocks()


def test_clip_grad_norm_beyond_2_31_elements():
    need(BIG * 4 / 1e9)
    g = cp.ones(BIG, cp.float32)
    total = clip_grad_norm_(g, 1e30)  # (max_norm above the norm: nothing scaled)
    assert float(total[0]) == math.sqrt(BIG)  # a float64 sum of ones is exact
    clip_grad_norm_(g, 1.0)
    want = np.float32(1.0) * np.float32(1.0 / (math.sqrt(BIG) + 1e-6))
    tail = cp.asnumpy(g[-1000:])
    head = cp.asnumpy(g[:1000])
    across = cp.asnumpy(g[2**31 - 500 :])  # (the last 577: either side of 2^31)
    for part in (head, across, tail):
        np.testing.assert_array_equal(part, np.full(part.size, want, np.float32))


def test_adam_step_beyond_2_31_elements():
    """One fused Adam step over a single 2^31 + 77 element parameter: the elements past 2^31 move
    exactly as the CPU moves the same values."""
    need(BIG * 4 * 4 / 1e9)
    tail = 4096
    rng = np.random.default_rng(7)
    p_tail = rng.standard_normal(tail).astype(np.float32)
    g_tail = rng.standard_normal(tail).astype(np.float32)
    p = cp.ones(BIG, cp.float32)
    g = cp.full(BIG, 0.5, cp.float32)
    p[-tail:] = cp.asarray(p_tail)
    g[-tail:] = cp.asarray(g_tail)
    opt = optim.Adam([p], lr=1e-2, weight_decay=0.1)
    opt.step([g])
    opt.step([g])
    ref = p_tail.copy()
    cpu = optim.Adam([ref], lr=1e-2, weight_decay=0.1)
    cpu.step([g_tail])
    cpu.step([g_tail])
    same_bits(cp.asnumpy(p[-tail:]), ref, "params past 2^31")
    state = opt.state_dict()["state"][0]
    same_bits(cp.asnumpy(state["exp_avg_sq"][-tail:]), cpu.state_dict()["state"][0]["exp_avg_sq"], "exp_avg_sq")
    # and the last element before the tail (below 2^31) moved as the CPU moves a (1, 0.5) pair
    one = np.ones(1, np.float32)
    cpu1 = optim.Adam([one], lr=1e-2, weight_decay=0.1)
    cpu1.step([np.full(1, 0.5, np.float32)])
    cpu1.step([np.full(1, 0.5, np.float32)])
    k = BIG - tail - 1
    same_bits(cp.asnumpy(p[k : k + 1]), one, "a param before the tail")


def test_quantize_blockwise_beyond_2_31_elements():
    """8-bit blockwise quantization: blocks past 2^31 elements get the codes and scales the CPU
    gives the same block."""
    need(BIG * 5 / 1e9 + 0.1)
    block = 256
    tail_blocks = 8
    n = (BIG // block) * block + 3  # a partial last block
    rng = np.random.default_rng(8)
    first = (n // block - tail_blocks) * block
    x_tail = rng.standard_normal(n - first).astype(np.float32)
    x = cp.zeros(n, cp.float32)
    x[first:] = cp.asarray(x_tail)
    codes, scales = lowp.quantize_blockwise(x, block)
    want_codes, want_scales = lowp.quantize_blockwise(x_tail, block)
    same_bits(cp.asnumpy(codes[first:]), want_codes, "codes past 2^31")
    same_bits(cp.asnumpy(scales[first // block :]), want_scales, "scales past 2^31")
