"""``optkern study --jobs N`` (hunt 46d): a pool that breaks while a run outlives its terminate().

Under ``timeout -s TERM``, a job scheduler or ``kill -TERM -PGID``, the study hung about one time
in four, for ever: a worker idle in the call queue died of the group's SIGTERM holding the queue's
read lock, the pool broke and terminated the others, but a training worker ignores a second
SIGTERM while it saves its record (``pool._interrupt_once``), then waited for that lock, and the
pool's shutdown joined it. ``run_pool`` now ends the workers itself (SIGKILL) once the pool is
broken or, interrupted, once every record is in. The child (``_hunt46d_pool_child.py``) builds
the same state on purpose: a worker that dies holding the lock, one that ignores terminate()."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

_CHILD = os.path.join(os.path.dirname(__file__), "_hunt46d_pool_child.py")


@pytest.mark.spawns
def test_a_broken_pool_whose_worker_outlives_terminate_does_not_hang_the_study():
    # (the environment as given, as tests/test_study_sigterm.py's children: CI imports the installed
    # package, whose src/ tree holds no built module)
    proc = subprocess.Popen(
        [sys.executable, _CHILD],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=60)  # (it returns in ~5 s; hung, it never did)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("run_pool hung on the broken pool's shutdown")
    assert out.strip() == "raised BrokenProcessPool", (out, err)
