"""Module-level skip for the CUDA test files: CuPy, the optkern._cuda module and
a visible device are all needed; the skip reason says which is missing."""

import numpy as np
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


def half_dtypes(cp) -> list:
    """The 16-bit float dtypes the GPU tests take: float16, and ml_dtypes' bfloat16 where CuPy
    makes a bfloat16 array (older CuPy has none). Skips the module without ml_dtypes."""
    ml_dtypes = pytest.importorskip("ml_dtypes", reason="bfloat16 host arrays are ml_dtypes arrays")
    try:
        cp.empty(1, dtype="bfloat16")
        bf16 = [np.dtype(ml_dtypes.bfloat16)]
    except Exception:
        bf16 = []
    return [np.dtype(np.float16)] + bf16


def same_bits(got, want, what):
    """Bit for bit, except that any NaN equals any NaN: an invalid operation's NaN (0 * inf, inf - inf)
    is 0xffc00000 on x86 and 0x7fffffff on NVIDIA GPUs, which also drop NaN payloads."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype.itemsize == want.dtype.itemsize, what
    u = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[want.dtype.itemsize]
    if want.dtype.kind == "f" and got.dtype.kind == "f":
        nan = np.isnan(want)
        np.testing.assert_array_equal(np.isnan(got), nan, err_msg=f"{what}: NaN positions")
        got, want = np.where(nan, 0, got).astype(want.dtype), np.where(nan, 0, want).astype(want.dtype)
    np.testing.assert_array_equal(got.view(u), want.view(u), err_msg=what)


def raised(fn):
    """(type, message) of the TypeError / ValueError ``fn()`` raises (it must raise one): the CUDA
    module's errors are compared with the CPU module's for the same bad call."""
    with pytest.raises((TypeError, ValueError)) as e:
        fn()
    return type(e.value), str(e.value)
