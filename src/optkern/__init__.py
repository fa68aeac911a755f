"""optkern: fused C++/OpenMP and CUDA kernels for training and analysing neural networks.

NumPy arrays run on the CPU module, CuPy arrays on the CUDA module.
"""
from __future__ import annotations

from . import _backend
from ._backend import cuda_built

__version__ = "0.1.0"


def info() -> dict:
    """Version, compiler, OpenMP threads, SIMD level and CUDA availability."""
    d = dict(_backend.cpu.build_info())
    d["version"] = __version__
    d["cuda_built"] = cuda_built()
    d["cuda_devices"] = 0
    if d["cuda_built"]:
        try:
            d["cuda_devices"] = int(_backend.cuda_module().device_count())
        except Exception:  # driver present but no device
            d["cuda_devices"] = 0
    return d


__all__ = ["info", "cuda_built", "__version__"]
