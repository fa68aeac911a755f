"""Parameters across ranks: the same layout everywhere (checked), the same values (broadcast)."""

from __future__ import annotations

import numbers
from collections.abc import Iterator

import numpy as np

from .. import _backend
from ..optim._given import _bump_torch_versions, torch_tensors
from ._arrays import _writable
from .agreement import agree
from .communicator import as_communicator


def _signature(arrays) -> list:
    return [(tuple(int(s) for s in a.shape), str(a.dtype), "cupy" if _backend.is_cupy(a) else "numpy") for a in arrays]


def check_same_params(arrays, comm, name: str = "params", check=None, root=None) -> None:
    """Raise ValueError on every rank unless every rank holds arrays of the same shapes and dtypes.

    One allgather of the (shape, dtype) lists, then every rank compares all of them, so
    every rank raises the same error (naming the first mismatch) and none waits alone. This
    rank's own checks (arrays, and ``check(arrays)`` where given) go into that allgather: a
    non-array on one rank raised there while the others waited in it forever. ``root``: a rank
    number that must be the same on every rank too (``broadcast_params``'): compared in that
    allgather.
    """
    comm = as_communicator(comm)

    def local():
        a = _backend.as_list(arrays, name)
        for i, x in enumerate(a):
            if not (isinstance(x, np.ndarray) or _backend.is_cupy(x)):
                raise TypeError(f"{name}[{i}]: expected a numpy or cupy array, got {type(x).__name__}")
        if check is not None:
            check(a)
        return None, (_signature(a), root)

    got = agree(comm, local, f"{name}: shapes and dtypes")[1]
    r = next((r for r, (_, root_r) in enumerate(got) if root_r != got[0][1]), None)
    if r is not None:  # (each rank waited for its own root's broadcast forever)
        raise ValueError(f"root: {got[r][1]} on rank {r}, {got[0][1]} on rank 0 (every rank must pass the same root)")
    sigs = [sig for sig, _ in got]
    ref = sigs[0]
    for r, sig in enumerate(sigs[1:], start=1):
        if len(sig) != len(ref):
            raise ValueError(f"{name}: rank {r} holds {len(sig)} arrays, rank 0 holds {len(ref)}")
        for i, (a, b) in enumerate(zip(ref, sig)):
            if a != b:
                raise ValueError(
                    f"{name}[{i}]: rank {r} holds shape {b[0]} {b[1]} ({b[2]}), "
                    f"rank 0 holds shape {a[0]} {a[1]} ({a[2]})"
                )


def broadcast_params(arrays, comm, root: int = 0) -> None:
    """Copy rank ``root``'s arrays into every rank's arrays, in place (after checking the layouts).

    Arrays are sent one by one (start-up cost, not a training-step path); any layout (a strided
    or Fortran-ordered param, which ``ShardedOptimizer`` takes, moves as a contiguous copy).
    """
    comm = as_communicator(comm)
    if isinstance(arrays, Iterator):  # (read once: the layout check read model.parameters() to its end,
        arrays = list(arrays)  # and nothing was left to broadcast)

    def check(arrays) -> None:  # (this rank's checks, agreed in check_same_params' allgather)
        for i, a in enumerate(arrays):  # (each as bcast checks it: before any array is broadcast)
            _writable(a, f"arrays[{i}]", any_layout=True)
        comm._root(root)

    check_same_params(arrays, comm, "arrays", check, root if isinstance(root, numbers.Integral) else None)
    for a in _backend.as_list(arrays, "arrays"):  # (the layouts and root agreed above)
        if a.flags.c_contiguous:
            comm.bcast(a, root, check=False)
            continue
        # (MPI and NCCL move contiguous bytes: "array must be C-contiguous" refused the params of
        # other layouts that ShardedOptimizer takes, and its docs ask to broadcast)
        with _backend._device_of(a):
            buf = _backend.array_module(a).ascontiguousarray(a)
        comm.bcast(buf, root, check=False)
        if comm.rank != root:
            a[...] = buf
    if comm.rank != root:  # (written through views autograd does not see, as a step writes them)
        _bump_torch_versions(torch_tensors(list(arrays) if isinstance(arrays, (list, tuple)) else [arrays]))
