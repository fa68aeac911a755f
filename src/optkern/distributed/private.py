"""optkern's own communicator beside each of the user's: headers travel in it, and so do the refusal
protocol's notes, headers and allgathers (:mod:`.no_comm`) once ``COMM_WORLD`` has one.

MPI pairs a communicator's collectives by order alone, and a receive with ``MPI.ANY_TAG`` takes any
message. What a refusal leaves behind outlives the call (a header nobody joined in time, kept
pending; a header given up for a note; a note not read yet), and the user's own calls on the same
communicator met it: the next ``Iallreduce`` in ``COMM_WORLD`` returned a refusal header's values
(then both ranks hung), and a ``recv(source=ANY_SOURCE, tag=ANY_TAG)`` there returned a refusing
rank's note as the user's message (then the library waited for that note forever). The standard
remedy, which mpi4py's own collectives of Python objects use: a duplicate of the communicator,
cached on it as an MPI attribute (so every wrapper of the same communicator shares it) and freed
with it.

A duplicate is made collectively, so it is made where every member is present: right after the
first header in the communicator that every member joined for the same call (:func:`adopt`).
Until then the communicator itself carries the headers; a program that never makes a header in
``COMM_WORLD`` (only in ``Split``s of it) has its refusals' notes in ``COMM_WORLD`` itself, under
the tag :data:`.no_comm.NOTE_TAG`.
"""

from __future__ import annotations

from .transport import mpi

#: The attribute key under which a communicator holds its duplicate (made at the first :func:`adopt`).
_key = None


def channel(comm):
    """The communicator optkern's headers in ``comm`` travel in: its duplicate, once made, else
    ``comm`` itself."""
    if _key is None:
        return comm
    own = comm.Get_attr(_key)
    return comm if own is None else own


def adopt(comm) -> None:
    """After a header in ``comm`` that every member joined for the same call (so every member calls
    this together): ``comm``'s duplicate made, unless it has one."""
    global _key
    MPI = mpi()
    if _key is None:
        _key = MPI.Comm.Create_keyval(delete_fn=_free)
    if comm.Get_attr(_key) is None:
        comm.Set_attr(_key, comm.Dup())


def _free(comm, key, own) -> None:
    """``comm`` freed (or MPI finalizing): its duplicate with it."""
    if not mpi().Is_finalized():
        own.Free()
