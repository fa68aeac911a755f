"""optkern: fused C++/OpenMP and CUDA kernels for training and analysing neural networks.

NumPy arrays run on the CPU module, CuPy arrays on the CUDA module.

Subpackages: ``optim`` (optimizers), ``functional`` (stateless optimizer
steps), ``schedules`` (learning-rate and batch-size schedules), ``norm``
(normalization and dropout, forward and backward), ``nn`` (the built-in MLP
with exact Hessian-vector products), ``hessian`` (trace, Lanczos, spectral
density), ``init`` (initializers, LSUV), ``regularize`` (penalties, mixup,
cutmix, early stopping), ``random`` (counter-based Philox streams), ``data``
(batch loader), ``datasets`` (the bundled digits), ``threads`` (thread counts),
``lowp`` (bfloat16 / float16 conversion, stochastic rounding, 8-bit quantization),
``amp`` (``GradScaler``), ``swa`` (SWA / EMA averages, ``update_bn``), ``swalp``
(SWALP), ``distributed`` (MPI / NCCL data-parallel and ZeRO-1; a Communicator needs mpi4py),
``torch`` (a drop-in ``torch.optim`` on optkern's kernels; needs PyTorch, import
it explicitly: ``import optkern.torch``).
``save`` / ``load``: atomic, checksummed checkpoints (``checkpoint``).
``clip_grad_norm_`` / ``clip_grad_value_`` / ``get_total_norm`` / ``clip_grads_with_norm_``: gradient
clipping (``clip``).
``info()``, ``cuda_built()``: how optkern was built; ``set_pool_limit`` / ``release_pool``:
the memory pool of the MLP's temporaries; ``pin_glibc_thresholds()``: glibc's malloc thresholds.
"""

from __future__ import annotations

import importlib
import importlib.metadata

from . import _env

try:
    _env.check()  # a bad OPTKERN_* value: ValueError, or the optkern command's one-line error
except ValueError as _error:
    if _env.is_cli():
        _env.cli_exit(_error)
    raise

# (every subpackage the docstring lists, so ``optkern.amp.GradScaler`` works after ``import optkern``
# as ``optkern.lowp`` did: amp, swa, swalp and distributed raised AttributeError. amp, swa and swalp
# add ~17 ms of CPU to the import; distributed, ~45 ms, is imported at its first use (__getattr__).
# ``torch`` needs PyTorch: imported explicitly, as the docstring says.)
from . import (
    _backend,
    _pool,
    amp,
    checkpoint,
    data,
    datasets,
    functional,
    hessian,
    init,
    lowp,
    nn,
    norm,
    optim,
    random,
    regularize,
    schedules,
    swa,
    swalp,
    threads,
)
from ._backend import cuda_built
from ._malloc import pin_glibc_thresholds
from ._pool import release as release_pool
from ._pool import set_limit as set_pool_limit
from .checkpoint import load, save
from .clip import clip_grad_norm_, clip_grad_value_, clip_grads_with_norm_, get_total_norm
from .threads import get_num_threads, limit_threads, set_num_threads


def _version() -> str:
    """The version, written once in pyproject.toml: from the installed package's metadata,
    else (a source checkout on PYTHONPATH) the one CMake compiled into the native module."""
    try:
        return importlib.metadata.version("optkern")
    except importlib.metadata.PackageNotFoundError:
        return str(_backend.cpu.build_info()["version"]) or "0+unknown"


__version__ = _version()

_LAZY = ("distributed",)  # (its import takes ~10 % of optkern's: made when first named)


def __getattr__(name: str):
    """``optkern.distributed`` on first use (PEP 562), as if ``import optkern`` had imported it."""
    if name in _LAZY:
        return importlib.import_module(f"{__name__}.{name}")  # (which also binds it here)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY))


def info() -> dict:
    """Version, compiler, OpenMP threads, SIMD level, CUDA availability, and ``serial_below``: the
    work (array elements times the arrays a kernel streams) below which a CPU kernel runs on one
    thread, measured from the time it takes to wake the others (or ``OPTKERN_SERIAL_BELOW``); ``pool``:
    the memory pool the MLP's and curvature operators' NumPy temporaries come from (``limit`` and
    ``cached`` bytes, ``hits`` and ``misses``; ``OPTKERN_POOL_BYTES``, :func:`set_pool_limit`,
    :func:`release_pool`)."""
    d = dict(_backend.cpu.build_info())
    d["serial_below"] = int(_backend.cpu.serial_below())
    d["pool"] = _pool.stats()
    d["version"] = __version__
    d["cuda_built"] = cuda_built()
    d["cuda_devices"] = 0
    if d["cuda_built"]:
        try:
            d["cuda_devices"] = int(_backend.cuda_module().device_count())
        except Exception:  # driver present but no device
            d["cuda_devices"] = 0
    return d


__all__ = [
    "info",
    "cuda_built",
    "release_pool",
    "set_pool_limit",
    "__version__",
    "clip_grad_norm_",
    "clip_grad_value_",
    "clip_grads_with_norm_",
    "get_total_norm",
    "save",
    "load",
    "amp",
    "checkpoint",
    "clip",
    "data",
    "datasets",
    "distributed",
    "functional",
    "hessian",
    "init",
    "lowp",
    "nn",
    "norm",
    "optim",
    "random",
    "regularize",
    "schedules",
    "swa",
    "swalp",
    "threads",
    "get_num_threads",
    "set_num_threads",
    "limit_threads",
    "pin_glibc_thresholds",
]
