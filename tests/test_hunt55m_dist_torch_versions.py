"""The Communicator's in-place collectives bump a torch tensor's version counter (review of the 55th's
h333, which let them write tensors through their NumPy views): ``allreduce`` / ``bcast``'s ``x`` and
``allgather`` / ``reduce_scatter``'s ``out`` were written where autograd does not see, so a graph that
had saved the tensor differentiated the collective's result silently; now its backward raises, as
after any in-place torch op (the rule of optkern/_torch_written.py). Run on 2 ranks under mpiexec."""

from __future__ import annotations

import pytest

from mpi_cases import run_case, run_here

CASE_TIMEOUT = 90  # s: a passing launch takes well under 20 s


@pytest.mark.spawns
def test_in_place_collectives_bump_torch_versions():
    pytest.importorskip("mpi4py")
    pytest.importorskip("torch")
    run_case(__file__, "versions", 2, timeout=CASE_TIMEOUT)


def case_versions(comm) -> None:
    import numpy as np
    import torch

    def saved(t):
        """A loss whose backward needs ``t``'s values as they were (x * t saves t)."""
        return (torch.ones(t.shape, requires_grad=True) * t).sum()

    def refused(loss) -> None:
        try:
            loss.backward()
        except RuntimeError as e:
            assert "modified by an inplace operation" in str(e), e
        else:
            raise AssertionError("the backward used the collective's result silently")

    a = np.arange(4, dtype=np.float32) + comm.rank
    calls = {
        "allreduce": lambda t: comm.allreduce(t),
        "bcast": lambda t: comm.bcast(t, root=0),
        "allgather out": lambda t: comm.allgather(torch.from_numpy(a[:2].copy()), out=t),
        "reduce_scatter out": lambda t: comm.reduce_scatter(torch.from_numpy(np.tile(a[:2], 2)), "sum", t[:2]),
    }
    for name, call in calls.items():
        t = torch.from_numpy(a.copy())
        loss, before = saved(t), t._version
        call(t)
        assert t._version > before, name
        refused(loss)
    n = np.zeros(4, np.float32)  # (NumPy: returned as it is, nothing to bump)
    assert comm.allreduce(n) is n


if __name__ == "__main__":
    import sys

    run_here(globals(), sys.argv[1:])
