"""Collectives after ``MPI.Finalize()``: a Python exception, not the death of the process.

Making a Communicator after ``MPI.Finalize()`` raised, but one made before it went on calling MPI:
MPICH aborts the whole process on any call after ``MPI_Finalize`` ("Attempting to use an MPI
routine ... after finalizing MPICH"; no exception, nothing to catch), and at one rank the
collectives that make no MPI call (``allreduce``, ``bcast``, a data-parallel step) went on as if
nothing had happened. Every collective of the Communicator, and the optimizers' steps that use
them, now raise RuntimeError first, before they read or write an array.

The scripts run in a subprocess: at one rank without ``mpiexec`` (a singleton MPI, as the
Communicator's own finalized test), and at two ranks under ``mpiexec -n 2 python -m mpi4py``.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from test_distributed import _env, _ok, launch

TIMEOUT = 60  # s: a hang is a failure (a passing script takes a second or two)

# Made before MPI.Finalize(): a Communicator and what uses one; the arrays every call gets.
_SETUP = """\
import sys

import numpy as np
from mpi4py import MPI

import optkern
from optkern import optim
from optkern.distributed import (
    Communicator, DistributedOptimizer, ShardedOptimizer, broadcast_params, check_same_params, distributed,
    global_share,
)

c = Communicator(backend="mpi")
p = [np.ones(3), np.full(2, 2.0)]
d = DistributedOptimizer(optim.SGD(p, lr=0.1), c)
q = [np.ones(3), np.full(2, 2.0)]
z = ShardedOptimizer(optim.Adam, q, c, lr=0.1)
D = distributed(np.eye(3), c)
x = np.arange(4.0 * c.size)
g = [np.full(3, 5.0), np.full(2, 5.0)]
before = [a.copy() for a in (x, *p, *q, *g)]
"""

# (what the error names, the call): every one must raise RuntimeError naming it, MPI finalized
_CALLS = """\
calls = [
    ("allreduce", lambda: c.allreduce(x)),
    ("allreduce", lambda: c.allreduce(x, "max", ordered=True)),
    ("allreduce", lambda: c.allreduce("not an array")),  # (asked before the arguments are checked)
    ("reduce_scatter", lambda: c.reduce_scatter(x)),
    ("allgather", lambda: c.allgather(x)),
    ("bcast", lambda: c.bcast(x)),
    ("barrier", lambda: c.barrier()),
    ("allgather_object", lambda: c.allgather_object(1)),
    ("gather_object", lambda: c.gather_object(1)),
    ("bcast_object", lambda: c.bcast_object(1)),
    ("step", lambda: d.step(g)),
    ("synchronize", lambda: d.synchronize(g)),
    ("step", lambda: z.step(g)),
    ("synchronize", lambda: z.synchronize(g)),
    ("gather_object", lambda: z.consolidate_state_dict()),
    ("allgather_object", lambda: check_same_params(p, c)),
    ("allgather_object", lambda: broadcast_params(p, c)),
    ("allgather_object", lambda: global_share(3, c)),
    ("allreduce", lambda: D.matvec(np.ones(3))),
    ("allreduce", lambda: optkern.clip_grad_norm_(g, 1.0, comm=c)),
    ("comm", lambda: Communicator()),
]
for name, call in calls:
    print("calling", name, flush=True)  # (the last one printed names a call that killed the process)
    try:
        call()
    except RuntimeError as e:
        assert str(e).startswith(f"{name}: MPI is "), str(e)
        assert "finalized" in str(e), str(e)
    else:
        sys.exit(f"{name}: did not raise")
for a, b in zip((x, *p, *q, *g), before):
    assert a.tobytes() == b.tobytes(), "an array was written"
print(f"rank {c.rank}: all {len(calls)} raised", flush=True)
"""


def _singleton(tmp_path, code: str):
    pytest.importorskip("mpi4py")
    script = tmp_path / "finalized.py"
    script.write_text(code)
    return subprocess.run(
        [sys.executable, str(script)], env=_env(), capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


@pytest.mark.spawns
def test_every_collective_and_step_after_finalize_raises_at_one_rank(tmp_path):
    res = _singleton(tmp_path, _SETUP + "MPI.Finalize()\n" + _CALLS)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "rank 0: all 21 raised" in res.stdout, out


@pytest.mark.spawns
@pytest.mark.parametrize(
    "call, name",
    [("c.allgather_object(1)", "allgather_object"), ("c.barrier()", "barrier"), ("d.step(g)", "step")],
)
def test_an_uncaught_error_ends_the_script_as_a_python_exception_not_an_mpi_abort(tmp_path, call, name):
    res = _singleton(tmp_path, _SETUP + f"MPI.Finalize()\n{call}\nprint('unreachable')\n")
    assert res.returncode == 1, res.stdout + res.stderr
    assert f"RuntimeError: {name}: MPI is finalized" in res.stderr, res.stderr
    assert "after finalizing MPICH" not in res.stderr and "unreachable" not in res.stdout, res.stderr


@pytest.mark.spawns
def test_every_collective_and_step_after_finalize_raises_at_two_ranks(tmp_path):
    script = tmp_path / "finalized2.py"
    script.write_text(_SETUP + "MPI.Finalize()\n" + _CALLS)
    res = launch(2, str(script), timeout=TIMEOUT)
    for r in range(2):
        _ok(res, f"rank {r}: all 21 raised")
