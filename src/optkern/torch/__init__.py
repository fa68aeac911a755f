"""A drop-in torch.optim for optkern's fused kernels: ``from optkern.torch import AdamW``.

``optkern.torch.SGD/Adagrad/AdagradNorm/RMSprop/Adadelta/Adam/AdamW/NAdam`` are
``torch.optim.Optimizer`` subclasses with torch's signatures, semantics and
``state_dict`` format; their steps run optkern's multi-tensor kernels on the
tensors' own memory (CPU: zero-copy NumPy views; CUDA: DLPack views on torch's
current stream). ``clip_grad_norm_`` / ``clip_grad_value_`` mirror
``torch.nn.utils``. Needs PyTorch (``pip install torch``); ``import optkern``
never imports it.
"""

try:
    import torch as _torch  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised without torch
    raise ImportError("optkern.torch needs PyTorch: pip install torch (or pip install 'optkern[bench]')") from e

from .clip import clip_grad_norm_, clip_grad_value_
from .optimizers import SGD, Adadelta, Adagrad, AdagradNorm, Adam, AdamW, NAdam, RMSprop

__all__ = [
    "SGD",
    "Adagrad",
    "AdagradNorm",
    "RMSprop",
    "Adadelta",
    "Adam",
    "AdamW",
    "NAdam",
    "clip_grad_norm_",
    "clip_grad_value_",
]
