"""pytest plugin: optkern's CUDA module is the CPU-emulated build (tools/cuda_emu/build.py).

Loaded by tools/cuda_emu/run (``-p okemu_plugin``, with tools/cuda_emu/py and the CuPy
stand-in first on sys.path). OKEMU_BUILD names the build directory holding optkern/_cuda*.so.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path


def pytest_configure(config) -> None:
    import optkern
    from optkern import _backend

    pkg = Path(os.environ["OKEMU_BUILD"]) / "optkern"
    optkern.__path__.insert(0, str(pkg))  # `from . import _cuda` finds the emulated one first
    cuda = _backend.cuda_module()
    assert Path(cuda.__file__).parent == pkg, f"optkern._cuda is {cuda.__file__}, not the emulated build"
    config._okemu_lib = ctypes.CDLL(cuda.__file__)
    config._okemu_lib.okemu_launch_count.restype = ctypes.c_ulonglong


# Tests whose claim is about the machine, not the kernels: skipped here, with the reason.
NOT_EMULATED = {
    "tests/test_cuda_backend.py::test_device_count_is_a_count": "asserts no device without /dev/nvidia0; "
    "the emulator is a device",
    "tests/test_cuda_capturable.py::test_mixing_numpy_and_cupy_names_the_argument": "the CuPy stand-in's "
    "arrays are NumPy subclasses, which the CPU module accepts as NumPy arrays",
}


def pytest_collection_modifyitems(config, items) -> None:
    import pytest

    for item in items:
        reason = NOT_EMULATED.get(item.nodeid.split("[")[0])
        if reason:
            item.add_marker(pytest.mark.skip(reason=f"not emulated: {reason}"))


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    n = config._okemu_lib.okemu_launch_count()
    terminalreporter.write_line(f"cuda_emu: {n} kernel launches ran on the emulated device")
