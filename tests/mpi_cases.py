"""What the test files that run their own cases under ``mpiexec`` share: launching one case of a
file on N ranks (every rank prints ``rank R: CASE ok``; a hang is a failure, the launch's timeout)
and, inside a case, asserting that a block raises on this rank."""

from __future__ import annotations

import contextlib
import os


def run_case(path: str, case: str, n: int, *args: str, timeout: float = 60) -> None:
    """``python -m mpi4py path case *args`` on ``n`` ranks; every rank must report the case ok."""
    from test_distributed import _ok, launch

    res = launch(n, os.path.abspath(path), case, *args, timeout=timeout)
    for r in range(n):
        _ok(res, f"rank {r}: {case} ok")


@contextlib.contextmanager
def raises(exc, text: str):
    """The block raises ``exc`` whose message contains ``text`` (on this rank)."""
    try:
        yield
    except exc as e:
        assert text in str(e), f"{text!r} not in {str(e)!r}"
        return
    raise AssertionError(f"{exc.__name__} {text!r} not raised")


def run_here(cases: dict, argv: list) -> None:
    """Under mpiexec: run ``case_<argv[0]>`` from ``cases`` (the calling file's globals) with an
    ordered MPI communicator and ``argv[1:]``, then report ``rank R: CASE ok`` (after a barrier)."""
    from optkern.distributed import Communicator

    case, *args = argv
    comm = Communicator(backend="mpi", ordered=True)
    cases[f"case_{case}"](comm, *args)
    comm.barrier()
    print(f"rank {comm.rank}: {case} ok", flush=True)
