"""Module-level skip for the CUDA test files: CuPy, the optkern._cuda module and
a visible device are all needed; the skip reason says which is missing."""

import pytest


def require_gpu():
    """``(cupy, optkern._cuda)``, or skip the calling test module."""
    try:
        import cupy
    except ImportError:
        pytest.skip("CuPy is not installed (pip install 'optkern[cuda]')", allow_module_level=True)
    from optkern import _backend

    try:
        cuda = _backend.cuda_module()
    except RuntimeError as e:
        pytest.skip(f"optkern._cuda is not available: {e}", allow_module_level=True)
    if cuda.device_count() == 0:
        pytest.skip("no CUDA device is visible", allow_module_level=True)
    try:
        cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError as e:
        pytest.skip(f"CuPy cannot reach the GPU: {e}", allow_module_level=True)
    return cupy, cuda
