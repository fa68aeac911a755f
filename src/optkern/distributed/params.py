"""Parameters across ranks: the same layout everywhere (checked), the same values (broadcast)."""

from __future__ import annotations

import numpy as np

from .. import _backend
from .communicator import as_communicator


def _signature(arrays) -> list:
    return [(tuple(int(s) for s in a.shape), str(a.dtype), "cupy" if _backend.is_cupy(a) else "numpy") for a in arrays]


def check_same_params(arrays, comm, name: str = "params") -> None:
    """Raise ValueError on every rank unless every rank holds arrays of the same shapes and dtypes.

    One allgather of the (shape, dtype) lists, then every rank compares all of them, so
    every rank raises the same error (naming the first mismatch) and none waits alone.
    """
    comm = as_communicator(comm)
    arrays = _backend.as_list(arrays, name)
    for i, a in enumerate(arrays):
        if not (isinstance(a, np.ndarray) or _backend.is_cupy(a)):
            raise TypeError(f"{name}[{i}]: expected a numpy or cupy array, got {type(a).__name__}")
    sigs = comm.allgather_object(_signature(arrays))
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

    Arrays are sent one by one (start-up cost, not a training-step path).
    """
    comm = as_communicator(comm)
    arrays = _backend.as_list(arrays, "arrays")
    for i, a in enumerate(arrays):
        if not (isinstance(a, np.ndarray) or _backend.is_cupy(a)):
            raise TypeError(f"arrays[{i}]: expected a numpy or cupy array, got {type(a).__name__}")
        if not a.flags.c_contiguous:
            raise ValueError(f"arrays[{i}]: array must be C-contiguous")
        if isinstance(a, np.ndarray) and not a.flags.writeable:
            raise ValueError(f"arrays[{i}]: array is read-only")
    check_same_params(arrays, comm, "arrays")
    for a in arrays:
        comm.bcast(a, root)


def agree(comm, fn):
    """``fn()`` on every rank, which returns ``(local, shared)``; returns ``(local, [every rank's
    shared])``. A TypeError / ValueError from ``fn`` on any rank raises on every rank (the rank's
    own error, or the lowest failing rank's, same type, saying which rank): no rank goes on to a
    collective the others never enter. One allgather of small objects (set-up, not steps)."""
    try:
        local, shared = fn()
        err = None
    except (TypeError, ValueError) as e:
        local, shared, err = None, None, e
    got = comm.allgather_object((None if err is None else (type(err).__name__, str(err)), shared))
    if err is not None:
        raise err
    for r, (theirs, _) in enumerate(got):
        if theirs is not None:
            raise (TypeError if theirs[0] == "TypeError" else ValueError)(f"{theirs[1]} (on rank {r})")
    return local, [s for _, s in got]
