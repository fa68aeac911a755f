"""``clip_grad_norm_(..., comm=comm)``: the ranks agree on its arguments before the norm's collective.

- An argument refused on one rank only (an int32 gradient, a NaN or negative ``max_norm``, a
  ``norm_type`` below 1, a bad ``out``) raised on that rank while the others waited in the
  norm's allreduce forever (or paired it with the refusing rank's next collective: with
  ``max_norm=-1`` on rank 1, rank 0 silently got a NaN norm). Now every rank raises the same
  TypeError / ValueError (elsewhere naming the refusing rank), and nothing is written.
- A ``norm_type`` that differs between ranks (2 on one, inf on another) gave each rank another
  norm (2.449 and 4.0): the data-parallel replicas clipped differently and diverged, silently.
  So did another ``max_norm`` or ``error_if_nonfinite``. Now every rank raises a ValueError
  naming the argument and the ranks.

Each test launches this file under ``mpiexec -n 2 python -m mpi4py`` with one case; a hang is a
failure (the launch's timeout).
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from mpi_cases import raises as _raises
from mpi_cases import run_case, run_here

CASE_TIMEOUT = 60  # s: a hang is a failure (a passing case takes seconds)


@pytest.mark.spawns
def test_clip_argument_refused_on_one_rank_raises_on_every_rank_and_writes_nothing():
    run_case(__file__, "refused_on_one_rank", 2, timeout=CASE_TIMEOUT)


@pytest.mark.spawns
def test_clip_norm_type_that_differs_between_ranks_raises_on_every_rank():
    run_case(__file__, "apart", 2, timeout=CASE_TIMEOUT)


# ---- cases (run under mpiexec) ------------------------------------------------------------------


def _grads(r: int) -> list:
    return [np.array([1.0, -1.0, 2.0]) * (r + 1), np.full(2, 0.5 * (r + 1), dtype=np.float64)]


def _unchanged(grads: list, r: int) -> None:
    assert all(np.array_equal(a, b) for a, b in zip(grads, _grads(r))), "a gradient was written"


def case_refused_on_one_rank(comm) -> None:
    import optkern

    r = comm.rank
    refused = [  # (keyword arguments on rank 1, error, text)
        (
            {"grads": [np.ones(3, dtype=np.int32)]},
            TypeError,
            "grads[0]: expected float32, float64, float16 or bfloat16, got int32",
        ),
        ({"max_norm": math.nan}, ValueError, "max_norm: must be finite, got nan"),
        ({"max_norm": -1}, ValueError, "max_norm: must be in [0.0, inf), got -1.0"),
        ({"norm_type": 0.5}, ValueError, "norm_type: must be >= 1 or inf, got 0.5"),
        (
            {"out": np.zeros(1, dtype=np.float32)},
            ValueError,
            "out: expected a contiguous 1-element float64 array, got float32 of shape (1,)",
        ),
        ({"error_if_nonfinite": "yes"}, TypeError, "error_if_nonfinite: expected a bool, got str"),
    ]
    for p in (2.0, math.inf, 8.0):  # (the plain sum, the max, the scaled sum: two collectives)
        for bad, exc, text in refused:
            grads = _grads(r)
            out = np.full(1, 7.0)
            kw = {"grads": grads, "max_norm": 0.1, "norm_type": p, "out": out, **(bad if r == 1 else {})}
            with _raises(exc, text + ("" if r == 1 else " (on rank 1)")):
                optkern.clip_grad_norm_(comm=comm, **kw)
            _unchanged(grads, r)
            assert out[0] == 7.0, "out was written"
    # a rank without gradients refuses too (its out is still checked), and writes nothing either
    out = np.full(1, 7.0)
    grads = [] if r == 0 else _grads(r)
    with _raises(ValueError, "max_norm: must be finite, got inf" + (" (on rank 1)" if r == 0 else "")):
        optkern.clip_grad_norm_(grads, 0.1 if r == 0 else math.inf, out=out, comm=comm)
    assert out[0] == 7.0, "out was written"
    # and alike arguments clip, the same norm on every rank
    grads = _grads(r)
    total = optkern.clip_grad_norm_(grads, 0.1, comm=comm)
    assert math.isclose(total, math.sqrt(6.5 + 4 * 6.5)), total
    got = comm.allgather_object(total)
    assert got[0] == got[1]


def case_apart(comm) -> None:
    import optkern

    r = comm.rank
    apart = [  # (keyword arguments rank 0 / rank 1, text)
        ({"norm_type": 2.0}, {"norm_type": math.inf}, "norm_type=inf on rank 1, norm_type=2.0 on rank 0"),
        ({"norm_type": "inf"}, {"norm_type": 3}, "norm_type=3.0 on rank 1, norm_type=inf on rank 0"),
        ({"max_norm": 1.0}, {"max_norm": 2.0}, "max_norm=2.0 on rank 1, max_norm=1.0 on rank 0"),
        ({}, {"error_if_nonfinite": True}, "error_if_nonfinite=True on rank 1, error_if_nonfinite=False on rank 0"),
    ]
    for kw0, kw1, text in apart:
        grads = _grads(r)
        out = np.full(1, 7.0)
        kw = {"max_norm": 0.1, **(kw0 if r == 0 else kw1)}
        with _raises(ValueError, "clip_grad_norm_: " + text):
            optkern.clip_grad_norm_(grads, out=out, comm=comm, **kw)
        _unchanged(grads, r)
        assert out[0] == 7.0, "out was written"
    # the same values written otherwise agree ("inf" and math.inf, 2 and 2.0, np.float64 and float)
    for kw0, kw1 in (({"norm_type": "inf"}, {"norm_type": math.inf}), ({"norm_type": 2}, {"norm_type": 2.0})):
        grads = _grads(r)
        total = optkern.clip_grad_norm_(grads, np.float64(0.1) if r else 0.1, comm=comm, **(kw0 if r == 0 else kw1))
        got = comm.allgather_object(total)
        assert got[0] == got[1], got


if __name__ == "__main__":
    run_here(globals(), sys.argv[1:])
