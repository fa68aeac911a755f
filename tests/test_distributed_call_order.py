"""Ranks that make different collective calls at the same time (found at 2 ranks).

Each call of the distributed objects starts with a small allreduce of its own, and their lengths
differed: ``DistributedOptimizer.step`` on one rank beside ``synchronize`` (or
``clip_grad_norm_(comm=)``, a distributed curvature product, a constructor) on another paired an
allreduce of 2 float64 with one of 6, and MPI aborted the job ("Message truncated",
MPI_ERR_TRUNCATE); a constructor's allgather beside a step's allreduce hung. Now every call's
first collective is a header of one length holding the call's code
(:func:`optkern.distributed.agreement.extremes`): ranks in different calls raise the same
RuntimeError naming every rank's call, before anything is reduced or written, and the next calls,
made alike, work.

Each test launches this file under ``mpiexec -n 2 python -m mpi4py`` with one case; a hang or an
abort is a failure.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mpi_cases import raises as _raises
from mpi_cases import run_case, run_here

CASE_TIMEOUT = 60  # s: a hang is a failure (a passing case takes seconds)
APART = "the ranks made different collective calls (rank 0: {}, rank 1: {})"


@pytest.mark.spawns
def test_a_step_beside_a_synchronize_or_clip_raises_on_every_rank():
    run_case(__file__, "dp", 2, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_a_zero_step_beside_its_synchronize_raises_on_every_rank():
    run_case(__file__, "zero", 2, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_a_curvature_estimator_or_a_constructor_beside_a_step_raises_on_every_rank():
    run_case(__file__, "others", 2, timeout=CASE_TIMEOUT)


def test_the_header_has_one_length_and_names_the_call():
    """Without MPI: the header's values, its length for every call, and the error's text."""
    from optkern.distributed import agreement

    class Recorder:
        size, rank = 2, 0

        def __init__(self):
            self.sent = []

        def _live(self, where):
            pass

        def _header_reduce(self, buf):
            self.sent.append(buf.copy())

    c = Recorder()
    hi, lo = agreement.extremes(c, [3.0, -1.0], "synchronize")
    agreement.extremes(c, [], "step")
    assert list(hi) == [3.0, -1.0] and list(lo) == [3.0, -1.0]
    assert [len(b) for b in c.sent] == [2 * agreement.HEADER] * 2
    assert c.sent[0][0] == agreement._code("synchronize") != agreement._code("step") == c.sent[1][0]
    assert all(b[2 * i] == -b[2 * i + 1] for b in c.sent for i in range(agreement.HEADER))
    e = agreement.calls_apart(["step", "synchronize"])
    assert isinstance(e, RuntimeError) and APART.format("step", "synchronize") in str(e)


# ---- cases (run under mpiexec) ------------------------------------------------------------------


def _params():
    rng = np.random.default_rng(0)
    return [rng.standard_normal(5), rng.standard_normal((2, 3))]


def _grads(r: int) -> list:
    return [np.full(5, 0.5 + r), np.full((2, 3), -1.0 + r)]


def _apart(comm, calls, mine, *arrays) -> None:
    """``mine()`` (this rank's call) raises the RuntimeError naming ``calls`` and writes none of ``arrays``."""
    before = [a.copy() for a in arrays]
    with _raises(RuntimeError, APART.format(*calls)):
        mine()
    for a, b in zip(arrays, before):
        assert a.tobytes() == b.tobytes(), "a call refused for the ranks' order wrote an array"


def _same(comm, p) -> None:
    got = comm.allgather_object([a.tobytes() for a in p])
    assert got[0] == got[1], "the ranks' parameters differ"


def case_dp(comm) -> None:
    from optkern import optim
    from optkern.clip import clip_grad_norm_
    from optkern.distributed import DistributedOptimizer

    r = comm.rank
    p = _params()
    d = DistributedOptimizer(optim.SGD(p, lr=0.1), comm)
    g = _grads(r)
    mine = (lambda: d.synchronize(g)) if r == 0 else (lambda: d.step(g))
    _apart(comm, ("synchronize", "step"), mine, *p, *g)
    mine = (lambda: d.step(g)) if r == 0 else (lambda: clip_grad_norm_(g, 1.0, comm=comm))
    _apart(comm, ("step", "clip_grad_norm_"), mine, *p, *g)
    d.step(_grads(r))  # the ranks in step again: it reduces and steps alike
    _same(comm, p)
    np.testing.assert_allclose(p[0], _params()[0] - 0.1 * 1.0, rtol=0, atol=1e-15)


def case_zero(comm) -> None:
    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    r = comm.rank
    p = _params()
    z = ShardedOptimizer(optim.SGD, p, comm, lr=0.1)
    g = _grads(r)
    mine = (lambda: z.step(g)) if r == 0 else (lambda: z.synchronize(g))
    _apart(comm, ("step", "synchronize"), mine, *p, *g)
    mine = (lambda: z.consolidate_state_dict()) if r == 0 else (lambda: z.step(g))
    _apart(comm, ("consolidate_state_dict", "step"), mine, *p, *g)
    z.step(_grads(r))
    _same(comm, p)
    assert (z.consolidate_state_dict() is not None) == (r == 0)


def case_others(comm) -> None:
    from optkern import hessian, optim
    from optkern.distributed import DistributedOptimizer, distributed

    r = comm.rank
    p = _params()
    d = DistributedOptimizer(optim.SGD(p, lr=0.1), comm)
    H = distributed(np.diag(np.arange(1.0, 9.0)), comm, 0.5)
    g = _grads(r)
    mine = (lambda: hessian.trace(H, num_matvecs=4, seed=1)) if r == 0 else (lambda: d.step(g))
    _apart(comm, ("a distributed curvature estimator", "step"), mine, *p, *g)
    mine = (lambda: DistributedOptimizer(optim.SGD(_params(), lr=0.1), comm)) if r == 0 else (lambda: d.step(g))
    _apart(comm, ("DistributedOptimizer()", "step"), mine, *p, *g)
    # the next calls, made alike, work: an estimator, then a step
    t = hessian.trace(H, num_matvecs=8, seed=3).estimate
    assert np.isclose(t, hessian.trace(np.diag(np.arange(1.0, 9.0)), num_matvecs=8, seed=3).estimate, rtol=1e-12)
    d.step(_grads(r))
    _same(comm, p)


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
