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
So this rank also sends every other rank a note (:data:`NOTE_TAG`, point to point in ``COMM_WORLD``'s
duplicate, :mod:`.private`, once made; the world's headers, and this module's, travel there too),
and a header in a communicator other than the world waits by polling (:func:`wait_header`): a rank
that finds a note from a member of that communicator (who, having refused, will never come) joins
this rank's header in ``COMM_WORLD`` and its allgather, and raises the error of the lowest refusing
rank, saying which rank. Each member is probed by its own source: a note from a rank outside the
communicator waited in is left alone and hides no member's note queued behind it. A note is read
once -- where a rank needs its text early, into ``_read`` -- and taken after the allgather that
reports it (:func:`drain`, also where the refusal was met in ``COMM_WORLD``'s own header), so that
none is read later as a new refusal.

What is guaranteed, and what is not. Where every rank comes to a header in ``COMM_WORLD`` or in a
communicator holding a refusing rank, within :data:`WAIT_S` seconds of that rank's refusal (or of
a rank joining it for a note), every rank raises, the refusing rank's own error there and its
error saying which rank elsewhere. Where some rank does not (it works in a communicator without
the refusing rank, or in no collective), the refusing rank, and each rank that joined it for a
note, waits :data:`WAIT_S` seconds, then raises alone -- the refusing rank its own error, a
joining rank the refusing rank's error read from its note, saying that not every rank came.
Nonblocking for that reason: a blocking allreduce could not be given up, and MPI never matches a
nonblocking collective with a blocking one, so every header is nonblocking
(:meth:`.transport.Transport._header_reduce`). A collective request cannot be cancelled, though:
a rank arriving after ``WAIT_S`` meets that request in its header, MPI matching ``COMM_WORLD``'s
collectives in order. So the request is kept (:func:`settle`) and completed before this rank's next
header -- in ``COMM_WORLD`` or in any communicator of more than one rank, where a member would read
the still-queued note -- or next refusal, without a deadline: the late ranks are told then -- the
allgather they enter -- and this rank's call raises too (the late ranks gave theirs up). A rank
that never makes another collective call in ``COMM_WORLD`` leaves the late ones waiting there (no
deadline can be put on a rank that never calls this library again). A header given up for a note
is kept alive, never freed while active (``_left``), and completed before this rank's next header
in that communicator, where the refusing rank's next header meets it: the counts of refusals the
headers carry tell them apart and every rank posts its header again (:func:`header`), so the
communicator's calls pair up again after the one that raised. A rank waiting in a header of a
communicator without the refusing rank is not told there, only at its next header in ``COMM_WORLD``.
"""

from __future__ import annotations

import time

import numpy as np

from .agreement import HEADER, _code, _said, calls_apart
from .private import adopt, channel
from .transport import mpi

#: Seconds a rank refusing its ``comm`` waits for the others' header in ``COMM_WORLD`` (and a rank
#: that read its note, to be joined there in turn).
WAIT_S = 30.0

#: The header's code for "this rank refused its communicator": no call's name hashes to it alike.
CALL = "a constructor whose comm argument was refused"

#: The tag of a refusing rank's note to each other rank in ``COMM_WORLD`` (see the module doc).
NOTE_TAG = 0x0C0FFEE

#: The header a rank puts into the refusing rank's ``COMM_WORLD`` header when a note called it there.
_JOINED = "a header in another communicator, left for a refusal"

#: Polls of a request before the first sleep (well under a millisecond): a header the others come to
#: soon costs no sleep (a sleeping rank makes no MPI progress: the others wait for it).
_SPIN = 1000

#: This rank's ``COMM_WORLD`` headers that no rank joined in time (``(request, buffer, what this rank
#: sends in the allgather after it, the error its call raises then)``): MPI matches a communicator's
#: collectives in order, so each is completed before this rank's next header (:func:`settle`).
_pending: list = []

#: This rank's sent notes (their requests, completed once the others took them, or at exit).
_sent: list = []

#: Notes received before the allgather that drains them (world rank -> note): read once, here.
_read: dict = {}

#: Headers given up for a member's refusal (``(comm, request, buffer)``): kept alive (MPI may still
#: write the buffer, and a freed active nonblocking collective is erroneous) and completed before
#: this rank's next header in that communicator (:func:`_catch_up`).
_left: list = []

#: Refusals reported so far: every rank counts them in the same ``COMM_WORLD`` allgathers
#: (:func:`drain`), so the ranks' counts agree at every header they make together. Each header
#: carries it (:func:`header`): a header given up for a refusal, met later by a member's next
#: header, differs from it there.
_epoch = 0

#: Where the count sits in a header's code (calls' codes are below 2**40; 2**12 counts fit a float64).
_ERA = 2.0**40


def refuse(err: Exception) -> Exception:
    """``err`` (this rank's refusal of its ``comm``), returned to be raised once the other ranks,
    waiting in a header of ``COMM_WORLD``, have been told (see the module doc). MPI not running
    (not initialized, finalized) or a world of one: returned at once, nobody to tell."""
    MPI = mpi()
    if not MPI.Is_initialized() or MPI.Is_finalized() or MPI.COMM_WORLD.Get_size() == 1:
        return err
    world = channel(MPI.COMM_WORLD)
    settle()  # (an earlier refusal's header first: COMM_WORLD's collectives match in order)
    note = refusal(err)
    _sent.extend(world.isend(note, dest=r, tag=NOTE_TAG) for r in range(world.Get_size()) if r != world.Get_rank())
    late = type(err)(
        f"{err} (this rank's refusal, reported after no_comm.WAIT_S seconds: the other ranks' next exchange "
        "in COMM_WORLD met it and raised; this call is given up with them)"
    )
    _report(world, CALL, note, late)
    return err


def _report(world, code: str, mine, late: Exception) -> list | None:
    """Join a ``COMM_WORLD`` header with ``code`` and, once every rank is in it, calls_apart's
    allgather with ``mine``: its calls returned. Nobody there within WAIT_S: None, the header kept
    in ``_pending`` with ``mine`` and ``late`` (the error :func:`settle` returns once it completes)."""
    MPI = mpi()
    buf = np.zeros(2 * HEADER)  # (the header's layout: (value, -value) pairs, the code first)
    buf[0], buf[1] = _code(code), -_code(code)
    _stamp(buf)
    req = world.Iallreduce(MPI.IN_PLACE, buf, op=MPI.MAX)
    deadline, polls = time.monotonic() + WAIT_S, 0
    while not req.Test():
        if time.monotonic() > deadline:  # (nobody in COMM_WORLD's header: see the module doc)
            _pending.append((req, buf, mine, late))  # (kept: completed by settle before the next header)
            return None
        polls = _pause(polls)
    return _told(world, mine)


def settle() -> Exception | None:
    """Before a header (in ``COMM_WORLD`` or any communicator of more than one rank) or a refusal:
    where a ``COMM_WORLD`` header this rank gave up (its refusal's, or one it joined for a note) is
    still pending, that header completed first -- waiting without a deadline, as the ranks that
    come later meet it in their own header -- and the late ranks told (see the module doc).
    Returns the error the caller's call raises then (the refusal, reported late), else None.

    In every communicator, not only the world: a refusing rank that gave up and went on to a
    header of a ``Split`` made it while its note was still queued, and a member arriving late
    there read that note (stale: the rank was in that header), joined the world's header, met
    the pending one and waited in the allgather after it while the refusing rank waited in the
    ``Split``'s: both hung. A refusing rank now makes no header with others until its refusal is
    reported, so a note in the queue always stands for a rank that is not coming."""
    if not _pending:
        return None
    MPI = mpi()
    if MPI.Is_finalized():
        return None
    req, _, mine, late = _pending.pop()
    req.Wait()
    _told(channel(MPI.COMM_WORLD), mine)
    return late


def header(comm, buf, size: int) -> None:
    """Post and complete a header (``buf``, :func:`.agreement.extremes`' layout, the call's code
    first) in ``comm`` of ``size`` ranks, nonblocking (see the module doc). Before it, in a
    communicator of more than one rank, this rank's pending refusal is settled (:func:`settle`:
    its error raised) and a header this rank gave up in ``comm`` is completed (:func:`_catch_up`).

    The code carries the count of refusals reported (:data:`_epoch`). A header given up for a
    member's refusal stays posted, and that member's next header in ``comm`` meets it: a
    ``Split``'s next call after a refusal paired each rank's header with the other's previous one,
    and every later call in it was off by one (wrong values, or a wait forever). The member's
    header, made after the refusal was reported, carries another count; every rank that completes
    it sees the counts apart and posts its header again, the rank that gave one up after
    completing it: the headers pair up again and the call goes on, no error."""
    if size > 1 and (_pending or _left):
        late = settle()
        if late is not None:
            raise late
        _catch_up(comm)
    _stamp(buf)
    mine = memoryview(buf).tobytes()  # (posted again where the counts are apart)
    MPI, ch = mpi(), channel(comm)  # (optkern's own duplicate of comm, once made: .private)
    while True:
        req = ch.Iallreduce(MPI.IN_PLACE, buf, op=MPI.MAX)
        if comm == MPI.COMM_WORLD:
            req.Wait()
        else:  # (a refusing rank of this communicator reports in the world: its note read meanwhile)
            wait_header(req, buf, comm)
        if buf[0] // _ERA == -buf[1] // _ERA:
            break
        memoryview(buf).cast("B")[:] = mine
    if ch is comm and size > 1 and buf[0] == -buf[1]:  # (every member in this call: each makes it)
        adopt(comm)


def _stamp(buf) -> None:
    """The count of refusals reported (modulo 2**12), added to the code of header ``buf``."""
    era = (_epoch % 4096) * _ERA
    buf[0] += era
    buf[1] -= era


def _catch_up(comm) -> None:
    """Complete each header this rank gave up in ``comm`` for a member's refusal (``_left``): the
    members' next headers there meet it (see :func:`header`), then this rank's own is posted."""
    for entry in [e for e in _left if e[0] == comm]:
        _left.remove(entry)
        try:
            wait_header(entry[1], entry[2], comm)  # (another member's note met here: kept again)
        except BaseException:
            if entry not in _left:
                _left.append(entry)
            raise


def _told(world, mine) -> list:
    """A header this rank joined in ``COMM_WORLD`` completed: the others saw another call's code in
    it (or every rank refused alike): calls_apart's allgather, with ``mine`` (the notes of the
    refusing ranks taken; this rank's own sent ones completed, as every rank took them)."""
    calls = world.allgather(mine)
    drain(calls, mpi().COMM_WORLD)
    while _sent:
        _sent.pop().Wait()
    return calls


def drain(calls: list, comm) -> None:
    """After ``calls_apart``'s allgather in ``COMM_WORLD`` (``comm``): the note of each rank that
    refused (a tuple among ``calls``) taken -- from ``_read`` where this rank had received it,
    else from the queue -- where it would be read as a new refusal by this rank's next header in
    another communicator."""
    global _epoch
    MPI = mpi()
    if comm != MPI.COMM_WORLD:
        return
    me, world = comm.Get_rank(), channel(comm)
    for r, c in enumerate(calls):
        if isinstance(c, tuple):
            _epoch += 1  # (every rank counts in this allgather: the counts stay alike)
            if r != me and _read.pop(r, None) is None:
                world.recv(source=r, tag=NOTE_TAG)


def wait_header(req, buf, comm) -> None:
    """Wait for header request ``req`` (into ``buf``) in ``comm`` (not ``COMM_WORLD``), looking for
    the refusing ranks' notes meanwhile: a note from a member of ``comm`` (who will never join its
    header) makes this rank join that rank's ``COMM_WORLD`` header and allgather, and raise its
    error (saying which rank). ``req`` and ``buf`` are kept then (``_left``: a collective request
    cannot be cancelled: completed by this rank's next header in ``comm``, :func:`_catch_up`)."""
    MPI = mpi()
    world, members, polls = channel(MPI.COMM_WORLD), None, 0
    while not req.Test():
        polls = _pause(polls)
        if not (_read or world.Iprobe(source=MPI.ANY_SOURCE, tag=NOTE_TAG)):
            continue  # (no note at all: the usual wait, one probe a poll)
        if members is None:  # (each member probed by its own source: a note from a rank outside
            members = _world_ranks(comm)  # comm, first in the queue, hides none behind it)
        src = next((r for r in members if r in _read or world.Iprobe(source=r, tag=NOTE_TAG)), None)
        if src is not None:
            _left.append((comm, req, buf))
            raise _join(world, src)


def _join(world, src: int) -> Exception:
    """The error of refusing rank ``src`` (a member of the communicator this rank waited in), once
    told the others: joined in ``COMM_WORLD``'s header and allgather; or, nobody in that header
    within WAIT_S (a rank working in a communicator without ``src``), read from its note, the
    header kept for :func:`settle`."""
    earlier = settle()  # (a header given up before first: COMM_WORLD's collectives match in order)
    if earlier is not None:  # (this call raises with the ranks told there; src's note taken, if theirs)
        return earlier
    ranks = [_JOINED] * world.Get_size()
    if src not in _read:
        _read[src] = world.recv(source=src, tag=NOTE_TAG)
    ranks[src] = _read[src]
    err = calls_apart(ranks)
    late = type(err)(
        f"{err} (reported after no_comm.WAIT_S seconds: the other ranks' next exchange in COMM_WORLD "
        "met it and raised; this call is given up with them)"
    )
    calls = _report(world, _JOINED, _JOINED, late)
    if calls is not None:
        return calls_apart(calls)  # (the lowest refusing rank's, as on every rank)
    return type(err)(f"{err} (not every rank came to COMM_WORLD within no_comm.WAIT_S seconds: told later)")


def _world_ranks(comm) -> list:
    """The ``COMM_WORLD`` ranks of ``comm``'s members other than this rank."""
    MPI = mpi()
    mine, world = comm.Get_group(), MPI.COMM_WORLD.Get_group()
    try:
        ranks = MPI.Group.Translate_ranks(mine, list(range(mine.Get_size())), world)
    finally:
        mine.Free()
        world.Free()
    return [r for r in ranks if r != MPI.COMM_WORLD.Get_rank()]


def _pause(polls: int) -> int:
    """One more poll: after ``_SPIN`` polls, a sleep growing to 1 ms (the GIL and the core given
    back to the other threads of a rank waiting long; a header the others are in costs none)."""
    if polls >= _SPIN:
        time.sleep(min(1e-3, 1e-5 * (polls - _SPIN + 1)))
    return polls + 1


def refusal(err: Exception) -> tuple:
    """What a refusing rank sends in :func:`.agreement.calls_apart`'s allgather, in place of a call."""
    return (CALL, _said(err))
