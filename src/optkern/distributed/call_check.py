"""The raw collectives' agreement (``Communicator.allreduce(..., check=True)``, the default): every
rank's arguments compared before the collective, in the call's header (one small allreduce).

MPI pairs a collective's messages by order alone: ranks passing arrays of two sizes (3 and 4) got
MPI_ERR_TRUNCATE on one rank and uninitialized memory in the other's result; two dtypes, the same
bytes read as other numbers; with ``ordered=True`` each rank folds the gathered rows by its own
``op`` (``"sum"`` on one, ``"max"`` on another: a different result on each rank, no error); a root
that differs, each rank waited for its own root's broadcast. The size cannot travel in the payload
(an element appended to each message, compared after the collective): MPI's behaviour for
mismatched counts is undefined -- the truncation error comes on some ranks only, garbage on the
others, and the large-message algorithms (reduce-scatter + allgather, split by the count) may hang
-- so the comparison must come first, in a message of one length on every rank. The header
(:func:`.agreement.extremes`' layout: the max of each value and of its negative, one allreduce of
24 float64) holds the call, a refusal flag and a fingerprint of the compared arguments; only when
they differ are the ranks' readable values exchanged (pickled, rarely) for the messages. Every
rank then raises before anything is sent or written: a ValueError naming the argument and the ranks' values, or the
refusing rank's own error (TypeError / ValueError) there and the same type naming it elsewhere.

The wrappers (DistributedOptimizer, ShardedOptimizer, clipping, the distributed curvature...)
agree on their layouts at set-up and on each call's arguments in their own header: their
collectives pass ``check=False`` and cost no extra message.
"""

from __future__ import annotations

import functools
import zlib
from array import array

import numpy as np

from .agreement import HEADER, _code, _raise_any, _said, apart, first_unlike

_BITS = (1 << 52) - 1  # (a fingerprint exact in a float64, and its negative)


@functools.cache
def _dtype_code(dtype, on_device: bool) -> int:
    """An array's dtype (and whether it is a CuPy array: NCCL moves those, MPI the NumPy ones) as a
    32-bit number, the same on every rank (``dtype.num`` of a registered type such as bfloat16
    depends on the order of registration; Python's ``hash`` of a string on the process)."""
    return zlib.crc32(_kind(dtype, on_device).encode())


@functools.cache
def _str_code(s: str) -> int:
    return zlib.crc32(s.encode())


def _kind(dtype, on_device: bool) -> str:
    return f"{'cupy ' if on_device else ''}{dtype}"


def fingerprint(fields: tuple) -> float:
    """One number for a call's ``fields`` (``(name, value)``: an array -- its element count and
    dtype --, an int or bool, or a string), the same on every rank for the same values: Python's
    hash of a tuple of ints (deterministic, unlike a string's, and the same algorithm since Python
    3.8), 52 bits (two calls that differ collide with probability 2^-52). One number instead of
    one per argument: the header is built on every checked call."""
    key = []
    for _, v in fields:
        if isinstance(v, str):
            key.append(_str_code(v))
        elif isinstance(v, int):  # (bools too)
            key.append(int(v))
        else:
            key += (v.size, _dtype_code(v.dtype, not isinstance(v, np.ndarray)))
    return float(hash(tuple(key)) & _BITS)


def _shown(v) -> str:
    if isinstance(v, (str, int)):
        return repr(v)
    return f"{v.size} {_kind(v.dtype, not isinstance(v, np.ndarray))} elements"


def alike(comm, call: str, err, fields: tuple) -> None:
    """Raise on every rank unless every rank's ``fields`` are the same (:func:`fingerprint`) and no
    rank refused its arguments (``err``: this rank's TypeError / ValueError, or None). The header is
    :func:`.agreement.extremes`' layout (a wrapper's header met here says the ranks make different
    calls) in a buffer of the communicator's, without its array arithmetic: this one is paid on every
    checked call."""
    buf = getattr(comm, "_call_head", None)
    if buf is None:
        buf = comm._call_head = array("d", bytes(16 * HEADER))  # ((value, -value) pairs, zeros after)
    code, refused, fp = _code(f"Communicator.{call}"), 0.0 if err is None else 1.0, fingerprint(fields)
    buf[0], buf[1], buf[2], buf[3], buf[4], buf[5] = code, -code, refused, -refused, fp, -fp
    try:
        comm._header_reduce(buf)  # (nonblocking, a refusing member's note read meanwhile: .no_comm)
    except BaseException:
        comm._call_head = None  # (a header given up for a note keeps buf: no_comm._left)
        raise
    if buf[0] != -buf[1]:
        buf[:] = array("d", bytes(16 * HEADER))  # (a wrapper's longer header was met: zeros again)
        raise apart(comm, f"Communicator.{call}")
    if buf[2] == 0.0 and buf[4] == -buf[5]:  # (buf[2]: 1 where any rank refused, this one too)
        return
    got = comm.allgather_object((_said(err), [_shown(v) for _, v in fields]))
    _raise_any(err, [e for e, _ in got])
    for i, (name, _) in enumerate(fields):
        shown = [s[i] for _, s in got]
        r = first_unlike(shown)
        if r is not None:
            raise ValueError(
                f"{name}: {shown[r]} on rank {r}, {shown[0]} on rank 0 (every rank passes {call} the same "
                f"{name}: nothing was sent or written)"
            )
    raise AssertionError(f"{call}: the ranks' headers differ, their arguments do not")
