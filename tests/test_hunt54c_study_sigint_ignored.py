"""``optkern study --jobs N`` started with SIGINT ignored (54th hunt, c).

A shell starts a background job (``optkern study ... &`` in a script, whose shell has no job
control) with SIGINT ignored: a Ctrl-C at the terminal then reaches the whole process group, and
the study is meant to go on, as it does with ``--jobs 1`` (Python raises no KeyboardInterrupt). But
the workers set their own SIGINT handler for each run: the runs in flight stopped as
"interrupted" while the study went on, and it ended with exit status 0 and ``"interrupted":
false``, its report holding holes ("seed 1: interrupted"). Workers now take SIGINT only where the
study does; an interrupted study (SIGTERM, which the command line takes as Ctrl-C) stops them by
SIGTERM instead.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from test_study_sigterm import _study as _sigterm_study
from test_study_sigterm import _wait, _workers_training

pytestmark = pytest.mark.skipif(not os.path.exists(f"/proc/{os.getpid()}/task"), reason="Linux /proc")


def _background_signals() -> None:
    """As a shell without job control starts ``cmd &``: SIGINT ignored (SIGTERM as usual)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _study(out, *args) -> subprocess.Popen:
    return _sigterm_study(out, "--jobs", "2", "--optimizers", "sgd", "--seeds", "2", *args, preexec=_background_signals)


def _end(proc: subprocess.Popen, timeout: float = 90) -> str:
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return err


@pytest.mark.spawns
def test_group_ctrl_c_ignored_by_the_study_leaves_its_runs_alone(tmp_path):
    out = tmp_path / "out"
    proc = _study(out, "--epochs", "300")
    _wait(proc, lambda: _workers_training(proc.pid, 2))  # both workers in their runs
    os.killpg(proc.pid, signal.SIGINT)  # (a Ctrl-C at the terminal: the whole group)
    err = _end(proc)
    assert proc.returncode == 0, err
    res = json.loads((out / "results.json").read_text())
    assert res["interrupted"] is False
    assert [r["status"] for r in res["runs"]] == ["done", "done"], [r["status"] for r in res["runs"]]


@pytest.mark.spawns
@pytest.mark.parametrize("group", [False, True])
def test_sigterm_still_stops_the_runs_in_flight(tmp_path, group):
    """SIGINT ignored, the study's SIGTERM (to it alone: forwarded to the workers; or to the group)
    still stops the runs of 100,000 epochs and writes the report of what they measured."""
    out = tmp_path / "out"
    proc = _study(out, "--epochs", "100000")
    _wait(proc, lambda: _workers_training(proc.pid, 2))
    os.killpg(proc.pid, signal.SIGTERM) if group else proc.send_signal(signal.SIGTERM)
    err = _end(proc)
    assert proc.returncode == 128 + signal.SIGTERM, err
    res = json.loads((out / "results.json").read_text())
    assert res["interrupted"] is True
    assert [r["status"] for r in res["runs"]] == ["interrupted", "interrupted"], err
    assert "Not finished" not in (out / "report.md").read_text()
