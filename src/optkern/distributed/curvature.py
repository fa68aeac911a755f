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
from .agreement import agree, refuse_together
from .communicator import as_communicator
from .lockstep import Lockstep


def global_share(local_rows, comm) -> float:
    """``local_rows / sum over ranks of local_rows`` (0 for a rank with no rows)."""
    comm = as_communicator(comm)
    # (checked inside the exchange: a rank alone with a bad count must not leave the others in it)
    n, counts = agree(comm, lambda: (_backend.integer("local_rows", local_rows, lo=0),) * 2, "global_share")
    total = sum(counts)
    if total == 0:
        raise ValueError("local_rows: every rank has zero rows")
    return n / total


def _weight(weight) -> float:
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real):  # (float() named neither)
        raise TypeError(f"weight: expected a real number, got {type(weight).__name__}")
    weight = float(weight)
    if not math.isfinite(weight):
        raise ValueError(f"weight: must be finite, got {weight}")
    return weight


def distributed(op, comm, weight: float = 1.0):
    """``v -> sum over ranks of weight_r * op_r(v)`` as a curvature operator (rank-ordered sum).

    Args:
      op: this rank's operator (a CurvatureOperator or anything ``hessian.as_operator`` takes),
        the same shape and dtype on every rank; a dense or sparse matrix symmetric, as the
        estimators require of theirs (ValueError naming ``op`` on every rank). With ``weight=0``
        (a rank without rows) it is never applied; the rank still takes part in every reduction.
      comm: a :class:`Communicator` or an mpi4py communicator.
      weight: this rank's share, e.g. ``global_share(len(x_local), comm)`` for a mean loss.

    Every rank must call every product (matvec / matmat) of the result together, with the same
    vectors, as the estimators do when run with the same arguments on every rank. A product that
    fails on one rank (its operator refused a non-finite product of its own rows, ...) raises on
    every rank; so do estimators whose arguments are refused on one rank or differ between ranks
    (another count of products, another seed or ``v0``: :mod:`.lockstep`).
    """
    from ..hessian.operators import _operator_class

    comm = as_communicator(comm)
    # this rank's arguments checked inside the exchange of shapes: a rank alone with a bad weight
    # (its own share) or operator raised while the others waited in that exchange forever
    op, shape = agree(comm, lambda: _local(op, weight), "curvature.distributed")
    weight = _weight(weight)
    if any(s != shape[0] for s in shape):
        r = next(i for i, s in enumerate(shape) if s != shape[0])
        raise ValueError(
            f"op: rank {r} has a {shape[r][0]} {shape[r][1]} operator, rank 0 a {shape[0][0]} {shape[0][1]} one"
        )
    xp, n = op.xp, op.shape[0]
    lock = Lockstep(comm)

    def reduced(product, x, shape):
        # this rank's weighted product in a buffer of one more element: 1 where the product failed
        # here, summed with the products (ordered sum: the same on every rank), so every rank
        # learns of a failure in the collective it makes anyway (a rank alone with an error raised
        # while the others waited in it forever). The sum is formed in this buffer: never in the
        # caller's vector (an op may hand back its input, `lambda v: v`) nor in an array the op
        # keeps (an output buffer it reuses, a cached product: each product summed the ranks' into
        # it, and the next one started from that sum).
        lock.product(x)  # (the ranks agree first that they all make this product, of these vectors)
        buf = xp.empty(math.prod(shape) + 1, dtype=op.dtype)
        buf[-1] = 0
        err = None
        try:
            if weight == 0.0:
                buf[:-1] = 0
            else:
                y = product(x)
                if tuple(y.shape) != shape:  # (the rows gathered would not line up)
                    raise ValueError(f"op: a product of shape {tuple(y.shape)}, expected {shape}")
                if weight == 1.0:
                    buf[:-1] = y.reshape(-1)
                else:
                    xp.multiply(y.reshape(-1), weight, out=buf[:-1])
        except Exception as e:  # (the caller's operator: any error, reported to every rank)
            err = e
            buf[-1] = 1
        comm.allreduce(buf, "sum", ordered=True, check=False)  # (lock.product agreed on the call)
        if err is not None or float(buf[-1]) != 0.0:
            refuse_together(comm, err, "matvec")  # (raises: some rank failed)
        return buf[:-1].reshape(shape)

    def matvec(v):
        return reduced(op.matvec, v, (n,))

    def matmat(V):
        return reduced(op.matmat, V, (n, V.shape[1]))

    out = _operator_class(xp)(matvec, n, op.dtype, xp, matmat, f"distributed-{op.name}")
    out._lockstep = lock  # (the estimators end in lockstep: optkern.hessian._lockstep)
    return out


def _local(op, weight) -> tuple:
    """This rank's operator, checked as the estimators check theirs: named ``op`` (as_operator's
    default name, ``A``, was in its errors), and symmetric where that can be seen (a dense or sparse
    matrix, a product of operators: :func:`hessian.symmetry.require_symmetric`). The result is a
    curvature operator, symmetric by contract: a non-symmetric rank's matrix passed unchecked and
    Lanczos returned 3.02, "converged", for ``[[1, 5], [0, 2]]`` (eigenvalues 1 and 2), CG 1e7 for
    a solution of norm 1.6, where the estimators refuse the matrix itself."""
    from ..hessian.operators import as_operator
    from ..hessian.symmetry import require_symmetric

    _weight(weight)
    op = as_operator(require_symmetric(op, "op", "a distributed curvature operator"), "op")
    return op, (tuple(op.shape), str(op.dtype))
