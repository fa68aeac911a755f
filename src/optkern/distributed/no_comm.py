"""A rank whose ``comm`` argument is no communicator still tells the others, who wait in a collective.

``Communicator(comm='x')`` (or an intercommunicator) on one rank raised there at once, while the
ranks given a good communicator went on into their first exchange and waited in it forever: the
refusing rank had no communicator to report into. It reports into ``COMM_WORLD`` (the default,
``comm=None``, where the others are unless they were given another): every exchange that opens a
call taking a communicator -- ``Communicator()``'s own, a wrapper's set-up
(:func:`.agreement.agree`), a checked collective (:mod:`.call_check`), an estimator's -- begins
with a header of one length (:data:`.agreement.HEADER`), a nonblocking allreduce. This rank joins
that header with a code no call has, so every rank sees "different calls"
(:func:`.agreement.calls_apart`) and joins one allgather of what each is doing, where this rank
sends its refusal: it raises its own error (a TypeError / ValueError naming ``comm``), the others
the same type, saying which rank. (``MPI.COMM_NULL`` is not reported: :class:`.Communicator`
refuses it on its own rank only -- a rank left out of a ``Split``, whose communicator is not the
others'.)

Where the others were given another communicator (a ``Split`` or ``Dup`` of the world) nobody is in
``COMM_WORLD``'s header: they wait in their own communicator's header, which this rank never joins.
So this rank also sends every other rank a note (:data:`NOTE_TAG`, point to point in ``COMM_WORLD``),
and a header in a communicator other than the world waits by polling (:func:`wait_header`): a rank
that finds a note from a member of that communicator (who, having refused, will never come) joins
this rank's header in ``COMM_WORLD`` and its allgather, and raises this rank's error, saying which
rank. A note from a rank that is no member of the communicator waited in is left alone; a rank that
met the refusal in ``COMM_WORLD``'s own header takes the note from the queue there (:func:`drain`),
so that none is read later as a new refusal. Where some rank never comes to a header (it works in a
communicator without this rank), this rank waits :data:`WAIT_S` seconds, then raises its own error
alone (as before). Nonblocking for that reason: a blocking allreduce could not be given up, and MPI
never matches a nonblocking collective with a blocking one, so every header is nonblocking
(:meth:`.transport.Transport._header_reduce`). A collective request cannot be cancelled, though:
a rank arriving after ``WAIT_S`` meets that request in its header, MPI matching ``COMM_WORLD``'s
collectives in order. So the request is kept (:func:`settle`) and completed before this rank's next
header in ``COMM_WORLD`` (or next refusal), without a deadline: the late ranks are told then -- the
allgather they enter -- and this rank's call raises too (the late ranks gave theirs up), where
before both waited forever, each in a collective the other was not in.
"""

from __future__ import annotations

import time

import numpy as np

from .agreement import HEADER, _code, _said, calls_apart
from .transport import PENDING_REFUSALS as _pending
from .transport import mpi

#: Seconds a rank refusing its ``comm`` waits for the others' header in ``COMM_WORLD``.
WAIT_S = 30.0

#: The header's code for "this rank refused its communicator": no call's name hashes to it alike.
CALL = "a constructor whose comm argument was refused"

#: The tag of a refusing rank's note to each other rank in ``COMM_WORLD`` (see the module doc).
NOTE_TAG = 0x0C0FFEE

#: The header a rank puts into the refusing rank's ``COMM_WORLD`` header when a note called it there.
_JOINED = "a header in another communicator, left for a refusal"

#: This rank's sent notes (their requests, completed once the others took them, or at exit).
_sent: list = []


def refuse(err: Exception) -> Exception:
    """``err`` (this rank's refusal of its ``comm``), returned to be raised once the other ranks,
    waiting in a header of ``COMM_WORLD``, have been told (see the module doc). MPI not running
    (not initialized, finalized) or a world of one: returned at once, nobody to tell."""
    MPI = mpi()
    if not MPI.Is_initialized() or MPI.Is_finalized() or MPI.COMM_WORLD.Get_size() == 1:
        return err
    world = MPI.COMM_WORLD
    settle(world)  # (an earlier refusal's header first: COMM_WORLD's collectives match in order)
    note = refusal(err)
    _sent.extend(world.isend(note, dest=r, tag=NOTE_TAG) for r in range(world.Get_size()) if r != world.Get_rank())
    buf = np.zeros(2 * HEADER)  # (the header's layout: (value, -value) pairs, the code first)
    buf[0], buf[1] = _code(CALL), -_code(CALL)
    req = world.Iallreduce(MPI.IN_PLACE, buf, op=MPI.MAX)
    deadline = time.monotonic() + WAIT_S
    while not req.Test():
        if time.monotonic() > deadline:  # (nobody in COMM_WORLD's header: see the module doc)
            _pending.append((req, buf, err))  # (kept: completed by settle before the next header)
            return err
        time.sleep(1e-3)
    _told(world, err)
    return err


def settle(comm) -> Exception | None:
    """Before a header in ``comm``: where it is ``COMM_WORLD`` and a refusal's header of this rank is
    still pending there, that header completed first -- waiting without a deadline, as the ranks
    that come later meet it in their own header -- and the late ranks told (see the module doc).
    Returns the error the caller's call raises then (its refusal, reported late), else None."""
    if not _pending:
        return None
    MPI = mpi()
    if comm != MPI.COMM_WORLD or MPI.Is_finalized():
        return None
    req, _, err = _pending.pop()
    req.Wait()
    _told(comm, err)
    return type(err)(
        f"{err} (this rank's refusal, reported after no_comm.WAIT_S seconds: the other ranks' next exchange "
        "in COMM_WORLD met it and raised; this call is given up with them)"
    )


def _told(world, err: Exception) -> None:
    """The refusal's header completed: the others saw another call's code in it (or every rank
    refused alike): calls_apart's allgather, with this refusal (the notes of other refusing ranks
    taken from the queue; this rank's own sent ones completed, as every rank took them)."""
    drain(world.allgather(refusal(err)), world)
    while _sent:
        _sent.pop().Wait()


def drain(calls: list, comm) -> None:
    """After ``calls_apart``'s allgather in ``COMM_WORLD`` (``comm``): the note of each rank that
    refused (a tuple among ``calls``) taken from this rank's queue, where it would be read as a
    new refusal by this rank's next header in another communicator."""
    MPI = mpi()
    if comm != MPI.COMM_WORLD:
        return
    me = comm.Get_rank()
    for r, c in enumerate(calls):
        if isinstance(c, tuple) and r != me:
            comm.recv(source=r, tag=NOTE_TAG)


def wait_header(req, comm) -> None:
    """Wait for header request ``req`` in ``comm`` (not ``COMM_WORLD``), reading the refusing ranks'
    notes meanwhile: a note from a member of ``comm`` (who will never join its header) makes this
    rank join that rank's ``COMM_WORLD`` header and allgather, and raise its error (saying which
    rank). ``req`` is left pending then (a collective request cannot be cancelled: ``comm`` is
    unusable after, as it is for the refusing rank)."""
    MPI = mpi()
    world, status = MPI.COMM_WORLD, MPI.Status()
    members: dict = {}
    while not req.Test():
        if not world.Iprobe(source=MPI.ANY_SOURCE, tag=NOTE_TAG, status=status):
            continue
        src = status.Get_source()
        if src not in members:  # (its rank in comm, or MPI.UNDEFINED: a rank comm does not hold)
            members[src] = MPI.Group.Translate_ranks(world.Get_group(), [src], comm.Get_group())[0]
        if members[src] == MPI.UNDEFINED:
            time.sleep(1e-4)  # (a note for another communicator's waiters: left in the queue)
            continue
        buf = np.zeros(2 * HEADER)
        buf[0], buf[1] = _code(_JOINED), -_code(_JOINED)
        world.Iallreduce(MPI.IN_PLACE, buf, op=MPI.MAX).Wait()
        calls = world.allgather(_JOINED)
        drain(calls, world)  # (the note found above among them)
        raise calls_apart(calls)


def refusal(err: Exception) -> tuple:
    """What a refusing rank sends in :func:`.agreement.calls_apart`'s allgather, in place of a call."""
    return (CALL, _said(err))
