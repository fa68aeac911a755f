"""Per-call time of a checked ``Communicator.allreduce`` of one float64 (its header, then the
reduction) on 2 ranks, in ``COMM_WORLD`` and in a ``Dup`` of it (whose header polls for refusing
ranks' notes: ``optkern.distributed.no_comm.wait_header``).

    OMP_NUM_THREADS=1 mpiexec -n 2 python -m mpi4py bench/dist_header_latency.py [calls] [repeats]

Prints, on rank 0, the median and range over the repeats of microseconds per call.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from mpi4py import MPI

from optkern.distributed import Communicator


def _per_call(comm: Communicator, calls: int) -> float:
    x = np.ones(1)
    comm.barrier()
    t0 = time.perf_counter()
    for _ in range(calls):
        comm.allreduce(x)
    return (time.perf_counter() - t0) / calls * 1e6


def main(calls: int, repeats: int) -> None:
    comms = {"world": Communicator(), "dup": Communicator(MPI.COMM_WORLD.Dup())}
    times: dict = {k: [] for k in comms}
    for _ in range(repeats):  # (alternated: the VM's noise falls on both alike)
        for k, c in comms.items():
            times[k].append(_per_call(c, calls))
    if MPI.COMM_WORLD.Get_rank() == 0:
        for k, t in times.items():
            print(f"{k:6s} checked allreduce: median {np.median(t):6.2f} us/call, range {min(t):.2f}-{max(t):.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000, int(sys.argv[2]) if len(sys.argv) > 2 else 7)
