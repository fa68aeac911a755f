"""Scale-out over MPI (mpi4py) and NCCL (``cupy.cuda.nccl``): data-parallel and ZeRO-1 optimizers,
collectives, distributed curvature.

Run under ``mpiexec -n N python -m mpi4py script.py`` (``-m mpi4py`` turns an exception on
one rank into an abort of the whole job instead of a hang). mpi4py is an optional extra
(``pip install "optkern[mpi]"``); importing optkern never needs it, this package imports it
when a Communicator is made.

- :class:`Communicator`: ``allreduce`` (sum, mean, max, min), ``reduce_scatter``,
  ``allgather``, ``bcast``; ``ordered=True`` for bitwise reproducible reductions.
- :func:`broadcast_params`, :func:`check_same_params`.
- :class:`DistributedOptimizer`: gradients averaged in fused buckets, then the step.
- :class:`ShardedOptimizer`: ZeRO stage 1 (optimizer state split over the ranks).
- :func:`distributed`, :func:`global_share`: curvature operators over data split across
  ranks (``optkern.hessian.from_mlp(..., comm=comm)`` uses them).
"""

from .communicator import Communicator
from .curvature import distributed, global_share
from .data_parallel import DistributedOptimizer
from .params import broadcast_params, check_same_params
from .sharded import ShardedOptimizer

__all__ = [
    "Communicator",
    "DistributedOptimizer",
    "ShardedOptimizer",
    "broadcast_params",
    "check_same_params",
    "distributed",
    "global_share",
]
