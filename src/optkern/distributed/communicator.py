"""``Communicator``: the collectives optkern needs, on NumPy (MPI) or CuPy (NCCL or MPI) arrays.

MPI is mpi4py's; NCCL is ``cupy.cuda.nccl`` started over MPI (see :mod:`._nccl`). Nothing
here moves bytes itself: every collective is one library call, plus a sum in rank order
when ``ordered=True``, after its header with ``check=True`` (:mod:`.call_check`).

Ordered reductions gather every rank's array and add them in rank order
(``((x_0 + x_1) + x_2) + ...``), so the result is bitwise the same on every rank, in
every run, for any MPI library or algorithm; iterative estimators (Lanczos) need that:
ranks that disagree by one rounding take different paths and then wait on each other
forever. They move ``world`` times the bytes of a plain reduction and hold that many in
memory; plain ``allreduce`` is MPI's (usually the same bits on every rank, not promised).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _backend
from .._torch_written import given_out
from . import no_comm
from ._arrays import (
    _contiguous,
    _overlap,
    _ptr,
    _same_kind,
    _scale_mean,
    _writable,
    rank_order_reduce,
    rounded_to,
)
from .agreement import _raise_any, _said, extremes
from .call_check import alike
from .object_collectives import ObjectCollectives
from .transport import _OPS, mpi


class Communicator(ObjectCollectives):
    """Collectives over an MPI communicator, on NumPy or CuPy arrays.

    Torch tensors and other DLPack exporters (DESIGN §3) are moved through their zero-copy view: an
    in-place result is written in the caller's memory and the caller's object returned; as for NumPy
    arrays, a non-C-contiguous one or a read-only export is refused naming it.

    Args:
      comm: an ``mpi4py.MPI.Comm`` (default ``COMM_WORLD``) or another Communicator.
      backend: ``"mpi"``: every array goes through MPI (CuPy arrays too: CUDA-aware MPI
        with ``cuda_aware=True``, else staged through host memory). ``"nccl"``: CuPy arrays
        go through NCCL (``cupy.cuda.nccl``, its id broadcast over MPI); NumPy arrays through
        MPI. ``"auto"``: NCCL for CuPy arrays where every rank has CuPy, NCCL and a GPU of
        its own, else MPI.
      ordered: rank-ordered, bitwise reproducible reductions (see the module docstring).
      cuda_aware: the MPI library takes device pointers (``backend="mpi"`` with CuPy arrays).

    Collectives synchronize CuPy's current stream before MPI reads device memory; NCCL
    calls are enqueued on that stream without a host synchronization. Each method is a
    collective: every rank calls it, in the same order, with arrays of the same size and
    dtype. Arguments are checked before any communication. With ``check=True`` (the default)
    the ranks' arguments are compared too, in the call's header (one small allreduce,
    :mod:`.call_check`): arrays of different sizes or dtypes, another ``op``, ``ordered`` or
    ``root`` raise ValueError naming the argument on every rank, and an argument refused on one
    rank raises on every rank (its own error there, the same type naming that rank elsewhere),
    before anything is sent or written (MPI gave MPI_ERR_TRUNCATE on one rank and garbage on
    another, or a different result per rank). ``check=False``, passed alike on every rank,
    saves that message where the caller knows the ranks agree (optkern's wrappers agree at
    set-up and in their own per-call header): each rank then checks its own arguments only,
    and a rank alone with bad ones raises while the others wait in the collective -- run under
    ``python -m mpi4py``, which turns that into an abort of the job. After ``MPI.Finalize()``
    every collective raises RuntimeError.

    A ``comm`` refused on one rank only (no communicator, an intercommunicator) raises on every
    rank: the others are told in their first exchange in ``COMM_WORLD`` (:mod:`.no_comm`), unless
    they were given another communicator (that rank then raises alone, after
    ``no_comm.WAIT_S`` seconds). ``MPI.COMM_NULL`` is refused on its own rank only (a rank left
    out of a ``Split``: the others' communicator is not its own). The headers travel in a duplicate
    of ``comm`` (:mod:`.private`, made at its first header), so the caller's own mpi4py calls on
    ``comm`` between two of these never meet one a refusal left pending. That duplicate is a
    second MPI context id per wrapped communicator (MPICH has ~2,000): ``Free()`` the
    communicators a program splits repeatedly, and the duplicate goes with each. A rank that
    refused holds its refusal until every rank of ``COMM_WORLD`` has heard it: its next
    call in any communicator of more than one rank waits for the others' next exchange in
    ``COMM_WORLD`` (without a time limit), so that no later header meets the stale one.
    """

    def __init__(
        self, comm=None, backend: str = "auto", ordered: bool = False, *, cuda_aware: bool = False, _alike=False
    ):
        MPI = mpi()
        try:
            comm = _mpi_comm(comm)
        except (TypeError, ValueError) as e:
            if isinstance(comm, MPI.Comm) and comm == MPI.COMM_NULL:  # (a rank left out of a Split:
                raise  # the others' communicator is not its own, none waits for it)
            # (the others wait in their first exchange: this rank joins it from COMM_WORLD to say so)
            raise no_comm.refuse(e) from None
        # this rank's arguments checked inside the exchange below, the outcome agreed on: a rank
        # alone with a bad one (backend='foo', ordered='yes') raised here while the others waited
        # in that exchange forever
        err = None
        try:
            if not isinstance(backend, str) or backend not in ("auto", "mpi", "nccl"):
                raise ValueError(f"backend: expected 'auto', 'mpi' or 'nccl', got {backend!r}")
            for name, flag in (("ordered", ordered), ("cuda_aware", cuda_aware)):
                _backend.flag(name, flag)
        except (TypeError, ValueError) as e:
            if _alike:  # (made alike on every rank: no exchange to report into)
                raise
            err, backend, ordered = e, "", False  # (compared after the refusal is raised: never)
        self.mpi: Any = comm
        self._finalized = MPI.Is_finalized  # (asked by every collective: see _live)
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.ordered = bool(ordered)
        self.cuda_aware = bool(cuda_aware)
        self.backend = backend
        self._nccl = None
        from . import _nccl

        if _alike and backend == "mpi":  # (as_communicator: made alike on every rank, at every call)
            return
        # decided together, and compared: a rank with another backend or ordering waited alone in
        # this exchange, or in another collective than the others' at the first reduction (hung)
        key = _nccl.device_key() if err is None and backend != "mpi" else None
        # (a header first, as every exchange opening a call that takes a comm: no_comm's refusing
        # rank joins it; the allgather of pickled objects after it has a length of its own)
        extremes(self, [], "Communicator()")
        infos = comm.allgather((backend, self.ordered, key, _said(err)))
        _raise_any(err, [said for *_, said in infos])
        for i, name in enumerate(("backend", "ordered")):
            r = next((r for r, v in enumerate(infos) if v[i] != infos[0][i]), None)
            if r is not None:
                raise ValueError(
                    f"{name}: {infos[0][i]!r} on rank 0, {infos[r][i]!r} on rank {r} (make the Communicator "
                    "alike on every rank: the ranks' collectives would not pair up and wait forever)"
                )
        if backend != "mpi":
            keys = [k for _, _, k, _ in infos]
            if None not in keys and len(set(keys)) == len(keys):
                self._nccl = _nccl.NcclComm(comm)
            elif backend == "nccl":
                missing = [r for r, k in enumerate(keys) if k is None]
                why = (
                    f"rank {missing[0]} has no CuPy with NCCL and a GPU"
                    if missing
                    else "two ranks use the same GPU (select one per rank: cupy.cuda.Device(local_rank).use())"
                )
                raise RuntimeError(f"backend='nccl': {why}")

    def __repr__(self) -> str:
        return (
            f"Communicator(rank={self.rank}, size={self.size}, backend={self.backend!r}, "
            f"nccl={self._nccl is not None}, ordered={self.ordered})"
        )

    # ---- collectives ------------------------------------------------------------------

    def _agreed(self, call: str, check, args):
        """The result of ``args()`` (this rank's checks of a call's arguments: ``(result, fields)``).
        ``check`` (a bool, alike on every rank): the ranks' fields compared first and a refusal on
        any rank raised on every rank (:func:`.call_check.alike`, one small allreduce); without it
        each rank checks its own arguments only, no message."""
        if not _backend.flag("check", check) or self.size == 1:
            return args()[0]
        try:
            got, fields = args()
            err = None
        except (TypeError, ValueError) as e:
            got, fields, err = None, (), e
        alike(self, call, err, fields)
        return got

    def allreduce(self, x, op: str = "sum", *, ordered: bool | None = None, check: bool = True):
        """Reduce ``x`` over all ranks, in place; returns ``x`` (the caller's object: a torch tensor's
        own memory is reduced, see the class).

        ``op``: ``"sum"``, ``"mean"``, ``"max"`` or ``"min"`` (a NaN on any rank is NaN on every
        rank, as NumPy's ``maximum`` / ``minimum`` propagate it; bools: ``sum`` and ``max`` any rank,
        ``min`` every rank). ``ordered`` overrides the communicator's setting for this call.
        ``check``: the ranks' ``x`` (size, dtype), ``op`` and ordering compared first (see the class).
        """
        self._live("allreduce")

        def args():
            v = _writable(x, "x")
            self._check_op(op, _OPS, v)
            if ordered is not None:
                _backend.flag("ordered", ordered)
            in_order = self.ordered if ordered is None else bool(ordered)
            return v, (("x", v), ("op", op), ("ordered", in_order))

        v = self._agreed("allreduce", check, args)
        self._allreduce(v, op, ordered)
        return given_out(x, v)  # (a torch tensor's version bumped: written as by an in-place op)

    def _allreduce(self, x, op: str, ordered) -> None:
        """:meth:`allreduce` of the checked NumPy / CuPy ``x``, in place."""
        if self._in_float32(x, ordered, op) and x.size and self.size > 1:  # rounded to nearest even once
            w = x.astype(np.float32)
            self.allreduce(w, op, ordered=ordered, check=False)
            x[...] = rounded_to(w, x.dtype)
            return
        if x.size == 0 or self.size == 1:
            if op == "mean":
                _scale_mean(x.reshape(-1), self.size)
            return
        if self.ordered if ordered is None else ordered:
            rank_order_reduce(self._gather_rows(x), op, x)
            return
        nc = self._nccl_for(x)
        if nc is not None:
            nc.allreduce(x, "sum" if op == "mean" else op)
        elif op in ("max", "min") and x.dtype.kind == "f":
            self._mpi_extreme(x, op)
        else:
            self._mpi_allreduce(x, op)
        if op == "mean":
            _scale_mean(x.reshape(-1), self.size)

    def reduce_scatter(self, x, op: str = "sum", out=None, *, ordered: bool | None = None, check: bool = True):
        """Rank ``r`` receives block ``r`` of ``x`` (``x.size / world`` elements) reduced over ranks.

        ``op``: ``"sum"`` or ``"mean"``; ``out``: optional contiguous result array (not
        overlapping ``x``: ValueError), a torch tensor too (written in its own memory). Returns
        ``out`` (the caller's object), else a new NumPy / CuPy array (NumPy for a host torch
        ``x``). ``check``: as for :meth:`allreduce`.
        """
        self._live("reduce_scatter")

        def args():
            v = _contiguous(x, "x")
            self._check_op(op, ("sum", "mean"), v)
            if ordered is not None:
                _backend.flag("ordered", ordered)
            if v.size % self.size:
                raise ValueError(f"x: has {v.size} elements, not a multiple of the world size {self.size}")
            n = v.size // self.size
            o = _backend.array_module(v).empty(n, dtype=v.dtype) if out is None else _writable(out, "out")
            _same_kind(v, o, "x", "out")
            if o.size != n:
                raise ValueError(f"out: expected {_backend.counted(n, 'element')}, got {o.size}")
            # MPI refuses aliased buffers (an MPI error, then some ranks wait forever). Refused here
            # instead, before any message: an out cut from x overlaps it on every rank alike
            if _overlap(v, o):
                raise ValueError("out: overlaps x (the result needs memory of its own)")
            in_order = self.ordered if ordered is None else bool(ordered)
            return (v, o), (("x", v), ("op", op), ("ordered", in_order))

        v, o = self._agreed("reduce_scatter", check, args)
        self._reduce_scatter(v, op, o, ordered)
        return o if out is None else given_out(out, o)

    def _reduce_scatter(self, x, op: str, out, ordered) -> None:
        """:meth:`reduce_scatter` of the checked NumPy / CuPy ``x`` into ``out``."""
        n = out.size
        if n == 0:
            return
        if self._in_float32(x, ordered, op) and self.size > 1:  # rounded to nearest even once
            w = self.reduce_scatter(x.astype(np.float32), op, ordered=ordered, check=False)
            out[...] = rounded_to(w.reshape(out.shape), x.dtype)
            return
        xp = _backend.array_module(x)
        flat = x.reshape(-1)
        if self.size == 1:
            xp.copyto(out.reshape(-1), flat)
            return
        if self.ordered if ordered is None else ordered:
            rows = self._alltoall_rows(flat.reshape(self.size, n))
            rank_order_reduce(rows, op, out)
            return
        nc = self._nccl_for(x)
        if nc is not None:
            nc.reduce_scatter(flat, out.reshape(-1))
        else:
            send, recv = self._mpi_buf(flat), self._mpi_buf(out)
            self.mpi.Reduce_scatter_block(send, recv, op=self._op("sum", x))
            self._mpi_back(recv, out)
        if op == "mean":
            _scale_mean(out.reshape(-1), self.size)

    def allgather(self, x, out=None, *, check: bool = True):
        """Every rank's ``x`` concatenated in rank order (``world * x.size`` elements); returns it.

        ``x`` may be ``out``'s own block (``out[rank * n:(rank + 1) * n]``): gathered in place;
        an ``x`` overlapping ``out`` elsewhere is copied first. ``out``: a torch tensor too (written
        in its own memory); returned as the caller's object, else a new NumPy / CuPy array (NumPy
        for a host torch ``x``). ``check``: the ranks' ``x`` (size, dtype) compared first (see the class).
        """
        self._live("allgather")

        def args():
            v = _contiguous(x, "x")
            n = v.size
            o = _backend.array_module(v).empty(n * self.size, dtype=v.dtype) if out is None else _writable(out, "out")
            _same_kind(v, o, "x", "out")
            if o.size != n * self.size:
                want = _backend.counted(n * self.size, "element")
                raise ValueError(f"out: expected {want} (world x {n}), got {o.size}")
            return (v, o), (("x", v),)

        v, o = self._agreed("allgather", check, args)
        self._allgather(v, o)
        return o if out is None else given_out(out, o)

    def _allgather(self, x, out) -> None:
        """:meth:`allgather` of the checked NumPy / CuPy ``x`` into ``out``."""
        xp = _backend.array_module(x)
        n = x.size
        in_place = n > 0 and _ptr(x) == _ptr(out) + self.rank * n * x.itemsize
        if not in_place and _overlap(x, out):
            # x lies in out elsewhere than its own block: gathered from a copy (MPI refuses aliased
            # buffers). Not refused: x = out[0:n] is rank 0's own block but overlaps on the other
            # ranks, and an error on some ranks only would leave rank 0 waiting in the collective.
            x = x.copy()
        if n == 0:
            return
        if self._as_bits(x):
            self.allgather(x.view(np.uint16), out.view(np.uint16), check=False)
            return
        if self.size == 1:
            if not in_place:
                xp.copyto(out.reshape(-1), x.reshape(-1))
            return
        nc = self._nccl_for(x)
        if nc is not None:
            nc.allgather(x.reshape(-1), out.reshape(-1))  # NCCL allows the in-place block
            return
        recv = self._mpi_buf(out)
        if in_place:
            self.mpi.Allgather(mpi().IN_PLACE, recv)
        else:
            self.mpi.Allgather(self._mpi_buf(x), recv)
        self._mpi_back(recv, out)

    def bcast(self, x, root: int = 0, *, check: bool = True):
        """Rank ``root``'s ``x`` into every rank's ``x``, in place; returns ``x`` (the caller's
        object: a torch tensor's own memory is written, see the class). ``check``: the ranks' ``x``
        (size, dtype) and ``root`` compared first (see the class)."""
        self._live("bcast")

        def args():
            v = _writable(x, "x")
            r = self._root(root)
            return (v, r), (("x", v), ("root", r))

        v, r = self._agreed("bcast", check, args)
        self._bcast(v, r)
        return given_out(x, v)

    def _bcast(self, x, root: int) -> None:
        """:meth:`bcast` of the checked NumPy / CuPy ``x``, in place."""
        if x.size == 0 or self.size == 1:
            return
        if self._as_bits(x):
            self.bcast(x.view(np.uint16), root, check=False)
            return
        nc = self._nccl_for(x)
        if nc is not None:
            nc.bcast(x, root)
            return
        buf = self._mpi_buf(x)
        self.mpi.Bcast(buf, root=root)
        self._mpi_back(buf, x)


def _mpi_comm(comm):
    """``comm`` (a Communicator, an mpi4py intracommunicator, None: ``COMM_WORLD``) as an mpi4py
    communicator; TypeError / ValueError naming ``comm``, RuntimeError where MPI is not running."""
    MPI = mpi()
    if isinstance(comm, Communicator):
        comm = comm.mpi
    comm = MPI.COMM_WORLD if comm is None else comm
    if not isinstance(comm, MPI.Comm):
        raise TypeError(f"comm: expected an mpi4py.MPI.Comm or a Communicator, got {type(comm).__name__}")
    # MPICH aborts the process (no Python exception, nothing to catch) on any call before
    # MPI_Init or after MPI_Finalize: asked first, the answer is an error saying so
    if MPI.Is_finalized():
        raise RuntimeError("comm: MPI is already finalized (make Communicators before MPI.Finalize())")
    if not MPI.Is_initialized():
        raise RuntimeError("comm: MPI is not initialized (mpi4py.rc.initialize is False: call MPI.Init() first)")
    if comm == MPI.COMM_NULL:
        raise ValueError("comm: is MPI.COMM_NULL (e.g. a Split with color MPI.UNDEFINED on this rank)")
    if comm.Is_inter():
        # an intercommunicator's size is its local group's, and its collectives combine the
        # remote group's data: accepted, every collective here returned wrong values or failed
        raise TypeError("comm: an intercommunicator is not supported (Merge() it into an intracommunicator)")
    return comm


def as_communicator(comm) -> Communicator:
    """A Communicator for ``comm`` (a Communicator, an mpi4py communicator, or None: COMM_WORLD)."""
    return comm if isinstance(comm, Communicator) else Communicator(comm, backend="mpi", _alike=True)
