"""What an optkern.torch step hands the native calls besides its cached views (``_runs.py``): a CPU
run's grads, as the tensors themselves (torch's DLPack exchange API) or as DLPack capsules, in a
``_cpu.HeldCapsules`` list; and the key that says where a run's params' memory is."""

from __future__ import annotations

import numpy as np
import torch
import torch.utils.dlpack

from .._cpu import HeldCapsules as _HeldCapsules
from .._cpu import data_layouts as _data_layouts
from .._cpu import dlpack_exchange_usable
from ._checks_step import _data_ptr

_to_dlpack = torch.utils.dlpack.to_dlpack  # (a CPU run's grads as capsules: _grad_views)
# (a CPU run's grads handed over as the tensors themselves where torch has a DLPack exchange API the
# module can use: it describes each one in C, with no capsule made in Python -- to_dlpack cost ~0.4 us
# a grad after a large step's memory traffic; else as capsules)
_EXCHANGE = torch.Tensor if dlpack_exchange_usable(torch.Tensor) else None


def _held(capsules, tensors: list, shapes=None, api=None):
    """The capsules as a ``_cpu.HeldCapsules`` list holding ``tensors``: the native call frees them
    once it has read them, while they are still in cache (``cpp/py_arrays.hpp``); freed after the
    kernel, 200 of them cost ~150 us a step. ``tensors`` keeps their memory alive meanwhile.
    ``shapes`` (``_flat_shapes``), when given: the native call refuses a capsule of another shape.
    ``api`` (``_EXCHANGE``), when given: ``capsules`` are tensors of that type, which the native
    call describes through its DLPack exchange API (checked as a capsule's: dtype, shape, layout)."""
    out = _HeldCapsules(capsules)
    out.tensors = tensors
    if shapes is not None:
        out.shapes = shapes
    if api is not None:
        out.api = api
    return out


def _flat_shapes(shapes: list) -> np.ndarray:
    """``shapes`` as one int64 array (each one's ndim, then its dims): what a ``HeldCapsules``
    list's native call compares its capsules' shapes with."""
    return np.array([x for s in shapes for x in (len(s), *s)], np.int64)


def _data_key(tensors: list):
    """What says where the memory of a run's ``tensors`` is, its params and state tensors, and how
    they lay it out (a view cache entry's validity: ``p.data = ...``, ``state["exp_avg"].data = ...``
    or ``.set_(...)`` gives a tensor other memory; ``p.data = p.data.t()`` lays a square matrix out
    anew at the same address, with the same shape: a cached row-major view stepped each element with
    another's grad): their data pointers, dtypes, shapes and strides, read in one native call through
    torch's DLPack exchange API (``_EXCHANGE``) as one bytes object -- ~20 us less a step than a list
    of 200 ``data_ptr()`` ints after a large step's memory traffic -- or, without it (or where it
    refuses an item), a list of them. The two never compare equal: a change of kind is a miss."""
    if _EXCHANGE is not None:
        try:
            return _data_layouts(tensors, _EXCHANGE)
        except TypeError:
            pass
    return [(_data_ptr(t), t.dtype, t.shape, t.stride()) if isinstance(t, torch.Tensor) else t for t in tensors]
