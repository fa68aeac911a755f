"""Hunt 55h: the Communicator's collectives take torch tensors (any DLPack exporter) as DESIGN §3
promises, moving their own memory, zero-copy.

They refused one ("x: expected a numpy or cupy array, got Tensor"). Now ``allreduce`` / ``bcast``
write the result into the tensor's memory and return the caller's tensor; ``allgather`` /
``reduce_scatter`` read a tensor ``x`` and write a tensor ``out`` (returned as given), all bit-equal
to the NumPy path; a non-contiguous tensor and a read-only export are refused by name on every rank,
before anything is sent or written, as NumPy arrays are. Run on 2 ranks under ``mpiexec``; a hang is
a failure (the launch's timeout).
"""

from __future__ import annotations

import pytest

from mpi_cases import raises, run_case, run_here

CASE_TIMEOUT = 90  # s: a passing launch takes well under 20 s


@pytest.mark.spawns
def test_collectives_take_torch_tensors_in_place():
    pytest.importorskip("mpi4py")
    pytest.importorskip("torch")
    run_case(__file__, "tensors", 2, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_collectives_refuse_strided_and_read_only_exports_on_every_rank():
    pytest.importorskip("mpi4py")
    pytest.importorskip("torch")
    run_case(__file__, "refusals", 2, timeout=CASE_TIMEOUT)


def _data(comm, n, dtype):
    import numpy as np

    rng = np.random.default_rng([n, comm.rank])
    return (rng.standard_normal(n) * 100).astype(dtype)


def _same_bits(a, b) -> None:
    import numpy as np

    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, b.shape, a.dtype, b.dtype)
    np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))


def _in_place(t, ptr, got) -> None:
    assert got is t and t.data_ptr() == ptr  # the caller's tensor, its own memory


def case_tensors(comm) -> None:
    """Each collective on tensors of 0, 1, 7 and 1023 elements a rank (2 ranks), float32, float64 and
    float16 (moved as bits, summed in float32), ordered and not: the NumPy path's bits, in place."""
    import numpy as np
    import torch

    from dlpack_exporters import Plain

    for dtype in (np.float32, np.float64, np.float16):
        for n in (0, 1, 7, 1023):
            for ordered in (True, False):
                for op in ("sum", "mean", "max"):
                    a = _data(comm, 2 * n, dtype)
                    ref = comm.allreduce(a.copy(), op, ordered=ordered)
                    t = torch.from_numpy(a.copy())
                    _in_place(t, t.data_ptr(), comm.allreduce(t, op, ordered=ordered))
                    _same_bits(t.numpy(), ref)
                    if op == "max":
                        continue
                    ref = comm.reduce_scatter(a, op, ordered=ordered)
                    out = torch.full((n,), -1.0, dtype=t.dtype)
                    ptr = out.data_ptr()
                    _in_place(out, ptr, comm.reduce_scatter(torch.from_numpy(a), op, out, ordered=ordered))
                    _same_bits(out.numpy(), ref)
                    new = comm.reduce_scatter(torch.from_numpy(a), op, ordered=ordered)
                    assert type(new) is np.ndarray  # (no out: a new array of x's view's library)
                    _same_bits(new, ref)
            a = _data(comm, n, dtype)
            ref = comm.bcast(a.copy(), root=1)
            t = torch.from_numpy(a.copy())
            _in_place(t, t.data_ptr(), comm.bcast(t, root=1))
            _same_bits(t.numpy(), ref)
            ref = comm.allgather(a)
            out = torch.full((2 * n,), -1.0, dtype=t.dtype)
            _in_place(out, out.data_ptr(), comm.allgather(torch.from_numpy(a), out=out))
            _same_bits(out.numpy(), ref)
            # x as the tensor's own block of out: gathered in place, as for NumPy arrays
            out = torch.full((2 * n,), -1.0, dtype=t.dtype)
            out[comm.rank * n : (comm.rank + 1) * n] = torch.from_numpy(a)
            comm.allgather(out[comm.rank * n : (comm.rank + 1) * n], out=out)
            _same_bits(out.numpy(), ref)
    # a tensor that requires grad (written outside autograd), a plain DLPack exporter as out
    w = torch.full((3,), comm.rank + 1.0, requires_grad=True)
    assert comm.allreduce(w) is w
    np.testing.assert_array_equal(w.detach().numpy(), np.full(3, 3.0, np.float32))
    base = np.zeros(4, np.float32)
    e = Plain(base)
    assert comm.allgather(np.full(2, comm.rank + 1.0, np.float32), out=e) is e
    np.testing.assert_array_equal(base, [1, 1, 2, 2])


def case_refusals(comm) -> None:
    """A transposed tensor (x or out) and a read-only export: refused by name on the rank that holds
    one, 'on rank 1' on the other, nothing written; then the ranks still pair up."""
    import numpy as np
    import torch

    from dlpack_exporters import Plain

    def strided():
        return torch.full((2, 2), comm.rank + 1.0).T

    def read_only():
        a = np.full(4, comm.rank + 1.0, np.float32)
        a.flags.writeable = False
        return Plain(a)

    calls = {
        "allreduce": lambda x: comm.allreduce(x),
        "bcast": lambda x: comm.bcast(x, root=0),
        "allgather": lambda x: comm.allgather(x),
        "reduce_scatter": lambda x: comm.reduce_scatter(x),
    }
    for name, call in calls.items():
        for everywhere in (True, False):
            bad = everywhere or comm.rank == 1
            x = strided() if bad else torch.full((2, 2), 1.0)
            before = x.clone()
            with raises(ValueError, "x: array must be C-contiguous" if bad else "(on rank 1)"):
                call(x)
            assert torch.equal(x, before)
        if name in ("allreduce", "bcast"):  # (written in place: a read-only export refused)
            with raises(ValueError, "x: array is read-only"):
                call(read_only())
    for name, m in (("allgather", 4), ("reduce_scatter", 2)):
        out = torch.zeros(m, m).T  # (the right size for an x of 8 elements, not contiguous)
        with raises(ValueError, "out: array must be C-contiguous"):
            getattr(comm, name)(torch.ones(8), out=out)
        assert not out.any()
        with raises(TypeError, "out: expected float32 like x, got float64"):
            getattr(comm, name)(torch.ones(8), out=torch.zeros(m * m, dtype=torch.float64))
    y = torch.full((4,), comm.rank + 1.0)
    comm.allreduce(y)
    np.testing.assert_array_equal(y.numpy(), np.full(4, 3.0, np.float32))


if __name__ == "__main__":
    import sys

    run_here(globals(), sys.argv[1:])
