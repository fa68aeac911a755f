"""Communicator defects found by a hunt at 2 and 3 ranks.

- bfloat16 means in DistributedOptimizer's packed buckets were rounded twice (the sum rounded to
  bfloat16, then divided), unlike a direct bucket and ZeRO-1 (one rounding): at 3 ranks a last
  bit apart, so data-parallel training depended on the bucket layout and ZeRO-1 did not match it.
- MPI's MAX / MIN keep or drop a NaN by the order the ranks' values meet in: a NaN on one rank
  came back NaN on some ranks and finite on others (``clip_grad_norm_(..., norm_type=inf,
  comm=)``: the ranks clipped differently and their replicas diverged).
- An intercommunicator was accepted (its size is the local group's; its collectives combine the
  remote group's data: wrong values or MPI errors), ``MPI.COMM_NULL`` failed with a bare MPI error,
  and a Communicator made before ``MPI_Init`` or after ``MPI_Finalize`` killed the process (MPICH
  aborts; no Python exception).

Each MPI test launches this file under ``mpiexec -n N python -m mpi4py`` with one case (the
functions below ``# ---- cases``), which prints ``rank R: CASE ok`` on every rank; a hang is a
failure (the launch's timeout).
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from mpi_cases import raises as _raises
from mpi_cases import run_case, run_here

CASE_TIMEOUT = 60  # s: a hang is a failure (a passing case takes seconds)


def _run(case: str, n: int) -> None:
    run_case(__file__, case, n, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_bfloat16_mean_is_rounded_once_in_packed_buckets_as_in_direct_ones_and_zero():
    pytest.importorskip("ml_dtypes")
    _run("bf16_mean", 3)


@pytest.mark.spawns
def test_max_and_min_propagate_a_nan_on_one_rank_to_every_rank():
    _run("nan_extremes", 3)


@pytest.mark.spawns
def test_intercommunicators_and_comm_null_are_refused_split_comms_work():
    _run("comm_kinds", 3)


@pytest.mark.spawns
@pytest.mark.parametrize(
    "code, msg",
    [
        ("MPI.Finalize()", "comm: MPI is already finalized"),
        ("", "comm: MPI is not initialized"),
    ],
)
def test_mpi_finalized_or_not_initialized_raises_instead_of_killing_the_process(code, msg):
    pytest.importorskip("mpi4py")
    from test_distributed import _env

    # one process, no mpiexec (a singleton MPI); "not initialized": mpi4py told not to MPI_Init
    pre = "import mpi4py\nmpi4py.rc.initialize = False\n" if not code else ""
    script = (
        f"{pre}from mpi4py import MPI\n"
        "from optkern.distributed import Communicator\n"
        f"{code}\n"
        "try:\n"
        "    Communicator()\n"
        "except RuntimeError as e:\n"
        "    print('raised:', e)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", script], env=_env(), capture_output=True, text=True, timeout=60, check=False
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"raised: {msg}" in res.stdout, res.stdout + res.stderr


# ---- cases (run under mpiexec) ------------------------------------------------------------------


def case_bf16_mean(comm) -> None:
    """The same bfloat16 gradients averaged three ways: packed bucket, direct bucket, ZeRO-1."""
    import ml_dtypes

    from optkern import optim
    from optkern.distributed import DistributedOptimizer, ShardedOptimizer

    bf = np.dtype(ml_dtypes.bfloat16)
    rng = np.random.default_rng(100 + comm.rank)  # different on every rank
    g0 = rng.standard_normal(1000).astype(np.float32).astype(bf)
    # the reference: each element's float32 sum divided by 3 in float32, rounded once
    every = np.stack(comm.allgather_object(g0.astype(np.float32)))
    want = np.zeros(1000, np.float32)
    for row in every:
        want += row
    want = (want / np.float32(comm.size)).astype(bf)
    got = {}
    for name, direct_kb in (("packed", float("inf")), ("direct", 1e-3)):
        sgd = optim.SGD([np.zeros(1000, bf)], lr=1.0, master_weights=True)
        opt = DistributedOptimizer(sgd, comm, direct_kb=direct_kb)
        g = [g0.copy()]
        opt.synchronize(g)
        got[name] = g[0]
        views = opt.grad_buffers()  # written straight into the buffer: the same bits
        views[0][...] = g0
        opt.synchronize(views)
        got[name + " (views)"] = views[0].copy()
    z = ShardedOptimizer(optim.SGD, [np.zeros(1000, bf)], comm, lr=1.0, master_weights=True)
    z.synchronize([g0.copy()])
    full = np.empty(z.chunk * comm.size, bf)
    comm.allgather(z._shard, out=full)
    got["zero"] = full[:1000]
    for name, g in got.items():
        bad = int(np.count_nonzero(g.view(np.uint16) != want.view(np.uint16)))
        assert bad == 0, f"{name}: {bad} of 1000 elements are not the mean rounded once"


def case_nan_extremes(comm) -> None:
    """A NaN on the last rank only, through plain (MPI) and ordered max / min and the inf-norm clip."""
    from mpi4py import MPI

    import optkern
    from optkern.distributed import Communicator

    last = comm.size - 1
    for c in (Communicator(MPI.COMM_WORLD), Communicator(MPI.COMM_WORLD, ordered=True)):
        for op, dt in (("max", np.float64), ("min", np.float32), ("max", np.float16)):
            x = np.array([float(comm.rank), -1.0, 2.0 * comm.rank], dtype=dt)
            if comm.rank == last:
                x[0] = np.nan
            c.allreduce(x, op)
            assert np.isnan(x[0]) and x[1] == -1.0, (op, dt, x)  # (-1 on every rank)
            assert x[2] == (2.0 * last if op == "max" else 0.0), (op, dt, x)
        for rank_with_nan in range(comm.size):  # every position in the reduction order
            g = [np.array([np.nan if comm.rank == rank_with_nan else 1.0, 0.5])]
            norm = optkern.clip_grad_norm_(g, 1.0, norm_type="inf", comm=c)
            seen = comm.allgather_object(repr(norm))
            assert seen == ["nan"] * comm.size, (rank_with_nan, seen)
            with _raises(ValueError, "total norm"):  # every rank refuses it, none waits alone
                optkern.clip_grad_norm_(
                    [np.array([np.nan if comm.rank == rank_with_nan else 1.0])],
                    1.0,
                    norm_type="inf",
                    error_if_nonfinite=True,
                    comm=c,
                )
    # integers: no NaN, MPI's MAX as before
    c = Communicator(MPI.COMM_WORLD)
    k = np.array([comm.rank, -comm.rank], dtype=np.int64)
    c.allreduce(k, "max")
    assert k.tolist() == [comm.size - 1, 0]


def case_comm_kinds(comm) -> None:
    from mpi4py import MPI

    from optkern.distributed import Communicator, DistributedOptimizer

    world = MPI.COMM_WORLD
    color = world.rank % 2
    local: Any = world.Split(color, world.rank)  # (an Intracomm; mpi4py's stubs say Comm)
    inter = local.Create_intercomm(0, world, 1 - color, 7)
    with _raises(TypeError, "comm: an intercommunicator is not supported"):
        Communicator(inter)
    with _raises(TypeError, "comm: an intercommunicator is not supported"):
        from optkern import optim

        DistributedOptimizer(optim.SGD([np.zeros(3)], lr=0.1), inter)
    inter.Free()
    with _raises(ValueError, "comm: is MPI.COMM_NULL"):
        Communicator(MPI.COMM_NULL)
    # a split communicator (not COMM_WORLD) reduces over its own ranks
    c = Communicator(local, ordered=True)
    x = np.array([float(world.rank)])
    c.allreduce(x, "sum")
    assert x[0] == sum(r for r in range(world.size) if r % 2 == color), x
    local.Free()
    # the ranks left out of a split get COMM_NULL: refused on those ranks, the others go on
    sub = world.Split(0 if world.rank == 0 else MPI.UNDEFINED, 0)
    if world.rank == 0:
        assert Communicator(sub).size == 1
        sub.Free()
    else:
        with _raises(ValueError, "comm: is MPI.COMM_NULL"):
            Communicator(sub)


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
