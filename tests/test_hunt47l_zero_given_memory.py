"""ShardedOptimizer (ZeRO-1) steps a torch tensor param given new memory (``p.data = t``,
``p.set_(t)``) there, as the single-process optimizer (and torch.optim) does.

Each step read this rank's slice from, and wrote every param back into, NumPy views of the tensors'
memory made at construction: after ``p.data = new`` the step read and wrote the old memory, which
``p`` no longer showed (at world size 1 the step was lost: ``p`` never moved again). Now each step
follows the tensors (optkern.optim._given.follow, the single-process optimizers' mechanism); new
memory of another dtype or shape is refused on every rank before anything is written.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mpi_cases import raises, run_case, run_here

CASE_TIMEOUT = 120  # s: a hang is a failure (a passing case takes seconds)


def _grads(step, sizes):
    # (multiples of 1/64: a mean over 1 or 2 equal ranks is exact)
    return [(((np.arange(n) * 5 + step * 3) % 11 - 5) / 64).astype(np.float32) for n in sizes]


def _run(make, how, sizes=(7, 5, 9), steps=4):
    import torch

    ps = [torch.linspace(-1, 1, n) for n in sizes]
    step = make(ps)
    for s in range(steps):
        if s == 2:
            new = torch.full_like(ps[1], 0.25)
            if how == "data":
                ps[1].data = new
            else:
                ps[1].set_(new)
        step(_grads(s, sizes))
    return [p.numpy().copy() for p in ps]


def _compare(comm, how) -> None:
    from optkern import optim
    from optkern.distributed import ShardedOptimizer
    from torch_ieee_sqrt import torch_optim_stepper

    def zero(ps):
        z = ShardedOptimizer(optim.Adam, ps, comm, lr=0.1, amsgrad=True)
        return z.step

    got = _run(zero, how)
    # (torch's own Adam: optim.Adam would share the path under test)
    want = _run(lambda ps: torch_optim_stepper("Adam", ps, lr=0.1, amsgrad=True), how)
    assert not np.array_equal(got[1], np.full(5, 0.25, np.float32))  # (it moved after the swap)
    for i, (a, b) in enumerate(zip(got, want)):
        assert np.array_equal(a, b), (i, a, b)


def _refused(comm) -> None:
    import torch

    from optkern import optim
    from optkern.distributed import ShardedOptimizer

    ps = [torch.linspace(-1, 1, n) for n in (7, 5, 9)]
    z = ShardedOptimizer(optim.Adam, ps, comm, lr=0.1)
    z.step(_grads(0, (7, 5, 9)))
    before = [p.clone() for p in ps]
    state = {k: np.array(v) for k, v in z.optimizer.state_dict()["state"][0].items()} if z.optimizer.state else {}
    flat = z._flat.copy()
    for new, exc, text in (
        (torch.zeros(5, dtype=torch.float64), TypeError, "params[1]: given new memory of float64"),
        (torch.zeros(6), ValueError, "params[1]: given new memory of shape (6,)"),
    ):
        ps[1].data = new
        for _ in range(2):  # (refused at every step, not only the first)
            with raises(exc, text):
                z.step(_grads(1, (7, 5, 9)))
        assert not ps[1].any() and torch.equal(ps[0], before[0]) and torch.equal(ps[2], before[2])
        assert np.array_equal(z._flat, flat)
        if z.optimizer.state:
            for k, v in z.optimizer.state_dict()["state"][0].items():
                assert np.array_equal(np.array(v), state[k]), k
    strided = torch.full((10,), 0.5)[::2]  # (strided new memory: followed, read and written in place)
    ps[1].data = strided
    z.step(_grads(1, (7, 5, 9)))
    assert ps[1].data_ptr() == strided.data_ptr() and not torch.equal(strided, torch.full((5,), 0.5))


@pytest.mark.parametrize("how", ["data", "set_"])
def test_zero1_at_world_size_1_steps_a_tensor_given_new_memory_as_the_single_process_optimizer(how):
    pytest.importorskip("torch")
    from mpi4py import MPI

    from optkern.distributed import Communicator

    _compare(Communicator(MPI.COMM_SELF), how)


def test_zero1_refuses_new_memory_of_another_dtype_or_shape_with_nothing_written():
    pytest.importorskip("torch")
    from mpi4py import MPI

    from optkern.distributed import Communicator

    _refused(Communicator(MPI.COMM_SELF))


@pytest.mark.spawns
def test_zero1_on_two_ranks_steps_a_tensor_given_new_memory_as_the_single_process_optimizer():
    pytest.importorskip("torch")
    run_case(__file__, "two", 2, timeout=CASE_TIMEOUT)


def case_two(comm) -> None:
    for how in ("data", "set_"):
        _compare(comm, how)
    _refused(comm)


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
