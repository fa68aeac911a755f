"""optkern._cpu.dropout_'s arrays: out is x itself or shares no byte with it, and the mask shares
none with x or out (tests/test_cuda_hunt33.py: the CUDA module refuses the same). A partial overlap
made the result depend on the order of the writes (the CPU's chunks, the GPU's threads)."""

import numpy as np
import pytest

from optkern import _backend

_cpu = _backend.cpu


def _cases(buf):
    x = buf[:4]
    return {
        "out shifted": (lambda: _cpu.dropout_(buf[:4], buf[1:5], 0.5, 3, 0), "out: overlaps x without being x"),
        "mask in x": (
            lambda: _cpu.dropout_(x, np.empty(4), 0.5, 3, 0, x.view(np.uint8)[:4]),
            "mask shares memory with x",
        ),
        "mask in out": (
            lambda: _cpu.dropout_(np.ones(4), buf[:4], 0.5, 3, 0, buf[:4].view(np.uint8)[8:12]),
            "mask shares memory with out",
        ),
    }


@pytest.mark.parametrize("case", ["out shifted", "mask in x", "mask in out"])
def test_overlapping_arrays_are_refused_before_anything_is_written(case):
    buf = np.linspace(1.0, 2.0, 6)
    before = buf.copy()
    fn, msg = _cases(buf)[case]
    with pytest.raises(ValueError, match=f"^{msg}"):
        fn()
    np.testing.assert_array_equal(buf, before)


def test_in_place_and_adjacent_arrays_still_run():
    buf = np.linspace(1.0, 2.0, 8)
    want = np.empty(4)
    _cpu.dropout_(buf[:4].copy(), want, 0.5, 3, 0)
    x = buf[:4]
    _cpu.dropout_(x, x, 0.5, 3, 0)  # in place
    np.testing.assert_array_equal(x, want)
    _cpu.dropout_(buf[:4], buf[4:], 0.0, 3, 0, None)  # adjacent, not overlapping
    np.testing.assert_array_equal(buf[4:], want)
