"""NCCL collectives on CuPy arrays through ``cupy.cuda.nccl`` (no other transport).

The communicator is created once per MPI communicator: rank 0 makes NCCL's unique id,
mpi4py broadcasts it, every rank joins with its MPI rank, on its current CuPy device
(choose it before creating the Communicator, e.g. ``cupy.cuda.Device(local_rank).use()``).
Every call is enqueued on CuPy's current stream; nothing here synchronizes the host.
This path needs GPUs; its tests skip where there are none.
"""

from __future__ import annotations

import numpy as np


def device_key():
    """(host, PCI bus id) of the current CuPy device when CuPy with NCCL can use it, else None.

    NCCL refuses two ranks on one GPU, so ``backend="auto"`` uses it only when every rank has
    a key and no two keys are equal.
    """
    try:
        import socket

        import cupy
        from cupy.cuda import nccl
    except Exception:  # CuPy missing or built without NCCL: no NCCL here
        return None
    try:
        if not getattr(nccl, "available", True) or cupy.cuda.runtime.getDeviceCount() == 0:
            return None
        return socket.gethostname(), cupy.cuda.Device().pci_bus_id
    except Exception:  # no driver / device: no NCCL here
        return None


def _dtype(nccl, dt) -> int:
    table = {
        np.dtype(np.float32): nccl.NCCL_FLOAT32,
        np.dtype(np.float64): nccl.NCCL_FLOAT64,
        np.dtype(np.float16): nccl.NCCL_FLOAT16,
        np.dtype(np.int32): nccl.NCCL_INT32,
        np.dtype(np.int64): nccl.NCCL_INT64,
    }
    try:
        return table[np.dtype(dt)]
    except KeyError:
        raise TypeError(f"x: NCCL collectives take float16/32/64 or int32/64 arrays, got {dt}") from None


class NcclComm:
    """One ``cupy.cuda.nccl.NcclCommunicator`` spanning the ranks of an MPI communicator."""

    def __init__(self, mpi_comm):
        from cupy.cuda import nccl

        self._nccl = nccl
        uid = nccl.get_unique_id() if mpi_comm.Get_rank() == 0 else None
        uid = mpi_comm.bcast(uid, root=0)
        self.size = mpi_comm.Get_size()
        self.rank = mpi_comm.Get_rank()
        self.comm = nccl.NcclCommunicator(self.size, uid, self.rank)
        self._ops = {"sum": nccl.NCCL_SUM, "max": nccl.NCCL_MAX, "min": nccl.NCCL_MIN}

    @staticmethod
    def _stream() -> int:
        import cupy

        return cupy.cuda.get_current_stream().ptr

    def allreduce(self, x, op: str) -> None:
        p = x.data.ptr
        self.comm.allReduce(p, p, x.size, _dtype(self._nccl, x.dtype), self._ops[op], self._stream())

    def reduce_scatter(self, x, out) -> None:
        self.comm.reduceScatter(
            x.data.ptr, out.data.ptr, out.size, _dtype(self._nccl, x.dtype), self._nccl.NCCL_SUM, self._stream()
        )

    def allgather(self, x, out) -> None:
        self.comm.allGather(x.data.ptr, out.data.ptr, x.size, _dtype(self._nccl, x.dtype), self._stream())

    def bcast(self, x, root: int) -> None:
        self.comm.bcast(x.data.ptr, x.size, _dtype(self._nccl, x.dtype), root, self._stream())

    def alltoall(self, blocks, rows) -> None:
        """Row ``r`` of ``rows`` <- rank ``r``'s row ``self.rank`` of ``blocks`` (grouped send/recv)."""
        nccl, s = self._nccl, self._stream()
        n = blocks.shape[1]
        dt = _dtype(nccl, blocks.dtype)
        step = n * blocks.itemsize
        nccl.groupStart()
        try:
            for r in range(self.size):
                self.comm.send(blocks.data.ptr + r * step, n, dt, r, s)
                self.comm.recv(rows.data.ptr + r * step, n, dt, r, s)
        finally:
            nccl.groupEnd()
