"""Curvature operators over data split across ranks.

Each rank multiplies on its own rows, scales the product by its share of the global
batch, and the products are summed over the ranks in rank order: every rank gets the same
bits, so the estimators (which take no other input but seeded Philox probes, the same on
every rank) follow the same path everywhere and return the same numbers, equal to one
process on the concatenated data up to rounding.
"""

from __future__ import annotations

import math
import numbers

from .. import _backend
from .communicator import as_communicator


def global_share(local_rows, comm) -> float:
    """``local_rows / sum over ranks of local_rows`` (0 for a rank with no rows)."""
    comm = as_communicator(comm)
    n = _backend.integer("local_rows", local_rows, lo=0)
    total = sum(comm.allgather_object(n))
    if total == 0:
        raise ValueError("local_rows: every rank has zero rows")
    return n / total


def distributed(op, comm, weight: float = 1.0):
    """``v -> sum over ranks of weight_r * op_r(v)`` as a curvature operator (rank-ordered sum).

    Args:
      op: this rank's operator (a CurvatureOperator or anything ``hessian.as_operator`` takes),
        the same shape and dtype on every rank. With ``weight=0`` (a rank without rows) it is
        never applied; the rank still takes part in every reduction.
      comm: a :class:`Communicator` or an mpi4py communicator.
      weight: this rank's share, e.g. ``global_share(len(x_local), comm)`` for a mean loss.

    Every rank must call every product (matvec / matmat) of the result together, as the
    estimators do when run with the same arguments on every rank.
    """
    from ..hessian.operators import _operator_class, as_operator

    comm = as_communicator(comm)
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real):  # (float() named neither)
        raise TypeError(f"weight: expected a real number, got {type(weight).__name__}")
    weight = float(weight)
    if not math.isfinite(weight):
        raise ValueError(f"weight: must be finite, got {weight}")
    op = as_operator(op)
    shape = comm.allgather_object((tuple(op.shape), str(op.dtype)))
    if any(s != shape[0] for s in shape):
        r = next(i for i, s in enumerate(shape) if s != shape[0])
        raise ValueError(
            f"op: rank {r} has a {shape[r][0]} {shape[r][1]} operator, rank 0 a {shape[0][0]} {shape[0][1]} one"
        )
    xp = op.xp

    def reduced(y):
        # the sum is formed in place: never in the caller's vector (an op may hand back its input,
        # `lambda v: v`) nor in an array the op keeps (an output buffer it reuses, a cached
        # product: copied when it was only checked against v, each product summed the ranks' into
        # it, and the next one started from that sum). A copy costs 1/world of the ordered sum's
        # gather.
        if weight == 1.0:
            y = y.copy(order="C")
        elif weight != 0.0:
            y = y * weight
        return comm.allreduce(xp.ascontiguousarray(y), "sum", ordered=True)

    def matvec(v):
        return reduced(op.matvec(v) if weight != 0.0 else xp.zeros_like(v))

    def matmat(V):
        return reduced(op.matmat(V) if weight != 0.0 else xp.zeros_like(V))

    return _operator_class(xp)(matvec, op.shape[0], op.dtype, xp, matmat, f"distributed-{op.name}")
