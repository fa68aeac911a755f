"""ShardedOptimizer and a param whose layout (or writability) the user changed in place after
construction.

Each param's elements sit in the flat buffer (and the local optimizers' state) in the C order
of its layout at construction. ``p.shape = ...`` keeps that order (the same memory, element for
element): the steps go on as the unsharded optimizer's, bit for bit, and ``opt.params`` take the
new shape (a strided param reshaped this way failed to be written back, after the state had
stepped). A param re-strided in place (a transposed view of its buffer) or resized reads other
elements in C order: ValueError naming it before anything is copied or communicated, on every
rank when one rank alone changed it (that rank raised NumPy's broadcast error after the
reduce-scatter, the others waited in the all-gather forever). A param made read-only on one
rank is refused alike, on every rank, before the step.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

from mpi_cases import raises, run_case, run_here

CASE_TIMEOUT = 90  # s: a hang is a failure (a passing case takes seconds)


def _params():
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    return [np.arange(6, dtype=np.float32).reshape(2, 3), np.arange(4, dtype=np.float32), base[:, ::2]]


def _grads(ps, step):
    return [np.linspace(-1, 1 + step, p.size, dtype=np.float32).reshape(p.shape) for p in ps]


def _restride(p) -> None:
    """``p`` (2, 3), C order, made its own transpose's layout in place: (3, 2), Fortran order."""
    with warnings.catch_warnings():  # (setting strides is deprecated in NumPy 2.4; users still do)
        warnings.simplefilter("ignore", DeprecationWarning)
        p.shape = (3, 2)
        p.strides = (p.itemsize, 3 * p.itemsize)


def case_reshaped(comm) -> None:
    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    ps = _params()
    ref = [np.ascontiguousarray(p) for p in ps]
    z = ShardedOptimizer(optim.Adam, ps, comm, lr=0.1)
    opt = optim.Adam(ref, lr=0.1)
    for step in range(3):
        if step == 1:  # (the contiguous param and the strided one, reshaped in place)
            for i, shape in ((0, (3, 2)), (2, (2, 2, 3))):
                ps[i].shape = shape
                ref[i].shape = shape
        z.step(_grads(ps, step))
        opt.step(_grads(ref, step))
        for i, (p, r) in enumerate(zip(ps, ref)):
            assert np.array_equal(p, r), (step, i)
    assert [v.shape for v in z.params] == [(3, 2), (4,), (2, 2, 3)]


def case_restrided_on_rank_0(comm) -> None:
    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    ps = _params()
    z = ShardedOptimizer(optim.Adam, ps, comm, lr=0.1)
    z.step(_grads(ps, 0))
    if comm.rank == 0:
        _restride(ps[0])
    before = [p.copy() for p in ps]
    state = z.optimizer.state_dict()
    with raises(ValueError, "params[0]: its layout changed in place"):
        z.step(_grads(ps, 1))
    with raises(ValueError, "params[0]: its layout changed in place"):
        z.synchronize(_grads(ps, 1))
    assert all(np.array_equal(p, b) for p, b in zip(ps, before))
    assert z.optimizer.state_dict()["state"][0]["step"] == state["state"][0]["step"]


def case_read_only_on_rank_0(comm) -> None:
    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    ps = [np.full(10, float(i), np.float32) for i in range(6)]
    z = ShardedOptimizer(optim.SGD, ps, comm, lr=1.0)
    z.step([np.ones(10, np.float32)] * 6)
    if comm.rank == 0:
        ps[3].flags.writeable = False
    with raises(ValueError, "params[3]: "):
        z.step([np.ones(10, np.float32)] * 6)
    assert all(np.array_equal(p, np.full(10, i - 1.0, np.float32)) for i, p in enumerate(ps))


@pytest.mark.spawns
@pytest.mark.parametrize("n", [1, 2])
def test_zero1_params_reshaped_in_place_step_as_the_unsharded_optimizer(n):
    run_case(__file__, "reshaped", n, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_zero1_param_restrided_on_one_rank_raises_on_every_rank():
    run_case(__file__, "restrided_on_rank_0", 2, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_zero1_param_made_read_only_on_one_rank_raises_on_every_rank_before_the_step():
    # (rank 0 wrote its params before that one, then raised, after every rank's state had
    # stepped; rank 1 stepped on without an error)
    run_case(__file__, "read_only_on_rank_0", 2, timeout=CASE_TIMEOUT)


def test_zero1_param_resized_in_place_is_refused_before_anything_is_written():
    from mpi4py import MPI

    from optkern import optim
    from optkern.distributed import Communicator, ShardedOptimizer

    ps = [np.ones(5, np.float32), np.ones(3, np.float32)]
    z = ShardedOptimizer(optim.SGD, ps, Communicator(MPI.COMM_SELF), lr=1.0)
    ps[1].resize((4,), refcheck=False)
    ps[1][:] = 1.0
    with pytest.raises(ValueError, match=r"params\[1\]: its layout changed in place"):
        z.step([np.ones(5, np.float32), np.ones(4, np.float32)])
    assert all(np.array_equal(p, np.ones(p.size, np.float32)) for p in ps)


def test_zero1_add_param_group_refuses_a_param_restrided_since():
    # (adding a group re-lays the flat buffer from the params' C order, the state consolidated in
    # the old one: it went on silently, each element of the re-strided param with another's state)
    from mpi4py import MPI

    from optkern import optim
    from optkern.distributed import Communicator, ShardedOptimizer

    ps = _params()
    z = ShardedOptimizer(optim.Adam, ps, Communicator(MPI.COMM_SELF), lr=0.1)
    z.step(_grads(ps, 0))
    _restride(ps[0])
    with pytest.raises(ValueError, match=r"params\[0\]: its layout changed in place"):
        z.add_param_group({"params": [np.ones(3, np.float32)]})
    assert len(z.param_groups) == 1


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
