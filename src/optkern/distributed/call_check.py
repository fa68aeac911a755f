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
(:func:`.agreement.extremes`: the max of each value and of its negative, one allreduce of 24
float64) holds the call, a refusal flag and each compared argument's code; only when they differ
are the ranks' readable values exchanged (pickled, rarely) for the messages. Every rank then raises
before anything is sent or written: a ValueError naming the argument and the ranks' values, or the
refusing rank's own error (TypeError / ValueError) there and the same type naming it elsewhere.

The wrappers (DistributedOptimizer, ShardedOptimizer, clipping, the distributed curvature...)
agree on their layouts at set-up and on each call's arguments in their own header: their
collectives pass ``check=False`` and cost no extra message.
"""

from __future__ import annotations

import functools
import zlib

from .agreement import _raise_any, _said, extremes, first_unlike


@functools.cache
def _dtype_code(name: str) -> float:
    """A dtype's name (``"float64"``, ``"cupy float32"``) as a 32-bit number, the same on every rank
    (``dtype.num`` of a registered type such as bfloat16 depends on the order of registration)."""
    return float(zlib.crc32(name.encode()))


def array_field(name: str, x) -> tuple:
    """``(name, shown, codes)`` of an array argument: its element count and dtype (and whether
    it is a CuPy array: NCCL moves those, MPI the NumPy ones)."""
    kind = f"{'cupy ' if type(x).__module__.startswith('cupy') else ''}{x.dtype}"
    return name, f"{x.size} {kind} elements", (float(x.size), _dtype_code(kind))


def value_field(name: str, value, code=None) -> tuple:
    """``(name, shown, codes)`` of a small argument: ``code`` (default: the value) a number."""
    return name, repr(value), (float(value if code is None else code),)


def alike(comm, call: str, err, fields: tuple) -> None:
    """Raise on every rank unless every rank's ``fields`` (``(name, shown, codes)``) are the same and
    no rank refused its arguments (``err``: this rank's TypeError / ValueError, or None)."""
    codes = [c for _, _, cs in fields for c in cs]
    hi, lo = extremes(comm, [0.0 if err is None else 1.0, *codes], call, f"Communicator.{call}")
    if hi[0] == 0.0 and (hi[1:] == lo[1:]).all():  # (hi[0]: 1 where any rank refused, this one too)
        return
    got = comm.allgather_object((_said(err), [shown for _, shown, _ in fields]))
    _raise_any(err, [e for e, _ in got])
    for i, (name, _, _) in enumerate(fields):
        shown = [s[i] for _, s in got]
        r = first_unlike(shown)
        if r is not None:
            raise ValueError(
                f"{name}: {shown[r]} on rank {r}, {shown[0]} on rank 0 (every rank passes {call} the same "
                f"{name}: nothing was sent or written)"
            )
    raise AssertionError(f"{call}: the ranks' headers differ, their arguments do not")
