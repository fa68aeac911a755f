"""How a :class:`~optkern.distributed.communicator.Communicator`'s arrays travel: MPI or NCCL
(``_nccl_for``), staged through host memory or not (``_mpi_buf`` / ``_mpi_back``), as 16-bit
words or reduced in float32 (``_as_bits`` / ``_in_float32``); MPI's reduction ops, with NaN kept
the same on every rank by MAX / MIN (``_mpi_extreme``); and the ordered reductions' building
blocks (every rank's rows by one allgather or alltoall). A base of ``Communicator``, which sets
the attributes declared below; its public collectives are in :mod:`.communicator`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _backend
from ._arrays import _is_bf16, _is_half_bits

_OPS = ("sum", "mean", "max", "min")


def mpi():
    """mpi4py's ``MPI`` module, or ImportError saying how to get it."""
    try:
        from mpi4py import MPI
    except ImportError as e:  # pragma: no cover - mpi4py is installed where the tests run
        raise ImportError(
            "optkern.distributed needs mpi4py: pip install 'optkern[mpi]' "
            "(mpi4py and an MPI library, e.g. the mpich wheel)"
        ) from e
    return MPI


class Transport:
    """The per-array plumbing of :class:`~optkern.distributed.communicator.Communicator`."""

    if TYPE_CHECKING:  # (set by Communicator.__init__)
        mpi: Any
        rank: int
        size: int
        ordered: bool
        cuda_aware: bool
        _nccl: Any
        _finalized: Any

        def allgather(self, x, out=None, *, check: bool = True): ...

    def _live(self, where: str) -> None:
        """RuntimeError unless MPI can still run collectives. Any MPI call after ``MPI_Finalize``
        aborts the whole process in MPICH (no exception: nothing for a caller to catch or a log
        to explain), so every collective asks first, before it reads or writes an array
        (``MPI_Finalized`` is callable at any time; the question costs ~0.1 us a call)."""
        if self._finalized():
            raise RuntimeError(f"{where}: MPI is finalized (MPI.Finalize() was called): no collective can run")

    def _nccl_for(self, x):
        return self._nccl if (self._nccl is not None and _backend.is_cupy(x)) else None

    def _as_bits(self, x) -> bool:
        """Whether ``x`` moves as its uint16 bits: a 16-bit float going through MPI (NCCL moves
        float16 itself, and has no uint16)."""
        return _is_half_bits(x) and self._nccl_for(x) is None

    def _in_float32(self, x, ordered: bool | None, op: str) -> bool:
        """Whether a reduction of ``x`` runs in float32, rounded once to ``x``'s dtype: bfloat16
        (no MPI library has it), float16 that MPI would reduce (Open MPI 4 refuses float16 in
        reductions, "MPI_ERR_TYPE: invalid datatype", though mpi4py maps it; one rule for every
        library gives the same bits everywhere), and every float16 mean: a float16 sum overflows
        past 65504 where the mean does not (2 ranks' gradients near 40000 averaged to inf on the
        ordered path and through NCCL; the wrappers' averages go through here). Ordered float16
        sums stay float16 (the rows move as bits and are added here); NCCL sums float16 itself."""
        if _is_bf16(x):
            return True
        if x.dtype != np.float16:
            return False
        in_order = self.ordered if ordered is None else ordered
        return op == "mean" or (not in_order and self._nccl_for(x) is None)

    def _mpi_buf(self, x):
        """What mpi4py gets for ``x``: NumPy as is; CuPy after a stream sync (device or host copy)."""
        if not _backend.is_cupy(x):
            return x
        import cupy

        cupy.cuda.get_current_stream().synchronize()  # MPI reads memory now, not in stream order
        return x if self.cuda_aware else x.get()

    def _mpi_back(self, host, x) -> None:
        """Staged CuPy results back to the device (no-op for NumPy and CUDA-aware MPI)."""
        if host is not x:
            x.set(host)

    def _op(self, op: str, x):
        MPI = mpi()
        if x.dtype == np.bool_:  # (MPI's SUM / MAX / MIN take no C bool: NumPy's in-place bool results)
            return {"sum": MPI.LOR, "max": MPI.LOR, "min": MPI.LAND}[op]
        return {"sum": MPI.SUM, "mean": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}[op]

    def _check_op(self, op: str, allowed=_OPS, x=None) -> str:
        if not isinstance(op, str) or op not in allowed:  # (an array would make `in` ambiguous)
            raise ValueError(f"op: expected one of {', '.join(map(repr, allowed))}, got {op!r}")
        if op == "mean" and x is not None and x.dtype.kind != "f" and not _is_bf16(x):
            raise TypeError(f"x: op='mean' needs a floating-point array, got {x.dtype}")
        if op in ("max", "min") and x is not None and x.dtype.kind == "c":  # (MPI has no order of them)
            raise TypeError(f"x: op={op!r} needs real numbers, got {x.dtype}")
        return op

    def _mpi_allreduce(self, x, op: str) -> None:
        buf = self._mpi_buf(x)
        self.mpi.Allreduce(mpi().IN_PLACE, buf, op=self._op(op, x))
        self._mpi_back(buf, x)

    def _header_reduce(self, buf: np.ndarray) -> None:
        """MPI's MAX of a header (:func:`.agreement.extremes`, float64 on the host), nonblocking as
        every header is: a rank refusing its ``comm`` joins the others' header with a nonblocking
        allreduce it can give up, and MPI never matches it with a blocking one (:func:`.no_comm.header`)."""
        from . import no_comm

        no_comm.header(self.mpi, buf, self.size)

    def _mpi_extreme(self, x, op: str) -> None:
        """MPI's MAX / MIN of floats, a NaN propagated as NumPy's ``maximum`` / ``minimum`` do.

        MPI's MAX and MIN are C comparisons (``a > b ? a : b``): a NaN is kept or dropped by the
        order in which the ranks' values meet, which differs between ranks (recursive doubling).
        The ranks got different results: a NaN gradient norm on one rank (``clip_grad_norm_(...,
        norm_type=inf, comm=)``) came back NaN on some ranks and finite on others, and their
        replicas diverged. One more element says "a NaN here" (0 or +-1: exact under MAX / MIN,
        the same on every rank); only when some rank had one does a second reduction say where.
        """
        xp = _backend.array_module(x)
        flat = x.reshape(-1)
        nan = xp.isnan(flat)
        buf = xp.empty(flat.size + 1, dtype=x.dtype)
        buf[:-1] = flat
        buf[-1:] = xp.any(nan)
        if op == "min":
            buf[-1:] *= -1
        self._mpi_allreduce(buf, op)
        if float(buf[-1]) != 0.0:
            where = nan.astype(np.uint8)
            self._mpi_allreduce(where, "max")
            buf[:-1][where.astype(bool)] = xp.nan
        flat[...] = buf[:-1]

    def _root(self, root) -> int:
        root = _backend.integer("root", root, lo=0)
        if root >= self.size:
            raise ValueError(f"root: must be < the world size {self.size}, got {root}")
        return root

    # ---- ordered building blocks --------------------------------------------------------

    def _gather_rows(self, x):
        """``(world, x.size)``: every rank's ``x`` (one allgather)."""
        xp = _backend.array_module(x)
        rows = xp.empty((self.size, x.size), dtype=x.dtype)
        self.allgather(x.reshape(-1), rows.reshape(-1), check=False)  # (the caller's call agreed)
        return rows

    def _alltoall_rows(self, blocks):
        """``(world, n)``: row ``r`` is rank ``r``'s block number ``self.rank`` (one alltoall)."""
        if self._as_bits(blocks):
            return self._alltoall_rows(blocks.view(np.uint16)).view(blocks.dtype)
        xp = _backend.array_module(blocks)
        rows = xp.empty_like(blocks)
        nc = self._nccl_for(blocks)
        if nc is not None:
            nc.alltoall(blocks, rows)
            return rows
        send, recv = self._mpi_buf(blocks), self._mpi_buf(rows)
        self.mpi.Alltoall(send, recv)
        self._mpi_back(recv, rows)
        return rows
