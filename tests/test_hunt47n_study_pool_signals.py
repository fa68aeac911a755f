"""``optkern study --jobs N`` and its signals (hunt 47n): a worker signalled while it starts up,
and a second Ctrl-C while the interrupted study collects its records.

A worker ignores Ctrl-C (and the group's SIGTERM, under the command line) once the pool's
``_init`` set its handlers; before that, while it imported and unpickled the data, either signal
killed it, the pool broke and the runs were named missing. A Ctrl-C at the terminal (or
``timeout -s TERM``) soon after the study started, or a worker started later for a run whose
epoch-0 measurement it waited for, hit that window. Workers now start with both signals blocked
(the study blocks them while it submits) and unblock them in ``_init``.

A second Ctrl-C while the interrupted study waited for the runs in flight escaped that wait: the
run queued for a worker (``test_hunt47e_study_queued_run.py``) was no longer signalled, and the
pool's shutdown joined its worker while it trained to its last epoch: the study hung, and every
further Ctrl-C went unheard. Later ones are now ignored there, and the workers are killed however
the wait ends.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from test_cli_hunt_interrupt import _assert_gone, _children
from test_study_sigterm import _study, _wait, _workers_training

_CHILD = os.path.join(os.path.dirname(__file__), "_hunt47n_pool_startup_child.py")

pytestmark = pytest.mark.skipif(not os.path.exists(f"/proc/{os.getpid()}/task"), reason="Linux /proc")


def _child(*args: str) -> tuple[str, str]:
    proc = subprocess.Popen(
        [sys.executable, _CHILD, *args],
        env=dict(os.environ),  # (as given: CI imports the installed package)
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        return proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


@pytest.mark.spawns
def test_a_worker_signalled_while_it_starts_up_is_handled_as_an_idle_one():
    # SIGINT and SIGTERM to each worker before its _init, the study's SIGTERM handled (the command
    # line): both ignored, as by an idle worker; each one alone broke the pool
    out, err = _child("INT", "TERM", "handled")
    assert out.strip() == "returned False ['finished', 'finished']", (out, err)
    assert "Traceback" not in err, err


@pytest.mark.spawns
def test_an_early_sigterm_without_the_command_lines_handler_ends_the_worker_as_a_later_one_does():
    # (the API without a SIGTERM handler: the study itself dies of the group's SIGTERM)
    out, err = _child("TERM")
    assert out.strip() == "raised BrokenProcessPool", (out, err)


@pytest.mark.spawns
def test_a_second_ctrl_c_while_the_runs_in_flight_return_neither_hangs_nor_leaves_workers(tmp_path):
    out = tmp_path / "out"
    # three seeds on 2 workers: one run queued; 100,000 epochs: only the signals end them
    proc = _study(out, "--jobs", "2", "--optimizers", "sgd", "--seeds", "3", "--epochs", "100000")
    try:
        _wait(proc, lambda: _workers_training(proc.pid, 2))  # both workers in their runs
        workers = _children(proc.pid)
        proc.send_signal(signal.SIGINT)
        # the study collects its records for 0.25 s at least (the queued run is signalled on the
        # next round): the second comes in that wait
        time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)  # (it hung: the queued run's 100,000 epochs)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    results = json.loads((out / "results.json").read_text())
    assert [r["status"] for r in results["runs"]] == ["interrupted"] * 3, err
    _assert_gone(workers)  # (killed at the study's end)
