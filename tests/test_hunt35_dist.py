"""optkern.distributed as a demanding HPC user drives it (a hunt at 2 and 4 ranks).

* The seed of stochastic rounding must agree across ranks wherever a step rounds with it:
  ``state_dtype="bfloat16"`` rounds the moments stochastically (no ``stochastic_rounding=True``
  needed), and the seed was only compared for ``stochastic_rounding``: data-parallel replicas with
  ``seed=rank`` rounded their moments differently and diverged in silence. ZeRO-1 compared no
  seed at all ("each rank rounds its own slice"), but its slices draw the Philox words of their
  global elements as the unsharded optimizer does: a seed per rank gave a run that is no unsharded
  optimizer's and changes with the world size (a checkpoint resumed on another count of ranks
  went on with other roundings). Now both refuse another seed on one rank, on every rank.

* ``Communicator.allreduce`` / ``reduce_scatter`` of a bool array (a flag per rank: "found an
  inf", reduced with ``max`` as any rank) raised ``mpi4py.MPI.Exception: Invalid MPI_Op`` (MPI's
  MAX and SUM take no C bool) on the default path, while ``ordered=True`` returned NumPy's answer:
  now both reduce bools as NumPy does in place (``max`` / ``sum``: any rank, ``min``: every rank).
  A complex array with ``max`` / ``min`` (no order in MPI; NumPy's is lexicographic) raised the
  same MPI error or returned on the ordered path: now a TypeError naming ``x`` on both.

* A ``Communicator`` made with ``ordered=True`` on some ranks only, or ``backend="mpi"`` on some
  and ``"auto"`` on others, hung: the ordered ranks gathered rows while the others sat in
  ``MPI_Allreduce`` (or the ``"auto"`` ranks waited in the construction's exchange of device keys
  that the ``"mpi"`` ranks never joined), with no message. The wrappers compared their
  communicators, a plain one did not. Now the construction compares ``backend`` and ``ordered``
  (one small allgather, set-up only) and raises ValueError on every rank.

The tests launch this file under ``mpiexec -n N python -m mpi4py`` with one case; a hang is a
failure (the launch's timeout).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mpi_cases import raises, run_case, run_here

CASE_TIMEOUT = 90  # s: a hang is a failure (a passing case takes seconds)


@pytest.mark.spawns
def test_a_seed_that_differs_between_ranks_is_refused_wherever_it_rounds():
    run_case(__file__, "seed", 2, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_bool_arrays_reduce_and_complex_extremes_are_refused_alike_on_every_path():
    run_case(__file__, "comm_dtypes", 2, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_a_communicator_made_otherwise_on_one_rank_is_refused_on_every_rank():
    run_case(__file__, "comm_alike", 2, timeout=30)


# ---- cases (run under mpiexec) ------------------------------------------------------------------


def case_seed(comm) -> None:
    from optkern import optim
    from optkern.distributed import Communicator, DistributedOptimizer, ShardedOptimizer

    r = comm.rank
    rounding = (
        dict(state_dtype="bfloat16"),
        dict(master_weights=True, stochastic_rounding=True),
    )
    for lowp in rounding:
        dt = np.float32 if "state_dtype" in lowp else np.float16
        p = [np.linspace(-1, 1, 300).astype(dt), np.ones(7, dt)]
        with raises(ValueError, "seed: 1 on rank 1, 0 on rank 0"):
            DistributedOptimizer(optim.Adam([x.copy() for x in p], lr=1e-2, seed=r, **lowp), comm)
        with raises(ValueError, "seed: 1 on rank 1, 0 on rank 0"):
            ShardedOptimizer(optim.Adam, [x.copy() for x in p], comm, lr=1e-2, seed=r, **lowp)
        # one seed: the replicas stay equal (and ZeRO-1 steps as they do)
        dp, zp = [x.copy() for x in p], [x.copy() for x in p]
        d = DistributedOptimizer(optim.Adam(dp, lr=1e-2, seed=7, **lowp), Communicator(comm.mpi, ordered=True))
        z = ShardedOptimizer(optim.Adam, zp, Communicator(comm.mpi, ordered=True), lr=1e-2, seed=7, **lowp)
        for s in range(3):
            g = [np.random.default_rng(10 * s + r).standard_normal(x.size).astype(dt) for x in p]
            d.step([x.copy() for x in g])
            z.step(g)
        every = comm.mpi.allgather(dp)
        for a, b, c in zip(every[0], every[1], zp):
            assert np.array_equal(a, b) and np.array_equal(a, c), lowp
    # a seed that rounds nothing (float32 storage, no stochastic rounding) may differ
    DistributedOptimizer(optim.Adam([np.ones(5, np.float32)], lr=1e-2, seed=r), comm)
    ShardedOptimizer(optim.Adam, [np.ones(5, np.float32)], comm, lr=1e-2, seed=r, state_dtype="int8")


def case_comm_dtypes(comm) -> None:
    from optkern.distributed import Communicator

    r = comm.rank
    for ordered in (False, True):
        c = Communicator(comm.mpi, ordered=ordered)
        mine = np.array([r == 1, False, True, r == 0])
        for op, want in (("max", [1, 0, 1, 1]), ("sum", [1, 0, 1, 1]), ("min", [0, 0, 1, 0])):
            got = c.allreduce(mine.copy(), op)
            assert got.dtype == np.bool_ and got.tolist() == [bool(v) for v in want], (ordered, op, got)
        got = c.reduce_scatter(np.array([r == 1, False, True, r == 0]))
        assert got.dtype == np.bool_ and got.tolist() == [[True, False], [True, True]][r], (ordered, got)
        for op in ("max", "min"):
            z = np.array([1 + 2j, 3 - 1j]) * (r + 1)
            with raises(TypeError, f"x: op={op!r} needs real numbers, got complex128"):
                c.allreduce(z, op)
            assert np.array_equal(z, np.array([1 + 2j, 3 - 1j]) * (r + 1))  # (untouched)
        # complex sums are fine on both paths
        assert np.array_equal(c.allreduce(np.array([1j]) * (r + 1), "sum"), np.array([3j]))


def case_comm_alike(comm) -> None:
    from optkern.distributed import Communicator

    r = comm.rank
    for mine, theirs, text in (
        (dict(ordered=True), {}, "ordered: True on rank 0, False on rank 1"),
        (dict(backend="mpi"), dict(backend="auto"), "backend: 'mpi' on rank 0, 'auto' on rank 1"),
    ):
        with raises(ValueError, text):
            Communicator(comm.mpi, **(mine if r == 0 else theirs))
    # made alike, they reduce (and cuda_aware, which pairs the same collectives, may differ)
    c = Communicator(comm.mpi, backend="mpi", ordered=True, cuda_aware=r == 1)
    assert np.array_equal(c.allreduce(np.ones(3) * (r + 1)), np.full(3, 3.0))


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
