"""A rank whose ``comm`` argument is no communicator still tells the others, who wait in a collective.

``Communicator(comm='x')`` (or an intercommunicator, ``MPI.COMM_NULL``) on one rank raised there
at once, while the ranks given a good communicator went on into their first exchange and waited in
it forever: the refusing rank had no communicator to report into. It reports into ``COMM_WORLD``
(the default, ``comm=None``, where the others are unless they were given another): every exchange
that opens a call taking a communicator -- ``Communicator()``'s own, a wrapper's set-up
(:func:`.agreement.agree`), a checked collective (:mod:`.call_check`), an estimator's -- begins
with a header of one length (:data:`.agreement.HEADER`), a nonblocking allreduce. This rank joins
that header with a code no call has, so every rank sees "different calls"
(:func:`.agreement.calls_apart`) and joins one allgather of what each is doing, where this rank
sends its refusal: it raises its own error (a TypeError / ValueError naming ``comm``), the others
the same type, saying which rank.

Where the others were given another communicator (a ``Split`` or ``Dup`` of the world) nobody is in
``COMM_WORLD``'s header: this rank waits :data:`WAIT_S` seconds for one, then raises its own error
alone (as before; its header request is left pending: the job is going down). Nonblocking for that
reason: a blocking allreduce could not be given up, and MPI never matches a nonblocking collective
with a blocking one, so every header is nonblocking (:meth:`.transport.Transport._header_reduce`).
"""

from __future__ import annotations

import time

import numpy as np

from .agreement import HEADER, _code, _said
from .transport import mpi

#: Seconds a rank refusing its ``comm`` waits for the others' header in ``COMM_WORLD``.
WAIT_S = 30.0

#: The header's code for "this rank refused its communicator": no call's name hashes to it alike.
CALL = "a constructor whose comm argument was refused"


def refuse(err: Exception) -> Exception:
    """``err`` (this rank's refusal of its ``comm``), returned to be raised once the other ranks,
    waiting in a header of ``COMM_WORLD``, have been told (see the module doc). MPI not running
    (not initialized, finalized) or a world of one: returned at once, nobody to tell."""
    MPI = mpi()
    if not MPI.Is_initialized() or MPI.Is_finalized() or MPI.COMM_WORLD.Get_size() == 1:
        return err
    world = MPI.COMM_WORLD
    buf = np.zeros(2 * HEADER)  # (the header's layout: (value, -value) pairs, the code first)
    buf[0], buf[1] = _code(CALL), -_code(CALL)
    req = world.Iallreduce(MPI.IN_PLACE, buf, op=MPI.MAX)
    deadline = time.monotonic() + WAIT_S
    while not req.Test():
        if time.monotonic() > deadline:  # (nobody in COMM_WORLD's header: see the module doc)
            return err
        time.sleep(1e-3)
    # the others saw another call's code in the header: calls_apart's allgather, with this refusal
    world.allgather(refusal(err))
    return err


def refusal(err: Exception) -> tuple:
    """What a refusing rank sends in :func:`.agreement.calls_apart`'s allgather, in place of a call."""
    return (CALL, _said(err))
