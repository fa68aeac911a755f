"""Hunt 55i: ``DistributedOptimizer.step()`` inside ``skip_synchronize()`` takes the gradients as
they are; a rank that changes its averaged gradients alone (clipping them without ``comm=``, by its
own norm) stepped its replica with its own and the replicas drifted apart silently. No step
compares gradients (a pass over them every step); ``check_replicas = True`` (a debug mode) hashes
them into the step's hyper-parameter allreduce: gradients that differ raise ValueError on every
rank, naming one, before anything is stepped. Run on 2 ranks under ``mpiexec``; a hang is a failure.
"""

from __future__ import annotations

import pytest

from mpi_cases import raises, run_case, run_here

CASE_TIMEOUT = 90  # s: a passing launch takes well under 20 s


@pytest.mark.spawns
def test_check_replicas_names_gradients_changed_on_one_rank():
    pytest.importorskip("mpi4py")
    run_case(__file__, "drift", 2, timeout=CASE_TIMEOUT)


def case_drift(comm) -> None:
    import numpy as np

    from optkern import clip_grad_norm_, optim
    from optkern.distributed import DistributedOptimizer

    rng = np.random.default_rng(5514 + comm.rank)  # (each rank its own gradients)
    ps = [np.linspace(-1, 1, n, dtype=np.float32) for n in (7, 1023)]  # (the same replica)
    opt = DistributedOptimizer(optim.Adam(ps, lr=0.1), comm)
    other = lambda: [rng.standard_normal(p.shape).astype(np.float32) for p in ps]

    def clipped_alone(debug: bool) -> None:
        opt.check_replicas = debug
        gs = other()
        opt.synchronize(gs)
        if comm.rank == 1:
            clip_grad_norm_(gs, 1e-3)  # (no comm=: this rank alone)
        with opt.skip_synchronize():
            opt.step(gs)

    # the default: the step goes on and the replicas drift (the hazard the docs warn of)
    clipped_alone(False)
    got = comm.allgather_object([p.tobytes() for p in ps])
    assert got[0] != got[1]
    for p in ps:  # (the same replica again)
        p[...] = np.linspace(-1, 1, p.size, dtype=np.float32)
    state = opt.optimizer.state_dict()["state"]
    for s in state.values():  # (the moments too: a fresh replica)
        for v in s.values():
            if isinstance(v, np.ndarray):
                v[...] = 0
    # the debug mode: refused on every rank, naming rank 1, before anything is stepped
    before = [p.copy() for p in ps]
    with raises(ValueError, "inside skip_synchronize() the gradients on rank 1 differ from rank 0's"):
        clipped_alone(True)
    for p, b in zip(ps, before):
        np.testing.assert_array_equal(p, b)
    # gradients left alike (clipped with comm=: every rank by the global norm): steps, ranks equal
    opt.check_replicas = True
    for _ in range(3):
        gs = other()
        opt.synchronize(gs)
        clip_grad_norm_(gs, 1e-3)
        with opt.skip_synchronize():
            opt.step(gs)
    got = comm.allgather_object([p.tobytes() for p in ps])
    assert got[0] == got[1]
    assert not np.array_equal(ps[1], before[1])
    # set on one rank only: refused on every rank, naming the flag
    opt.check_replicas = comm.rank == 0
    with raises(ValueError, "check_replicas is set on rank 0, not on rank 1"):
        gs = other()
        opt.synchronize(gs)
        with opt.skip_synchronize():
            opt.step(gs)
    # a bad value on one rank: refused by name there, on every rank (the step's outcome agreed)
    opt.check_replicas = "yes" if comm.rank == 1 else True
    with raises(TypeError, "check_replicas" if comm.rank == 1 else "(on rank 1)"):
        gs = other()
        opt.synchronize(gs)
        with opt.skip_synchronize():
            opt.step(gs)


if __name__ == "__main__":
    import sys

    run_here(globals(), sys.argv[1:])
