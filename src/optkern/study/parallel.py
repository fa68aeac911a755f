"""The study's objective, on one process or data-parallel over MPI ranks.

Under ``mpiexec -n N`` every rank holds the whole data set and the same parameters; each
batch is cut into N contiguous shards (with batch norm, a batch of fewer than 2N rows into
fewer, of two rows or more, and the ranks past them take none that batch, with weight 0: see
:func:`shard`), rank ``r`` computes the loss and gradient of shard ``r``, and the gradients and
losses are summed over the ranks, each weighted by its shard's share of the batch: every rank then
steps with the gradient of the whole batch. The gradients go through
:class:`optkern.distributed.DistributedOptimizer`'s fused buckets where the optimizer steps the
model's float32 params; a low-precision run (half weights, SWALP) reduces the float32 gradient
through the communicator instead (:meth:`Objective.attach`). The reductions are
rank-ordered (``ordered=True``), so every rank holds the same bits after every step and
takes the same branches (line searches, damping, divergence checks) as the others.

mpi4py is imported only when a study runs under MPI (:func:`world_size` > 1, read from the
launcher's environment) or ``--distributed`` asks for it.
"""

from __future__ import annotations

import os

import numpy as np

# World-size variables set by the common launchers: MPICH / Intel MPI / Slurm's PMI (PMI_SIZE),
# Open MPI (OMPI_COMM_WORLD_SIZE), MVAPICH (MV2_COMM_WORLD_SIZE).
WORLD_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def world_size(environ=None) -> int:
    """The number of ranks the MPI launcher started (1 outside a launcher), without importing MPI."""
    env = os.environ if environ is None else environ
    for var in WORLD_SIZE_VARS:
        try:
            n = int(env.get(var, ""))
        except ValueError:
            continue
        if n >= 1:
            return n
    return 1


def communicator(force: bool = False):
    """An ordered ``optkern.distributed.Communicator`` over COMM_WORLD when the study runs
    on several ranks (or ``force``), else None (and mpi4py is not imported)."""
    if not force and world_size() <= 1:
        return None
    from ..distributed import Communicator

    comm = Communicator(backend="mpi", ordered=True)
    return comm if comm.size > 1 or force else None


def shard(m: int, comm, min_rows: int = 1) -> slice:
    """This rank's contiguous rows of a batch of ``m`` rows (all of them on one process).

    ``min_rows``: the fewest rows a rank that takes any may take (2 with batch norm, which cannot
    normalize one row: a rank given one raised alone, mid-run, while the others waited in the
    reduction). The batch is cut over the first ``min(size, m // min_rows)`` ranks (at least one),
    the others take none; with ``min_rows`` rows or more per rank that is every rank, the plain cut.
    """
    if isinstance(min_rows, bool) or not isinstance(min_rows, int):
        raise TypeError(f"min_rows: expected an int, got {type(min_rows).__name__}")
    if min_rows < 1:
        raise ValueError(f"min_rows: expected an int >= 1, got {min_rows}")
    if comm is None:
        return slice(0, m)
    k = max(1, min(comm.size, m // min_rows))  # (the ranks that take rows)
    r = min(comm.rank, k)  # (ranks past them: an empty slice at the end)
    return slice(m * r // k, m * min(r + 1, k) // k)


class Objective:
    """The mean loss and its gradient on the current batch, reduced over the ranks.

    ``set_batch(x, y)`` selects the batch (every rank passes the whole batch; it keeps its
    shard); ``closure()`` returns ``(loss, [grad])`` at the current params, the form every
    optimizer's ``step(closure)`` takes; ``curvature(kind)`` is the batch's curvature operator
    (distributed over the ranks like the gradient). ``evaluations`` counts closure calls.
    """

    def __init__(self, model, params, comm=None):
        self.model, self.params, self.comm = model, params, comm
        self.evaluations = 0
        self._sync = None
        self._x = self._y = None
        self._weight = 1.0
        self.last_loss = 0.0  # the latest closure's loss

    def attach(self, optimizer) -> None:
        """Reduce gradients through ``optimizer``'s data-parallel buckets (a collective:
        checks that every rank holds the same parameter layout) where it steps the model's float32
        params. A low-precision run's optimizer steps other arrays (half weights, which its buckets
        refused the float32 gradient for; SWALP, no optkern optimizer): there the float32 gradient
        is reduced by the communicator (rank-ordered), then rounded as on one process."""
        if self.comm is not None and _steps_params(optimizer, self.params):
            from ..distributed import DistributedOptimizer

            # only its synchronize() is used: the optimizer steps itself (maybe from a closure)
            self._sync = DistributedOptimizer(optimizer, self.comm, grad_weight=1.0)

    def set_batch(self, x, y) -> None:
        sl = shard(int(x.shape[0]), self.comm, 2 if self.model.norm == "batch" else 1)
        self._x, self._y = x[sl], y[sl]
        self._weight = (sl.stop - sl.start) / max(int(x.shape[0]), 1)

    def closure(self):
        self.evaluations += 1
        out = loss_and_grad(self.model, self.params, self._x, self._y, self.comm, self._weight, self._sync)
        self.last_loss = out[0]  # (the same on every rank: what a refused step is judged by)
        return out

    def loss(self) -> float:
        """The batch's mean loss at the current params (no gradient; not counted)."""
        loss = float(self.model.loss(self.params, self._x, self._y)) if int(self._x.shape[0]) > 0 else 0.0
        if self.comm is None:
            return loss
        return float(self.comm.allreduce(np.array([loss * self._weight]), "sum")[0])

    def curvature(self, kind: str = "hessian"):
        """The curvature at the current params, fixed there (Newton-CG asks for one per step)."""
        from .. import hessian

        return hessian.from_mlp(self.model, self.params, self._x, self._y, kind=kind, comm=self.comm, fixed=True)


def _steps_params(optimizer, params) -> bool:
    """Whether ``optimizer``'s param groups hold ``params`` itself (the model's float32 weights)."""
    groups = getattr(optimizer, "param_groups", None) or []
    return bool(groups) and all(p is params for g in groups for p in g["params"])


def loss_and_grad(model, params, x, y, comm=None, weight: float = 1.0, sync=None):
    """``(loss, [grad])`` of the mean loss over the rows of every rank (``x, y``: this rank's,
    ``weight``: their share of all rows). ``sync``: a DistributedOptimizer whose buckets
    reduce the gradient (else the communicator's allreduce does)."""
    xp = model.xp
    if int(x.shape[0]) > 0:
        loss, grad = model.loss_and_grad(params, x, y)
    else:  # a rank without rows still takes part in every reduction
        loss, grad = 0.0, xp.zeros(model.num_params, dtype=model.dtype)
    if comm is None:
        return loss, [grad]
    if sync is not None:
        sync.grad_weight = weight  # the bucketed sum of weight_r * grad_r
        sync.synchronize([grad])
    else:
        if weight != 1.0:
            grad *= grad.dtype.type(weight)
        grad = comm.allreduce(grad, "sum")
    total = comm.allreduce(np.array([float(loss) * weight]), "sum")
    return float(total[0]), [grad]
