"""optkern._cpu's stochastic conversions and SWALP quantizers draw Philox word offset + i for
element i: offset + size past 2**64 is refused (the GPU's words wrapped to 0 there while the CPU's
ran on, so the two modules rounded differently; tests/test_cuda_hunt33.py compares them), words
ending exactly at 2**64 are the last ones of the counter, and nearest rounding takes any offset."""

import struct

import numpy as np
import pytest

from optkern import _backend, lowp

_cpu = _backend.cpu
TOP = 1 << 64


def _word(g: int, seed: int, stream: int) -> int:
    """Philox word g of (seed, stream) (optkern/philox.hpp's mapping)."""
    b = g >> 2
    counter = [b & 0xFFFFFFFF, b >> 32, stream & 0xFFFFFFFF, stream >> 32]
    r = _cpu.philox4x32_10(counter, [seed & 0xFFFFFFFF, seed >> 32])
    return r[g & 3]


def _bf16_sr(v: np.float32, w: int) -> int:
    """rules/lowp.hpp's f32_to_bf16_sr for finite values far from the range's end."""
    u = struct.unpack("<I", struct.pack("<f", float(v)))[0]
    return ((u + (w >> 16)) >> 16) & 0xFFFF


@pytest.mark.parametrize(
    "call",
    [
        lambda x, out, off: _cpu.lowp_to_half(x, out.view(np.uint16)[: x.size], "float16", True, 1, 2, off),
        lambda x, out, off: _cpu.lowp_quantize_fixed_point(x, out, 8, 4, True, 1, 2, off),
        lambda x, out, off: _cpu.lowp_quantize_block_fp(x, out, 8, 16, True, 1, 2, off),
        lambda x, out, off: lowp.quantize_fixed_point(x, offset=off, out=out),
        lambda x, out, off: lowp.to_half(x, "bfloat16", rounding="stochastic", offset=off),
    ],
    ids=["to_half", "fixed_point", "block_fp", "public fixed_point", "public to_half"],
)
@pytest.mark.parametrize("n", [2, 40])
def test_words_past_2_64_are_refused_before_anything_is_written(call, n):
    x = np.linspace(-1.5, 2.5, n, dtype=np.float32)
    out = np.full(n, 7.0, np.float32)
    for off in (TOP - n + 1, TOP - 1):
        with pytest.raises(ValueError, match=r"^offset: offset \+ \d+ elements overflows the 64-bit counter"):
            call(x, out, off)
        assert (out == 7.0).all()


@pytest.mark.parametrize("n", [1, 7, 40])
def test_words_ending_at_2_64_are_the_counters_last(n):
    x = np.linspace(-1.5, 2.5, n, dtype=np.float32)
    out = np.empty(n, np.uint16)
    _cpu.lowp_to_half(x, out, "bfloat16", True, 5, 7, TOP - n)
    assert out.tolist() == [_bf16_sr(x[i], _word(TOP - n + i, 5, 7)) for i in range(n)]


def test_nearest_rounding_takes_any_offset():
    x = np.linspace(-1.5, 2.5, 9, dtype=np.float32)
    got = lowp.to_half(x, "float16", offset=TOP - 1)
    np.testing.assert_array_equal(got, x.astype(np.float16))
    out = np.empty(9, np.float32)
    _cpu.lowp_quantize_fixed_point(x, out, 8, 4, False, 1, 2, TOP - 1)
    np.testing.assert_array_equal(out, np.round(x * 16) / 16)
