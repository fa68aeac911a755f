"""The machine a benchmark runs on: optional PyTorch, CUDA readiness, threads, a description."""

from __future__ import annotations

import contextlib
import os
import platform
import time

import numpy as np

NO_TORCH = "PyTorch not installed: ratios skipped (pip install 'optkern[bench]')"
NO_TORCH_CUDA = "PyTorch has no CUDA device: ratios skipped (install a CUDA build of torch)"


def torch_or_none():
    """The ``torch`` module, or None when it cannot be imported."""
    try:
        import torch
    except (ImportError, OSError):  # not installed, or its shared libraries do not load
        return None
    return torch


def torch_for(device: str):
    """``torch`` when it can run on ``device`` ("cpu" or "cuda"), else None."""
    torch = torch_or_none()
    if torch is not None and device == "cuda" and not torch.cuda.is_available():
        return None
    return torch


def torch_missing_line(device: str) -> str | None:
    """Why the PyTorch columns are empty on ``device``, or None when they are not."""
    if torch_or_none() is None:
        return NO_TORCH
    return NO_TORCH_CUDA if torch_for(device) is None else None


def require_cuda():
    """Raise ``UsageError`` (one line, exit code 2) unless CuPy, optkern's CUDA module and a GPU are there."""
    from .. import _backend
    from ..study import UsageError

    try:
        import cupy
    except ImportError as e:
        raise UsageError(f"--device cuda needs CuPy and a GPU (pip install 'optkern[cuda]'): {e}") from None
    try:
        _backend.cuda_module()
    except RuntimeError as e:
        raise UsageError(f"--device cuda: {e}") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CUDARuntimeError: no driver / no device
        raise UsageError(f"--device cuda: no usable CUDA device ({e})") from None
    if count < 1:
        raise UsageError("--device cuda: no CUDA device found")


def check_output(path: str | None, flag: str = "--json") -> None:
    """Raise ``UsageError`` unless ``path`` (None: no file asked for) can be written by
    ``replace_atomically`` (``_atomic.why_not_replaceable``). Checked before the benchmarks run: the
    file is written after them, where a missing folder or a directory of that name ended minutes of
    measuring with a traceback and no file."""
    from .._atomic import why_not_replaceable
    from ..study import UsageError

    if path is None:
        return
    if not path.strip():  # (FILE unset in --json "$FILE": no file was written and the exit status was 0)
        raise UsageError(f"{flag}: no file given (leave {flag} out for no JSON file)")
    why = why_not_replaceable(path)
    if why is not None:
        raise UsageError(f"{flag} {path}: {why}")


def set_threads(n: int | None) -> int:
    """Use ``n`` threads in optkern (OpenMP) and torch; None leaves the defaults. Returns optkern's count."""
    from .. import _cpu
    from ..study import UsageError

    if n is not None:
        from ..threads import MAX_THREADS

        if n < 1:
            raise UsageError(f"--threads: must be >= 1, got {n}")
        if n > MAX_THREADS:
            raise UsageError(f"--threads: must be <= {MAX_THREADS}, got {n}")
        _cpu.set_num_threads(n)
        torch = torch_or_none()
        if torch is not None:
            torch.set_num_threads(n)
    return _cpu.get_num_threads()


@contextlib.contextmanager
def threads(n: int | None):
    """``set_threads(n)`` for the duration of a ``with`` block (yields optkern's count), then the
    previous counts again (so an in-process run leaves the caller's settings alone)."""
    from .. import _cpu

    torch = torch_or_none()
    before = _cpu.get_num_threads(), (torch.get_num_threads() if torch is not None else None)
    try:
        yield set_threads(n)
    finally:
        _cpu.set_num_threads(before[0])
        if torch is not None:
            torch.set_num_threads(before[1])


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name() -> str:
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def machine(device: str) -> dict:
    """What the results depend on: hardware, threads and library versions."""
    import optkern

    from .. import _cpu

    torch = torch_or_none()
    meta = dict(
        device=device,
        cpu=cpu_model(),
        cpu_count=os.cpu_count(),
        optkern_threads=_cpu.get_num_threads(),
        torch=torch.__version__ if torch else None,
        torch_threads=torch.get_num_threads() if torch else None,
        numpy=np.__version__,
        python=platform.python_version(),
        optkern=optkern.info(),
        date=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    )
    if device == "cuda":
        import cupy

        meta.update(gpu=gpu_name(), cupy=cupy.__version__)
    return meta


def describe(meta: dict) -> str:
    """One line for the top of the table."""
    where = f"GPU {meta['gpu']} | " if meta.get("gpu") else ""
    torch = f"torch {meta['torch']} ({meta['torch_threads']} threads)" if meta["torch"] else "torch: not installed"
    return (
        f"{where}CPU {meta['cpu']} ({meta['cpu_count']} logical) | optkern {meta['optkern'].get('version')} "
        f"({meta['optkern_threads']} threads) | {torch} | numpy {meta['numpy']}"
    )
