"""Zero-copy NumPy / CuPy views of torch tensors, and the stream the CUDA ones run on.

CPU tensors become NumPy arrays over the same memory (``Tensor.numpy()``); CUDA
tensors become CuPy arrays through DLPack, and optkern's CUDA calls are
enqueued on torch's current stream of that device (CuPy's current stream is
set to it for the call), so nothing is copied and nothing synchronizes.
"""

from __future__ import annotations

import contextlib

import torch

_FLOATS = (torch.float32, torch.float64)
_NO_STREAM = contextlib.nullcontext()  # (reusable: it holds nothing)


def check_tensor(t, name: str) -> None:
    """TypeError / ValueError naming ``name`` unless ``t`` is a dense float32/float64 tensor optkern can update."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.layout is not torch.strided:
        raise TypeError(f"{name}: sparse tensors are not supported (layout {t.layout})")
    if t.dtype not in _FLOATS:
        raise TypeError(f"{name}: expected float32 or float64, got {t.dtype}")
    if t.is_complex():
        raise TypeError(f"{name}: complex tensors are not supported")
    if not t.is_contiguous():
        raise ValueError(f"{name}: tensor must be contiguous")
    if t.device.type not in ("cpu", "cuda"):
        raise TypeError(f"{name}: tensors on {t.device.type} are not supported (cpu or cuda)")


def view(t: torch.Tensor):
    """The NumPy (CPU) or CuPy (CUDA) array over ``t``'s memory; writes go to ``t``."""
    if t.requires_grad:
        t = t.detach()
    if t.is_cpu:
        return t.numpy()
    import cupy

    return cupy.from_dlpack(t)


def views(tensors) -> list:
    return [view(t) for t in tensors]


def on_stream(like: torch.Tensor):
    """Context running optkern's CUDA calls on torch's current stream of ``like``'s device."""
    if not like.is_cuda:
        return _NO_STREAM
    import cupy

    stack = contextlib.ExitStack()
    stack.enter_context(cupy.cuda.Device(like.device.index))
    stream = torch.cuda.current_stream(like.device)
    stack.enter_context(cupy.cuda.ExternalStream(stream.cuda_stream, like.device.index))
    return stack
