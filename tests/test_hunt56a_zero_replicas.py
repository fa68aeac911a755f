"""Hunt 42x (the 55th's leftovers), item 6: ZeRO-1's ``ShardedOptimizer`` had no replica check while
``DistributedOptimizer.check_replicas`` (hunt 55i) exists. Each ZeRO-1 step reads this rank's slice
from its own copy of the params and all-gathers the slices: params changed on some ranks only
(weights loaded there) were half taken, silently. ``check_replicas = True`` (the same debug mode,
its code shared: ``hyper_check.check_replicas_flag`` / ``grads_digest`` / ``grads_error``) hashes
the params into the step's hyper-parameter allreduce: params that differ raise ValueError on every
rank, naming one, before anything is stepped. Run on 2 ranks under ``mpiexec``; a hang is a failure.
"""

from __future__ import annotations

import pytest

from mpi_cases import raises, run_case, run_here

CASE_TIMEOUT = 90  # s: a passing launch takes well under 20 s


@pytest.mark.spawns
def test_zero1_check_replicas_names_params_changed_on_one_rank():
    pytest.importorskip("mpi4py")
    run_case(__file__, "zero_drift", 2, timeout=CASE_TIMEOUT)


def case_zero_drift(comm) -> None:
    import numpy as np

    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    rng = np.random.default_rng(4206)  # (the same gradients on every rank)
    ps = [np.linspace(-1, 1, n, dtype=np.float32) for n in (7, 1023)]
    opt = ShardedOptimizer(optim.Adam, ps, comm, lr=0.1)
    grads = lambda: [rng.standard_normal(p.shape).astype(np.float32) for p in ps]

    def same() -> bool:
        got = comm.allgather_object([p.tobytes() for p in ps])
        return got[0] == got[1]

    # the default: a rank's own change (rank 1 loads other weights) is taken half, with no error
    if comm.rank == 1:
        for p in ps:
            p += 1.0
    opt.step(grads())
    assert same()  # (the all-gather made the replicas alike again: rank 0's slice from its copy)
    # the debug mode: refused on every rank, naming rank 1, before anything is stepped
    opt.check_replicas = True
    if comm.rank == 1:
        ps[1][5] += 1.0
    before = [p.copy() for p in ps]
    with raises(ValueError, "the params on rank 1 differ from rank 0's"):
        opt.step(grads())
    for p, b in zip(ps, before):
        np.testing.assert_array_equal(p, b)
    # params alike again: steps go on, outside and inside skip_synchronize(), the ranks equal
    ps[1][...] = comm.allgather_object(ps[1])[0]
    for _ in range(2):
        opt.step(grads())
    opt.synchronize(grads())
    with opt.skip_synchronize():
        opt.step()
    assert same() and not np.array_equal(ps[1], before[1])
    # set on one rank only: refused on every rank, naming the flag
    opt.check_replicas = comm.rank == 0
    with raises(ValueError, "check_replicas is set on rank 0, not on rank 1"):
        opt.step(grads())
    # a bad value on one rank: refused by name there, on every rank (the step's outcome agreed)
    opt.check_replicas = "yes" if comm.rank == 1 else True
    with raises(TypeError, "check_replicas" if comm.rank == 1 else "(on rank 1)"):
        opt.step(grads())
    assert same()


if __name__ == "__main__":
    import sys

    run_here(globals(), sys.argv[1:])
