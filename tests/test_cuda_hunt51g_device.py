"""The CUDA normalization, dropout and random entry points refuse arrays that are not on the current
device, as every other native CUDA call does (cuda_arrays.hpp ``require_current_device``): ValueError
naming the call's first array, before anything is launched.

They used to make the arrays' device current for the call instead (cuda/norm_common.cuh's
DeviceGuard), which ran the kernels on that device's current stream rather than the caller's, and,
where ``cudaSetDevice`` failed (its result was not checked), launched on the current device with
the other device's pointers. The arrays here are stand-ins claiming device 1 (as far as the checks
read an array: tests/test_cuda_list_checks.py's), so one GPU (or the emulator, tools/cuda_emu)
runs every case; their pointers are never valid and must never reach a kernel.

Skipped without CuPy or without a visible GPU.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from gpu import require_gpu

cp, _cuda = require_gpu()

_PTRS = itertools.count()


class _Mem:
    def __init__(self, ptr, device_id):
        self.ptr, self.device_id = ptr, device_id


class _Flags:
    c_contiguous = True


class ndarray:  # noqa: N801 - named like CuPy's so the kind checks take it
    """A C-contiguous CuPy array on device 1, as far as the native checks read one; each at its own
    address (1 TiB up, 1 GiB apart), so no aliasing check stops a call before the device check."""

    __module__ = "cupy._stand_in"

    def __init__(self, size, dtype=np.float32):
        self.size, self.shape = size, (size,)
        self.dtype = np.dtype(dtype)
        self.itemsize = self.dtype.itemsize
        self.strides = (self.itemsize,)
        self._c_contiguous, self.flags = True, _Flags()
        self.data = _Mem((1 << 40) + (next(_PTRS) << 30), 1)


def a(size, dtype=np.float32):
    return ndarray(size, dtype)


N, C, S = 2, 3, 1  # channels: x (N, C, S)
R, G, CG, SP = 2, 1, 3, 1  # rows: x (R, CG * SP)

#: (entry point, its arguments made fresh per call, the first array's name)
CALLS = {
    "random_uniform_": (lambda: (a(5), 1, 0), "out"),
    "random_rademacher_": (lambda: (a(5), 1, 0), "out"),
    "dropout_": (lambda: (a(5), a(5), 0.5, 1, 0, a(5, np.uint8)), "x"),
    "channel_stats": (lambda: (a(N * C * S), a(C), a(C), a(C), N, C, S, 1e-5), "x"),
    "running_stats_": (lambda: (a(C), a(C), a(C), a(C), 0.1), "running_mean"),
    "channel_norm_forward": (lambda: (a(N * C * S), a(C), a(C), a(C), a(C), a(N * C * S), N, C, S), "x"),
    "channel_norm_backward": (
        lambda: (a(N * C * S), a(N * C * S), a(C), a(C), a(C), a(N * C * S), a(C), a(C), N, C, S, True),
        "dy",
    ),
    "row_norm_forward": (
        lambda: (a(R * CG * SP), a(G * CG), a(G * CG), a(R * CG * SP), a(R), a(R), R, G, CG, SP, 1e-5, False),
        "x",
    ),
    "row_norm_backward": (
        lambda: (
            (a(R * CG * SP), a(R * CG * SP), a(G * CG), a(R), a(R), a(R * CG * SP), a(G * CG), a(G * CG))
            + (R, G, CG, SP, False)
        ),
        "dy",
    ),
    "weight_norm_forward": (lambda: (a(R * CG), a(R), a(R * CG), a(R), R, CG), "v"),
    "weight_norm_backward": (lambda: (a(R * CG), a(R * CG), a(R), a(R), a(R * CG), a(R), R, CG), "dw"),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_arrays_on_another_device_are_refused(name):
    make, first = CALLS[name]
    with cp.cuda.Device(0):
        with pytest.raises(ValueError, match=rf"^{first}: arrays are on device 1 but the current CUDA device is 0"):
            getattr(_cuda, name)(*make())


def test_every_entry_point_here_exists():
    """A renamed entry point fails here rather than silently dropping out of the table above."""
    missing = [n for n in CALLS if not callable(getattr(_cuda, n, None))]
    assert not missing
